"""What a model must offer to be rebuilt: the contract that checkpoints, torch.compile and cuEquivariance rely on.

``EnergyModel`` and ``BornModel`` satisfy it. Committees (several networks), exported ``.pt2`` programs (a graph,
no hyperparameters) and the analytic test models do not: they can run MD but cannot be recompiled or converted.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class RebuildableModel(Protocol):
    """A ferronn network rebuilt from plain hyperparameters plus its state dict (eV, Å; ``kind`` 'energy'|'born')."""

    kind: str
    r_max: float

    def hyperparameters(self) -> dict: ...

    @classmethod
    def from_hyperparameters(cls, hp: dict, dtype: torch.dtype = torch.float64): ...

    def state_dict(self, *args, **kwargs): ...


def is_rebuildable(model) -> bool:
    """True for a plain network that follows ``RebuildableModel`` and is not already a compiled copy."""
    return isinstance(model, RebuildableModel) and not hasattr(model, "compiled_with")
