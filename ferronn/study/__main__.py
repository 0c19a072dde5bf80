"""`python -m ferronn.study {dielectric,hysteresis,phases,spectrum} [--config R.yaml] [--set key=value]`: one study;
rerun the same command after a kill to resume it (finished temperatures/cycles are not redone)."""

from __future__ import annotations

import argparse
import json
import sys

from ..cli import add_recipe_options, recipe_from_args
from ..errors import cli_exit_code

STUDIES = ("dielectric", "hysteresis", "phases", "spectrum")


def parse_args(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog or "python -m ferronn.study", description=__doc__)
    parser.add_argument("study", choices=STUDIES)
    parser.add_argument("--out", help="output folder (overrides 'out')")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (overrides md.device)")
    add_recipe_options(parser, "YAML study recipe (an 'md' section and one per study)",
                       "--set md.steps=2000 --set dielectric.temperatures=[250,300]")
    return parser.parse_args(argv)


def run(args) -> None:
    import importlib

    from .config import load_study_config

    config = recipe_from_args(args, load_study_config, {"out": args.out, "md.device": args.device})
    if args.print_config:
        return
    result = importlib.import_module(f"ferronn.study.{args.study}").run(config)
    print(json.dumps(result))


def main(argv=None, prog=None) -> int:
    return cli_exit_code(run, parse_args(argv, prog))


if __name__ == "__main__":
    sys.exit(main())
