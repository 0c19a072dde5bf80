"""`python -m ferronn.active --config recipes/batio3_active.yaml [--set key=value]`: committee active learning.

Rerunning the same command continues a killed run (finished rounds, explorations and DFT labels are kept).
``--control`` then retrains round 0's committee with the loop's schedule on the seed data alone (no DFT): the
test errors a round gains beyond that control are its new frames' doing.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import yaml

from ..errors import cli_exit_code


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ferronn.active", description=__doc__)
    parser.add_argument("--config", "-c", help="YAML active-learning recipe")
    parser.add_argument("--out", help="output folder (overrides 'out')")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any recipe key, e.g. --set dft_budget=10 --set md.steps=1000")
    parser.add_argument("--control", action="store_true",
                        help="after a run: the same retraining rounds without the DFT frames (control/control.csv)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")
    return parser.parse_args(argv)


def run(args) -> None:
    from ..config import parse_overrides
    from .config import load_active_config
    from .loop import run as run_loop
    from .loop import run_control

    config = load_active_config(args.config, parse_overrides(args.set, {"out": args.out}))
    if args.print_config:
        print(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False), end="")
        return
    if args.control:
        run_control(config)
    else:
        run_loop(config)


def main(argv=None) -> int:
    return cli_exit_code(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
