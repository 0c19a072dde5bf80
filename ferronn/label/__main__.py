"""`python -m ferronn.label --config recipes/qe_batio3.yaml --in frames.xyz --out labelled.xyz`: DFT labels.

Runs Quantum ESPRESSO on each frame (pw.x: energy, forces, stress; ph.x at Γ: Born charges and ε∞), appends
each finished frame to the output atomically, skips frames already there on a rerun, and records failed frames
with their reason in <out>.failures.json without stopping. Exit code 1 when some frame failed in this run.
"""

from __future__ import annotations

import argparse
import sys

from ..cli import add_recipe_options, recipe_from_args
from ..errors import cli_exit_code


def parse_args(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog or "python -m ferronn.label", description=__doc__)
    parser.add_argument("--in", dest="inputs", help="ASE-readable file of structures to label")
    parser.add_argument("--out", help="extxyz file the labelled frames are appended to")
    parser.add_argument("--index", default=":", help="frames of --in to label, ASE syntax (default all)")
    add_recipe_options(parser, "YAML labelling recipe (default: the batio3-qe settings)",
                       "--set qe.ecutwfc=60 --set qe.mpi_ranks=1")
    return parser.parse_args(argv)


def run(args) -> int:
    from ..data.frames import read_structures
    from ..errors import ConfigError
    from .config import load_label_config
    from .store import failures_path, label_frames

    config = recipe_from_args(args, load_label_config)
    if args.print_config:
        return 0
    if not args.inputs or not args.out:
        raise ConfigError("command line: --in and --out are both required")
    frames, sources = read_structures(args.inputs, args.index)
    summary = label_frames(frames, args.out, config, sources=sources)
    print(f"{summary['labelled']} labelled, {summary['skipped']} already in '{args.out}', "
          f"{len(summary['failed'])} failed" + (f" (see {failures_path(args.out)})" if summary["failed"] else ""))
    return 1 if summary["failed"] else 0


def main(argv=None, prog=None) -> int:
    args = parse_args(argv, prog)
    status = {}
    code = cli_exit_code(lambda: status.update(code=run(args)))
    return code or status.get("code", 0)


if __name__ == "__main__":
    sys.exit(main())
