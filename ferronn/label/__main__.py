"""`python -m ferronn.label --config recipes/qe_batio3.yaml --in frames.xyz --out labelled.xyz`: DFT labels.

Runs Quantum ESPRESSO on each frame (pw.x: energy, forces, stress; ph.x at Γ: Born charges and ε∞), appends
each finished frame to the output atomically, skips frames already there on a rerun, and records failed frames
with their reason in <out>.failures.json without stopping. Exit code 1 when some frame failed in this run.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import yaml

from ..errors import cli_exit_code


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ferronn.label", description=__doc__)
    parser.add_argument("--config", "-c", help="YAML labelling recipe (default: the batio3-qe settings)")
    parser.add_argument("--in", dest="inputs", help="ASE-readable file of structures to label")
    parser.add_argument("--out", help="extxyz file the labelled frames are appended to")
    parser.add_argument("--index", default=":", help="frames of --in to label, ASE syntax (default all)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any recipe key, e.g. --set qe.ecutwfc=60 --set qe.mpi_ranks=1")
    parser.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")
    return parser.parse_args(argv)


def run(args) -> int:
    from ..config import parse_overrides
    from ..data.frames import read_structures
    from ..errors import ConfigError
    from .config import load_label_config
    from .store import failures_path, label_frames

    config = load_label_config(args.config, parse_overrides(args.set))
    if args.print_config:
        print(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False), end="")
        return 0
    if not args.inputs or not args.out:
        raise ConfigError("command line: --in and --out are both required")
    frames, sources = read_structures(args.inputs, args.index)
    summary = label_frames(frames, args.out, config, sources=sources)
    print(f"{summary['labelled']} labelled, {summary['skipped']} already in '{args.out}', "
          f"{len(summary['failed'])} failed" + (f" (see {failures_path(args.out)})" if summary["failed"] else ""))
    return 1 if summary["failed"] else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    status = {}
    code = cli_exit_code(lambda: status.update(code=run(args)))
    return code or status.get("code", 0)


if __name__ == "__main__":
    sys.exit(main())
