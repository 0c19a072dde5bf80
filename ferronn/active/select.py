"""Which explored frames go to DFT: those the committee disagrees on, not too close in time to each other."""

from __future__ import annotations

import dataclasses
from typing import List, Sequence

import torch


@dataclasses.dataclass
class Candidate:
    """One snapshot of an exploration replica, with the committee's spread there."""

    replica: int
    step: int
    force_std: float  # eV/Å: max over atoms of |σ_F| (the norm of the per-component std)
    born_std: float  # e: max over atoms and components of σ_Z*
    atoms: object = None  # ase.Atoms of the snapshot


def select_frames(candidates: Sequence[Candidate], force_std: float, born_std: float, min_spacing: int,
                  max_count: int, force_std_max: float = 0.0, born_std_max: float = 0.0,
                  min_distance: float = 0.0) -> List[int]:
    """Indices of the candidates to label: spread above a threshold (force_std in eV/Å or born_std in e; a
    threshold <= 0 disables that criterion), at least ``min_spacing`` steps apart within a replica (so a long
    excursion is not labelled ten times), the most uncertain first (spread / threshold), at most ``max_count``.

    Frames past the upper bounds (``force_std_max`` eV/Å, ``born_std_max`` e; <= 0 disables) or with two atoms
    closer than ``min_distance`` Å are failed exploration, not uncertainty worth DFT (DP-GEN's trust_hi): MD with a
    young committee can collapse a replica, and its most uncertain frames are then the least physical ones."""
    def score(c: Candidate) -> float:
        ratios = []
        if force_std > 0:
            ratios.append(c.force_std / force_std)
        if born_std > 0:
            ratios.append(c.born_std / born_std)
        return max(ratios) if ratios else 0.0

    def plausible(c: Candidate) -> bool:
        if force_std_max > 0 and c.force_std > force_std_max or born_std_max > 0 and c.born_std > born_std_max:
            return False
        return min_distance <= 0 or c.atoms is None or not closer_than(c.atoms, min_distance)

    above = [i for i, c in enumerate(candidates) if score(c) > 1.0 and plausible(c)]
    chosen: List[int] = []
    for i in sorted(above, key=lambda i: (-score(candidates[i]), candidates[i].replica, candidates[i].step)):
        if len(chosen) >= max_count:
            break
        c = candidates[i]
        if all(candidates[j].replica != c.replica or abs(candidates[j].step - c.step) >= min_spacing
               for j in chosen):
            chosen.append(i)
    return sorted(chosen, key=lambda i: (candidates[i].replica, candidates[i].step))


def closer_than(atoms, distance: float) -> bool:
    """Whether any two atoms of an ase.Atoms (periodic images included) are closer than ``distance`` Å:
    the package's vesin list at that cutoff, O(N), so cells of thousands of atoms screen as fast as 5-atom ones."""
    from ..data.graph import neighbour_list

    edge_index, _ = neighbour_list(torch.as_tensor(atoms.positions, dtype=torch.float64),
                                   torch.as_tensor(atoms.cell.array, dtype=torch.float64), atoms.pbc, distance,
                                   check_distance=False)
    return edge_index.shape[1] > 0
