"""`python -m ferronn.label.teacher --teacher DIR --in traj*.extxyz --out labelled.xyz`: Z* from a committee.

Knowledge distillation for the Born model. A committee of Born models (a folder with committee.json from
``python -m ferronn.train --committee N``, or several born.ckpt) is more accurate than any member: their errors
are partly independent. Its mean Z* (e, Z[a][b] = ∂F_b/∂E_a, exact sum rule: a mean of sum-rule-exact tensors)
labels structures without DFT, e.g. MD snapshots of the training cell; a single student trained on the DFT frames
plus these (``data.extra_train_paths``) learns part of the committee's accuracy at one model's MD cost. The
members' spread is written beside the mean (``born_charge_std``) so a user can see where the teacher is unsure.

Teacher labels are not DFT: train only students on them, never report test errors against them.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Tuple

import numpy as np
import torch

from .. import keys as K
from ..errors import ConfigError, cli_exit_code

#: Key of the teacher's spread (e, per atom, row-major 3×3) in the written frames' ``atoms.arrays``.
STD_KEY = "born_charge_std"


def load_teacher(paths: List[str], device="cpu", dtype=torch.float64):
    """A BornCommittee from one committee folder or from two or more born.ckpt files."""
    from ..models.loading import load
    from ..models.committee import committee_of

    if not paths:
        raise ConfigError("--teacher: give a committee folder or at least two Born checkpoints")
    if len(paths) == 1:
        teacher = load(paths[0], device=device, dtype=dtype, kind="born")
        if getattr(teacher, "members", None) is None:
            raise ConfigError(f"--teacher '{paths[0]}' is a single Born model, not a committee: a student would only "
                              "copy it; give a committee folder (committee.json) or several checkpoints")
        return teacher
    return committee_of([load(p, device=device, dtype=dtype, kind="born") for p in paths])


@torch.no_grad()
def teacher_born_charges(teacher, atoms_list, device="cpu") -> List[Tuple[np.ndarray, np.ndarray]]:
    """[(mean Z* (N, 3, 3), spread (N, 3, 3))] in e for each structure, one structure per forward."""
    from ..data.frames import NO_LABELS, frame_from_atoms
    from ..data.graph import SpeciesTable, batch_to, collate, frame_to_graph

    species = SpeciesTable(teacher.members[0].atomic_numbers)
    r_max = max(m.r_max for m in teacher.members)  # members zero every edge beyond their own cutoff
    out = []
    for i, atoms in enumerate(atoms_list):
        graph = frame_to_graph(frame_from_atoms(atoms, NO_LABELS, "<teacher input>", i), species, r_max)
        batch = batch_to(collate([graph], dtype=teacher.dtype), device)
        pred = teacher(batch)
        out.append((pred[K.BORN_CHARGES].cpu().numpy(), pred[K.BORN_CHARGES_STD].cpu().numpy()))
    return out


def label_with_teacher(teacher, atoms_list, key: str = "born_charge", device="cpu") -> list:
    """Copies of ``atoms_list`` carrying only positions, cell, species and the teacher's Z* under ``key``."""
    import ase

    labelled = []
    for atoms, (mean, std) in zip(atoms_list, teacher_born_charges(teacher, atoms_list, device)):
        copy = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        copy.arrays[key] = mean.reshape(len(atoms), 9)
        copy.arrays[STD_KEY] = std.reshape(len(atoms), 9)
        copy.info["born_source"] = f"teacher committee of {len(teacher)}"
        labelled.append(copy)
    return labelled


def parse_args(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog or "python -m ferronn.label.teacher", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", nargs="+", required=True,
                        help="a committee folder (committee.json) or two or more born.ckpt files")
    parser.add_argument("--in", dest="inputs", nargs="+", required=True,
                        help="ASE-readable structures, one or more files (e.g. the trajectory_r*.extxyz of an MD run)")
    parser.add_argument("--index", default=":", help="frames of each --in file, ASE syntax (default all; e.g. '2:' "
                        "skips each trajectory's first two frames)")
    parser.add_argument("--out", required=True, help="extxyz file to write (atomically)")
    parser.add_argument("--key", default="born_charge", help="atoms.arrays key of the Z* labels (N, 9)")
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def run(args) -> int:
    import ase.io

    from ..atomic import atomic_path
    from ..data.frames import read_structures

    teacher = load_teacher(args.teacher, device=args.device)
    atoms_list = [atoms for path in args.inputs for atoms in read_structures(path, args.index, key="in")[0]]
    labelled = label_with_teacher(teacher, atoms_list, args.key, args.device)
    with atomic_path(args.out, ".xyz") as tmp:
        ase.io.write(tmp, labelled, format="extxyz")
    spread = np.mean([np.abs(a.arrays[STD_KEY]).mean() for a in labelled])
    print(f"wrote {len(labelled)} frames with the mean Z* of {len(teacher)} Born models to {args.out} "
          f"(members' spread {spread:.4f} e per component, mean)")
    return 0


def main(argv=None, prog=None) -> int:
    return cli_exit_code(run, parse_args(argv, prog))


if __name__ == "__main__":
    sys.exit(main())
