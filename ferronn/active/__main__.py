"""`python -m ferronn.active --config recipes/batio3_active.yaml [--set key=value]`: committee active learning.

Rerunning the same command continues a killed run (finished rounds, explorations and DFT labels are kept).
``--control`` then retrains round 0's committee with the loop's schedule on the seed data alone (no DFT): the
test errors a round gains beyond that control are its new frames' doing.
"""

from __future__ import annotations

import argparse
import sys

from ..cli import add_recipe_options, recipe_from_args
from ..errors import cli_exit_code


def parse_args(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog or "python -m ferronn.active", description=__doc__)
    parser.add_argument("--out", help="output folder (overrides 'out')")
    add_recipe_options(parser, "YAML active-learning recipe", "--set dft_budget=10 --set md.steps=1000")
    parser.add_argument("--control", action="store_true",
                        help="after a run: the same retraining rounds without the DFT frames (control/control.csv)")
    return parser.parse_args(argv)


def run(args) -> None:
    from .config import load_active_config
    from .loop import run as run_loop
    from .loop import run_control

    config = recipe_from_args(args, load_active_config, {"out": args.out})
    if args.print_config:
        return
    if args.control:
        run_control(config)
    else:
        run_loop(config)


def main(argv=None, prog=None) -> int:
    return cli_exit_code(run, parse_args(argv, prog))


if __name__ == "__main__":
    sys.exit(main())
