"""`python -m ferronn.md --config recipes/batio3_dielectric.yaml [--set key=value] [--resume]`: run field MD; see README."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..cli import add_recipe_options, recipe_from_args
from ..errors import ConfigError, cli_exit_code


def parse_args(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog or "python -m ferronn.md", description=__doc__)
    parser.add_argument("--out", help="output folder (overrides 'out')")
    parser.add_argument("--steps", type=int, help="production steps (overrides 'steps')")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/restart.pt")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs still written)")
    add_recipe_options(parser, "YAML MD recipe (default: the shipped BaTiO3 models, 300 K NVT)",
                       "--set temperatures=[200,300] --set dielectric.finite_field=true")
    return parser.parse_args(argv)


def run(args) -> None:
    from .config import load_md_config

    config = recipe_from_args(args, load_md_config, {"out": args.out, "steps": args.steps, "device": args.device})
    if args.print_config:
        return
    from .engine import Simulation

    sim = Simulation.from_config(config)
    restart = os.path.join(sim.out, "restart.pt")
    if args.resume:
        if not os.path.exists(restart):
            raise ConfigError(f"--resume: no restart file '{restart}'")
        sim.load_restart(restart)
    elif os.path.exists(restart):
        raise ConfigError(f"'{sim.out}' already holds a run (restart.pt): pass --resume or choose another --out")
    summary = sim.run(progress=not args.no_progress)
    print(json.dumps(summary))


def main(argv=None, prog=None) -> int:
    return cli_exit_code(run, parse_args(argv, prog))


if __name__ == "__main__":
    sys.exit(main())
