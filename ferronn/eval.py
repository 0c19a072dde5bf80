"""`python -m ferronn.eval --checkpoint energy.ckpt [born.ckpt] --data FILE [--reference PEER.xyz]`: metrics on any
labelled file, optionally side by side with a second model's predictions on the same frames.

Prints the metrics table (energy MAE/RMSE per atom, force MAE/RMSE overall and per element, stress; with a
Born checkpoint Z* MAE/RMSE overall, per element, diagonal and off-diagonal, and the reference data's own
acoustic-sum-rule residual) and with ``--json OUT`` writes the same numbers as JSON for scripts. With
``--reference FILE`` (a peer's predictions for the same frames, e.g. allegro-pol's) the same metrics of that file are
printed beside ours; its frames must match the labelled ones (count, species, positions within 1e-4 Å).
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
    parser.add_argument("--reference", help="a second model's predictions for the same frames (ASE-readable), "
                                            "scored against the same labels and printed beside ours")
    parser.add_argument("--reference-keys", nargs="*", default=[], metavar="LABEL=KEY",
                        help="key map of --reference (defaults: energy, forces, stress, born_charge)")
    parser.add_argument("--reference-name", default="reference", help="column title of --reference")
    return parser.parse_args(argv)


def run(args) -> dict:
    import functools

    import torch

    from . import keys as K
    from .atomic import write_json
    from .data.frames import read_frames
    from .data.graph import SpeciesTable, collate, frame_to_graph
    from .data.stats import reference_asr_residual
    from .errors import CheckpointError
    from .models.loading import load
    from .train.metrics import evaluate, format_table
    from .config import resolve_device

    keymap = _keymap(args.keys, "--keys")
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
    reference = None
    if args.reference:  # read and checked before the models run, so a mismatch costs nothing
        from .train.compare import check_aligned

        reference = read_frames(args.reference, _keymap(args.reference_keys, "--reference-keys"), index=args.index)
        check_aligned(frames, reference, args.data, args.reference)
    metrics, acc = evaluate(models, loader, device=device, keep_values=bool(args.plot))
    if "born" in models:
        metrics.update(reference_asr_residual(frames))
    title = f"{' + '.join(args.checkpoint)} on {args.data} ({len(frames)} frames)"
    result = {"checkpoints": args.checkpoint, "data": args.data, "index": args.index, "num_frames": len(frames),
              "metrics": metrics}
    if reference is None:
        print(format_table(metrics, title))
    else:
        from ase.data import chemical_symbols

        from .train.compare import format_side_by_side, reference_metrics

        theirs = reference_metrics(loader, reference, [chemical_symbols[z] for z in first.atomic_numbers])
        print(format_side_by_side(metrics, theirs, ("ferronn", args.reference_name),
                                  f"{title}\nagainst {args.reference_name}: {args.reference}"))
        result.update(reference=args.reference, reference_name=args.reference_name, reference_metrics=theirs)
    if args.json:
        write_json(args.json, result)
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


def _keymap(items, option):
    """KeyMap from LABEL=KEY items (an empty KEY drops that label)."""
    from . import keys as K
    from .data.frames import KeyMap
    from .errors import ConfigError

    keymap = KeyMap()
    labels = K.LABELS + (K.BORN_CHARGES_RAW,)
    for item in items:
        label, sep, key = item.partition("=")
        if not sep or label not in labels:
            raise ConfigError(f"command line: {option} '{item}' must be LABEL=KEY with LABEL in {labels}")
        setattr(keymap, label, key or None)
    return keymap


def main(argv=None, prog=None) -> int:
    return cli_exit_code(run, parse_args(argv, prog))


if __name__ == "__main__":
    sys.exit(main())
