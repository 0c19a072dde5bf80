"""`python -m ferronn.active.heldout --count 6 --out heldout.xyz`: random structures for a fixed test set.

Active learning is judged on frames it never selected: thermal-like random displacements (Gaussian, σ Å per
Cartesian component) and a random symmetric strain of a starting cell, drawn from a seeded generator. Label them
with ``python -m ferronn.label`` and give the result as the loop's ``test_data``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..errors import cli_exit_code


def random_structures(atoms, count: int, sigma: float, strain: float, seed: int) -> list:
    """``count`` copies of ``atoms`` with N(0, σ²) displacements (Å) and a uniform random symmetric strain of at
    most ``strain`` per component; the centre of mass stays put (a rigid shift is no new information)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        new = atoms.copy()
        eps = rng.uniform(-strain, strain, size=(3, 3))
        eps = 0.5 * (eps + eps.T)
        new.set_cell(new.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        shift = rng.normal(0.0, sigma, size=new.positions.shape)
        new.positions += shift - shift.mean(axis=0)
        new.calc = None
        new.info = {"name": f"heldout_{i}_sigma{sigma:g}_strain{strain:g}_seed{seed}"}
        out.append(new)
    return out


def parse_args(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog or "python -m ferronn.active.heldout", description=__doc__)
    parser.add_argument("--structure", default="../shared/data/batio3-qe/BaTiO3_qe_pbe.xyz")
    parser.add_argument("--index", type=int, default=1, help="frame of --structure (default: cubic a = 4.00 Å)")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--sigma", type=float, default=0.06, help="Å per component (~400 K in BaTiO3)")
    parser.add_argument("--strain", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


def run(args) -> None:
    import ase.io

    from ..atomic import atomic_path
    from ..data.frames import read_structure

    atoms = read_structure(args.structure, args.index, key="structure")
    with atomic_path(args.out, ".xyz") as tmp:
        ase.io.write(tmp, random_structures(atoms, args.count, args.sigma, args.strain, args.seed), format="extxyz")
    print(f"wrote {args.count} random structures to {args.out}; label them with python -m ferronn.label")


def main(argv=None, prog=None) -> int:
    return cli_exit_code(run, parse_args(argv, prog))


if __name__ == "__main__":
    sys.exit(main())
