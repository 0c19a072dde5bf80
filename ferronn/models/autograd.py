"""Forces and stress from one energy function, by autograd: the one place where derivatives are taken.

Forces F = -∂U/∂r (eV/Å). Stress by the symmetric strain trick: positions and cell are deformed by (1 + ε) with
ε a zero symmetric displacement per structure, and σ = (1/Ω) ∂U/∂ε (eV/Å³, ASE's sign convention).
"""

from __future__ import annotations

from typing import Callable, Dict, List

import torch

from .. import keys as K
from ..data.graph import cartesian_shifts


def in_dtype(batch: Dict[str, torch.Tensor], dtype: torch.dtype) -> Dict[str, torch.Tensor]:
    """``batch`` with its geometry (positions, cells, lattice shifts) in ``dtype``: a float64 batch for a float32
    model; unchanged when it already is."""
    if batch[K.POSITIONS].dtype == dtype:
        return batch
    return {**batch, **{k: batch[k].to(dtype) for k in (K.POSITIONS, K.CELL, K.UNIT_SHIFTS)}}


def cell_volumes(cell: torch.Tensor) -> torch.Tensor:
    """Volume Ω (Å³) of each cell (B, 3, 3)."""
    return torch.linalg.det(cell).abs()


def energy_forces_stress(
    energy_fn: Callable[[Dict[str, torch.Tensor]], Dict[str, torch.Tensor]],
    batch: Dict[str, torch.Tensor],
    compute_forces: bool = True,
    compute_stress: bool = False,
    training: bool = False,
) -> Dict[str, torch.Tensor]:
    """Evaluate ``energy_fn`` (returns at least ``energy`` (B,)) and add ``forces`` and ``stress`` by autograd.

    ``training`` keeps the graph of the derivatives so a loss on forces/stress can be backpropagated.
    Structures without periodicity get NaN stress (mask them; their volume is undefined).
    """
    return members_energy_forces_stress([energy_fn], batch, compute_forces, compute_stress, training)[0]


def members_energy_forces_stress(
    energy_fns: List[Callable[[Dict[str, torch.Tensor]], Dict[str, torch.Tensor]]],
    batch: Dict[str, torch.Tensor],
    compute_forces: bool = True,
    compute_stress: bool = False,
    training: bool = False,
) -> List[Dict[str, torch.Tensor]]:
    """``energy_forces_stress`` for several energy functions (a committee) on one batch and one neighbour list.

    Each member gets its own leaf positions and strain, so one backward pass over the sum of all members'
    energies yields every member's own forces and stress.
    """
    outs, inputs = [], []
    for energy_fn in energy_fns:
        positions, cell = batch[K.POSITIONS], batch[K.CELL]
        leaves = []
        if compute_forces:
            if not positions.requires_grad or len(energy_fns) > 1:
                positions = positions.detach().requires_grad_(True)
            leaves.append(positions)
        if compute_stress:
            displacement = torch.zeros_like(cell, requires_grad=True)
            leaves.append(displacement)
            strain = 0.5 * (displacement + displacement.transpose(-1, -2))
            positions = positions + torch.bmm(positions.unsqueeze(1), strain.index_select(0, batch[K.BATCH])).squeeze(1)
            cell = cell + torch.bmm(cell, strain)
        shifts = cartesian_shifts(batch[K.UNIT_SHIFTS], cell, batch[K.BATCH], batch[K.EDGE_INDEX])
        outs.append(dict(energy_fn({**batch, K.POSITIONS: positions, K.CELL: cell, K.SHIFTS: shifts})))
        inputs.append(leaves)
    if not inputs[0]:
        return outs
    flat = [x for leaves in inputs for x in leaves]
    grads = torch.autograd.grad(
        [sum(out[K.ENERGY].sum() for out in outs)], flat, create_graph=training, retain_graph=training,
        allow_unused=True,
    )
    grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, flat)]
    if compute_stress:
        volume = cell_volumes(batch[K.CELL])
        periodic = batch[K.PBC].all(dim=-1) if K.PBC in batch else torch.ones_like(volume, dtype=torch.bool)
    per_member = len(inputs[0])
    for m, out in enumerate(outs):
        member = grads[m * per_member:(m + 1) * per_member]
        if compute_forces:
            out[K.FORCES] = -member[0]
        if compute_stress:
            stress = member[-1] / volume[:, None, None]
            out[K.STRESS] = torch.where(periodic[:, None, None], stress, torch.full_like(stress, float("nan")))
    return outs
