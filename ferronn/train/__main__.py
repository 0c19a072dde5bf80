"""`python -m ferronn.train [--config recipe.yaml] [overrides]`: fit a model; see README for the outputs."""

from __future__ import annotations

import argparse
import sys

from ..cli import add_recipe_options, recipe_from_args
from ..errors import cli_exit_code


def parse_args(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog or "python -m ferronn.train", description=__doc__)
    parser.add_argument("--data", help="training data file (overrides data.path)")
    parser.add_argument("--out", help="output folder (default runs/<recipe name>)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--dtype", choices=["float32", "float64"])
    parser.add_argument("--devices", type=int, help="processes per node (> 1: DDP; gloo on CPU, NCCL on GPUs)")
    parser.add_argument("--num-nodes", type=int, help="nodes (DDP across nodes; launch one command per node)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--logger", choices=["csv", "wandb"])
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/last.ckpt")
    parser.add_argument("--committee", type=int, metavar="N",
                        help="train N members (seeds seed..seed+N-1, one split) into <out>/member<i>/ and write "
                             "<out>/committee.json: a committee for uncertainty and active learning")
    add_recipe_options(parser, "YAML recipe (default: the embedded BaTiO3 QE run)",
                       "--set model.num_channels=16 --set train.lr=0.005")
    return parser.parse_args(argv)


def named_overrides(args) -> dict:
    """The recipe keys this command's named options set (None: not given)."""
    return {"data.path": args.data, "out": args.out, "train.epochs": args.epochs, "train.device": args.device,
             "train.dtype": args.dtype, "train.seed": args.seed, "train.logger": args.logger,
             "train.devices": args.devices, "train.num_nodes": args.num_nodes}


def run(args) -> None:
    from .config import load_recipe

    config = recipe_from_args(args, load_recipe, named_overrides(args))
    if args.print_config:
        return
    from .run import train, train_committee

    if args.committee is not None:
        train_committee(config, args.committee, resume=args.resume)
    else:
        train(config, resume=args.resume)


def main(argv=None, prog=None) -> int:
    return cli_exit_code(run, parse_args(argv, prog))


if __name__ == "__main__":
    sys.exit(main())
