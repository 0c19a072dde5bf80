"""`python -m ferronn.eval --checkpoint energy.ckpt [born.ckpt] --data FILE`: metrics on any labelled file.

Prints the metrics table (energy MAE/RMSE per atom, force MAE/RMSE overall and per element, stress; with a
Born checkpoint Z* MAE/RMSE overall, per element, diagonal and off-diagonal, and the reference data's own
acoustic-sum-rule residual) and with ``--json OUT`` writes the same numbers as JSON for scripts.
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import cli_exit_code


def parse_args(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog or "python -m ferronn.eval", description=__doc__)
    parser.add_argument("--checkpoint", required=True, nargs="+",
                        help="ferronn checkpoint(s): energy.ckpt and/or born.ckpt (kinds are detected)")
    parser.add_argument("--data", required=True, help="ASE-readable labelled file")
    parser.add_argument("--keys", nargs="*", default=[], metavar="LABEL=KEY",
                        help="key map, e.g. energy=total_energy born_charges=born_charge (defaults: energy, "
                             "forces, stress, born_charge, born_charge_raw)")
    parser.add_argument("--index", default=":", help="frames to use, ASE syntax (default all, e.g. '47:')")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", choices=["float32", "float64"], help="default: as saved")
    parser.add_argument("--json", help="write the metrics as JSON here")
    parser.add_argument("--plot", help="write parity plots here (PNG; Z* per element goes to <name>_born.png)")
    return parser.parse_args(argv)


def run(args) -> dict:
    import functools

    import torch

    from . import keys as K
    from .atomic import write_json
    from .data.frames import KeyMap, read_frames
    from .data.graph import SpeciesTable, collate, frame_to_graph
    from .data.stats import reference_asr_residual
    from .errors import CheckpointError, ConfigError
    from .models.loading import load
    from .train.metrics import evaluate, format_table
    from .config import resolve_device

    keymap = KeyMap()
    for item in args.keys:
        label, sep, key = item.partition("=")
        labels = K.LABELS + (K.BORN_CHARGES_RAW,)
        if not sep or label not in labels:
            raise ConfigError(f"command line: --keys '{item}' must be LABEL=KEY with LABEL in {labels}")
        setattr(keymap, label, key or None)
    device = resolve_device(args.device, "--device")
    models = {}
    for path in args.checkpoint:
        model = load(path, device=device, dtype=args.dtype)
        if model.kind in models:
            raise CheckpointError(f"checkpoint '{path}': a second '{model.kind}' model; give one of each kind")
        models[model.kind] = model
    if len(models) == 2 and models["energy"].atomic_numbers != models["born"].atomic_numbers:
        raise CheckpointError(f"checkpoints {args.checkpoint}: energy and Born models know different species")
    needed = ((K.ENERGY, K.FORCES) if "energy" in models else ()) + ((K.BORN_CHARGES,) if "born" in models else ())
    frames = read_frames(args.data, keymap, index=args.index, labels_needed=needed)
    first = next(iter(models.values()))
    species = SpeciesTable(first.atomic_numbers)
    graphs = [frame_to_graph(f, species, max(m.r_max for m in models.values())) for f in frames]
    loader = torch.utils.data.DataLoader(graphs, batch_size=args.batch_size,
                                         collate_fn=functools.partial(collate, dtype=first.dtype))
    metrics, acc = evaluate(models, loader, device=device, keep_values=bool(args.plot))
    if "born" in models:
        metrics.update(reference_asr_residual(frames))
    print(format_table(metrics, f"{' + '.join(args.checkpoint)} on {args.data} ({len(frames)} frames)"))
    if args.json:
        write_json(args.json, {"checkpoints": args.checkpoint, "data": args.data, "num_frames": len(frames),
                               "metrics": metrics})
    if args.plot:
        from ase.data import chemical_symbols

        from .train.plots import born_parity_plot, parity_plot

        values = acc.parity_values()
        if "energy" in models:
            parity_plot(values, metrics, args.plot, args.data)
        if "born" in models:
            stem, ext = os.path.splitext(args.plot)
            born_parity_plot(values[K.BORN_CHARGES], [chemical_symbols[z] for z in first.atomic_numbers],
                             metrics, f"{stem}_born{ext or '.png'}", args.data)
    return metrics


def main(argv=None, prog=None) -> int:
    return cli_exit_code(run, parse_args(argv, prog))


if __name__ == "__main__":
    sys.exit(main())
