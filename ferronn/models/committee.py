"""Committees: N models of one kind trained with different seeds and data orders; mean prediction and spread.

A committee is a drop-in model: ``EnergyCommittee`` answers like an ``EnergyModel`` (energy, forces, stress are
the members' means) and adds ``energy_std`` (eV), ``forces_std`` (eV/Å, per atom and component) and
``stress_std``; ``BornCommittee`` answers like a ``BornModel`` with ``born_charges_std`` (e). The spread is the
members' standard deviation (N − 1 in the denominator), the signal active learning selects on.

Cost: all members share one batch and one neighbour list; their forward passes run one after another (MACE
models of different weights do not stack into one kernel without rewriting them) and the forces and stresses
of all members come from a single backward pass (``members_energy_forces_stress``).
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional

import torch

from .. import keys as K
from ..errors import CheckpointError
from .autograd import in_dtype, members_energy_forces_stress

COMMITTEE_FILE = "committee.json"  # in a committee run's folder: the members' checkpoint paths


def _spread(stacked: torch.Tensor) -> torch.Tensor:
    if stacked.shape[0] < 2:
        return torch.zeros_like(stacked[0])
    return stacked.std(dim=0, correction=1)


class _Committee(torch.nn.Module):
    kind = ""

    def __init__(self, members: List[torch.nn.Module]):
        super().__init__()
        if not members:
            raise CheckpointError("a committee needs at least one member")
        kinds = {getattr(m, "kind", None) for m in members}
        if kinds != {self.kind}:
            raise CheckpointError(f"a {self.kind} committee got members of kind(s) {sorted(map(str, kinds))}")
        first = members[0]
        for i, member in enumerate(members[1:], 1):
            if member.atomic_numbers != first.atomic_numbers or member.r_max != first.r_max:
                raise CheckpointError(f"committee member {i} knows elements {member.atomic_numbers} with cutoff "
                                      f"{member.r_max} Å; member 0: {first.atomic_numbers}, {first.r_max} Å")
        self.members = torch.nn.ModuleList(members)
        self.atomic_numbers = list(first.atomic_numbers)
        self.r_max = float(first.r_max)

    @property
    def dtype(self) -> torch.dtype:
        return self.members[0].dtype

    def __len__(self) -> int:
        return len(self.members)


class EnergyCommittee(_Committee):
    """Mean energy/forces/stress of N energy models, and their spread (``*_std`` keys)."""

    kind = "energy"

    def forward(self, batch: Dict[str, torch.Tensor], compute_forces: bool = True, compute_stress: bool = False,
                training: Optional[bool] = None) -> Dict[str, torch.Tensor]:
        training = self.training if training is None else training
        outs = members_energy_forces_stress([m.energy for m in self.members], in_dtype(batch, self.dtype),
                                            compute_forces, compute_stress, training)
        result = {}
        for key in (K.ENERGY, K.FORCES, K.STRESS, K.NODE_ENERGY):
            if key in outs[0]:
                stacked = torch.stack([out[key] for out in outs])
                result[key] = stacked.mean(dim=0)
                if key != K.NODE_ENERGY:
                    result[key + K.STD_SUFFIX] = _spread(stacked)
        return result


class BornCommittee(_Committee):
    """Mean Z* of N Born models (still Σ_κ Z*_κ = 0: a mean of sum-rule-exact tensors) and its spread."""

    kind = "born"

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        stacked = torch.stack([m(batch)[K.BORN_CHARGES] for m in self.members])
        return {K.BORN_CHARGES: stacked.mean(dim=0), K.BORN_CHARGES_STD: _spread(stacked)}


def committee_of(models: list):
    """An EnergyCommittee or BornCommittee of loaded ``models`` (all of one kind)."""
    kind = getattr(models[0], "kind", None) if models else None
    classes = {"energy": EnergyCommittee, "born": BornCommittee}
    if kind not in classes:
        raise CheckpointError(f"cannot build a committee of {type(models[0]).__name__ if models else 'nothing'}")
    return classes[kind](models)


def write_committee_file(folder: str, members: Dict[str, List[str]]) -> str:
    """Record the members' checkpoints {kind: [paths relative to ``folder``]} in ``folder``/committee.json."""
    from ..atomic import write_json

    path = os.path.join(folder, COMMITTEE_FILE)
    write_json(path, {"members": members})
    return path


def load_committee(folder: str, kind: str, device=None, dtype=None):
    """The committee of ``kind`` ('energy' or 'born') recorded in ``folder``/committee.json."""
    from .checkpoint import load_checkpoint

    path = os.path.join(folder, COMMITTEE_FILE)
    if not os.path.exists(path):
        raise CheckpointError(f"'{folder}' holds no committee ({COMMITTEE_FILE} missing; train one with "
                              "python -m ferronn.train --committee N)")
    with open(path) as handle:
        members = json.load(handle).get("members", {})
    if not members.get(kind):
        raise CheckpointError(f"committee '{path}' has no '{kind}' members (it has {sorted(members)})")
    return committee_of([load_checkpoint(os.path.join(folder, p), device=device, dtype=dtype, kind=kind)
                         for p in members[kind]])
