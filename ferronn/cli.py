"""``ferronn <command> [options]``: one console script for the whole pipeline.

Each command is also ``python -m ferronn.<module>`` (the table below names it); both run the same ``main``. The
recipe-driven commands share one set of options (``add_recipe_options``): ``--config`` (a YAML recipe), ``--set
key.path=value`` (any recipe key, repeatable) and ``--print-config`` (the resolved recipe as YAML, then exit).
"""

from __future__ import annotations

import importlib
import sys

#: command → (module whose ``main(argv, prog)`` runs it, one line for ``ferronn --help``)
COMMANDS = {
    "train": ("ferronn.train.__main__", "fit the MACE energy model and/or the Born-charge model from a recipe"),
    "eval": ("ferronn.eval", "metrics and parity plots of checkpoints on any labelled file"),
    "md": ("ferronn.md.__main__", "field MD on the torch engine: batched replicas, M and P on the fly, ε"),
    "study": ("ferronn.study.__main__", "ε(T), P–E loop, phase ramp or χ(ω): a CSV and a PNG, resumable"),
    "label": ("ferronn.label.__main__", "DFT labels with Quantum ESPRESSO (pw.x: E, F, σ; ph.x: Z*, ε∞)"),
    "active": ("ferronn.active.__main__", "committee active learning: explore with MD, select, label, retrain"),
    "export": ("ferronn.export", "checkpoints to torch.export .pt2 programs that load without mace or pickle"),
    "teacher": ("ferronn.label.teacher", "Z* labels from a Born committee, for distilling one student model"),
    "heldout": ("ferronn.active.heldout", "random structures for active learning's fixed held-out test set"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: ferronn <command> [options]   (ferronn <command> --help for its options)", "",
             "Machine-learned ferroelectrics in electric fields: MACE energies, equivariant Born charges, field MD.",
             "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Each command also runs as python -m <module>: " +
              ", ".join(f"{name} = {module.replace('.__main__', '')}" for name, (module, _) in COMMANDS.items())]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from ._version import __version__

        print(f"ferronn {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command '{name}' (one of: {', '.join(COMMANDS)}; ferronn --help)", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[name][0]).main(rest, prog=f"ferronn {name}")


# --- shared options of the recipe-driven commands (train, md, study, label, active) ---------------------------------

def add_recipe_options(parser, config_help: str, set_example: str) -> None:
    """``--config/-c``, ``--set KEY=VALUE`` (repeatable) and ``--print-config`` on ``parser``."""
    parser.add_argument("--config", "-c", help=config_help)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"any recipe key, e.g. {set_example}")
    parser.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")


def recipe_from_args(args, loader, named=None):
    """The recipe ``loader(args.config, overrides)`` builds, with ``--set`` items and then the command's named
    options ``named`` {'key.path': value or None} on top; printed as YAML when ``--print-config`` was given."""
    import dataclasses

    import yaml

    from .config import parse_overrides

    config = loader(args.config, parse_overrides(args.set, named))
    if args.print_config:
        print(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False), end="")
    return config


if __name__ == "__main__":
    sys.exit(main())
