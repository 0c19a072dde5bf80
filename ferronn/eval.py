"""`python -m ferronn.eval --checkpoint energy.ckpt --data FILE`: metrics of a model on any labelled file.

Prints the metrics table (energy MAE/RMSE per atom, force MAE/RMSE overall and per element, stress) and with
``--json OUT`` writes the same numbers as JSON for scripts.
"""

from __future__ import annotations

import argparse
import sys

from .errors import cli_exit_code


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ferronn.eval", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="ferronn checkpoint (energy.ckpt)")
    parser.add_argument("--data", required=True, help="ASE-readable labelled file")
    parser.add_argument("--keys", nargs="*", default=[], metavar="LABEL=KEY",
                        help="key map, e.g. energy=total_energy stress=stress (default: energy forces stress)")
    parser.add_argument("--index", default=":", help="frames to use, ASE syntax (default all, e.g. '47:')")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", choices=["float32", "float64"], help="default: as saved")
    parser.add_argument("--json", help="write the metrics as JSON here")
    parser.add_argument("--plot", help="write a parity plot (PNG) here")
    return parser.parse_args(argv)


def run(args) -> dict:
    import functools

    import torch

    from . import keys as K
    from .atomic import write_json
    from .data.frames import KeyMap, read_frames
    from .data.graph import SpeciesTable, collate, frame_to_graph
    from .errors import ConfigError
    from .models.checkpoint import load
    from .train.metrics import evaluate, format_table
    from .train.run import resolve_device

    keymap = KeyMap()
    for item in args.keys:
        label, sep, key = item.partition("=")
        if not sep or label not in K.LABELS:
            raise ConfigError(f"command line: --keys '{item}' must be LABEL=KEY with LABEL in {K.LABELS}")
        setattr(keymap, label, key or None)
    device = resolve_device(args.device)
    model = load(args.checkpoint, device=device, dtype=args.dtype)
    frames = read_frames(args.data, keymap, index=args.index, labels_needed=(K.ENERGY, K.FORCES))
    species = SpeciesTable(model.atomic_numbers)
    graphs = [frame_to_graph(f, species, model.r_max) for f in frames]
    loader = torch.utils.data.DataLoader(graphs, batch_size=args.batch_size,
                                         collate_fn=functools.partial(collate, dtype=model.dtype))
    metrics, acc = evaluate(model, loader, device=device, keep_values=bool(args.plot))
    print(format_table(metrics, f"{args.checkpoint} on {args.data} ({len(frames)} frames)"))
    if args.json:
        write_json(args.json, {"checkpoint": args.checkpoint, "data": args.data, "num_frames": len(frames),
                               "metrics": metrics})
    if args.plot:
        from .train.plots import parity_plot

        parity_plot(acc.parity_values(), metrics, args.plot, args.data)
    return metrics


def main(argv=None) -> int:
    return cli_exit_code(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
