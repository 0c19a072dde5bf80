"""`python -m ferronn.study {dielectric,hysteresis,phases,spectrum} [--config R.yaml] [--set key=value]`: one study;
rerun the same command after a kill to resume it (finished temperatures/cycles are not redone)."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import cli_exit_code

STUDIES = ("dielectric", "hysteresis", "phases", "spectrum")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ferronn.study", description=__doc__)
    parser.add_argument("study", choices=STUDIES)
    parser.add_argument("--config", "-c", help="YAML study recipe (an 'md' section and one per study)")
    parser.add_argument("--out", help="output folder (overrides 'out')")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (overrides md.device)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any recipe key, e.g. --set md.steps=2000 --set dielectric.temperatures=[250,300]")
    parser.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")
    return parser.parse_args(argv)


def run(args) -> None:
    import dataclasses
    import importlib

    import yaml

    from ..config import parse_overrides
    from .config import load_study_config

    config = load_study_config(args.config, parse_overrides(args.set, {"out": args.out, "md.device": args.device}))
    if args.print_config:
        print(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False), end="")
        return
    result = importlib.import_module(f"ferronn.study.{args.study}").run(config)
    print(json.dumps(result))


def main(argv=None) -> int:
    return cli_exit_code(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
