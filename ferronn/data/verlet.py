"""Verlet neighbour lists with a skin for a batch of structures (vesin-torch, on the batch's device).

The list holds every pair within r_cut + skin; the models' radial cutoff envelopes make pairs beyond r_cut
contribute exactly zero, so the list stays valid until some pair could have crossed from beyond r_cut + skin to
within r_cut. With F = h_ref⁻¹ h the cell deformation since the build and δ the non-affine displacement of each
atom, a pair vector obeys |v'| ≥ |v|(1 − ‖F − I‖₂) − 2 max|δ|, so the list is rebuilt when

    2 · max|δ| + (r_cut + skin) · ‖F − I‖₂ ≥ skin        (per structure; the fixed-cell case is max|δ| ≥ skin/2).
"""

from __future__ import annotations

from typing import Tuple

import torch

from .graph import neighbour_list


class VerletList:
    """Pairs within ``cutoff + skin`` (Å) for structures laid out by ``ptr``; counts its builds."""

    def __init__(self, cutoff: float, skin: float):
        if skin < 0:
            raise ValueError(f"neighbour skin must be >= 0 Å, got {skin}")
        self.cutoff, self.skin = float(cutoff), float(skin)
        self.builds = 0
        self._ref_positions = None
        self._ref_cell_inv = None

    def build(self, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, ptr: torch.Tensor,
              loc: str = "") -> Tuple[torch.Tensor, torch.Tensor]:
        """edge_index (2, E) int64 and unit_shifts (E, 3) for the whole batch (one vesin call per structure)."""
        edges, shifts = [], []
        bounds = ptr.tolist()  # rebuilds are rare: one host read of the layout is fine here
        for b in range(cell.shape[0]):
            lo, hi = bounds[b], bounds[b + 1]
            e, s = neighbour_list(positions[lo:hi].detach(), cell[b].detach(), pbc[b], self.cutoff + self.skin,
                                  loc=f"{loc}structure {b}")
            edges.append(e + lo)
            shifts.append(s)
        self._ref_positions = positions.detach().clone()
        self._ref_cell_inv = torch.linalg.inv(cell.detach())
        self.builds += 1
        return torch.cat(edges, dim=1), torch.cat(shifts)

    def state_dict(self) -> dict:
        """What a restart needs to continue with the same list decisions (tensors only)."""
        return {"ref_positions": self._ref_positions, "ref_cell_inv": self._ref_cell_inv,
                "builds": torch.tensor(self.builds)}

    def load_state_dict(self, state: dict) -> None:
        self._ref_positions, self._ref_cell_inv = state["ref_positions"], state["ref_cell_inv"]
        self.builds = int(state["builds"])

    def stale(self, positions: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor,
              fraction: float = 1.0) -> torch.Tensor:
        """0-d bool tensor on the device: True when some structure has used ``fraction`` of the skin's guarantee
        (1.0: the list may now miss a pair; less, to rebuild early when checks are sparse)."""
        if self._ref_positions is None or positions.shape != self._ref_positions.shape:
            return torch.ones((), dtype=torch.bool, device=positions.device)
        deformation = self._ref_cell_inv @ cell.detach()  # F = h_ref⁻¹ h (rows are lattice vectors)
        affine = torch.einsum("ni,nij->nj", self._ref_positions, deformation[batch])
        moved = (positions.detach() - affine).norm(dim=-1)
        max_moved = torch.zeros(cell.shape[0], dtype=moved.dtype, device=moved.device).scatter_reduce(
            0, batch, moved, reduce="amax", include_self=True)
        eye = torch.eye(3, dtype=cell.dtype, device=cell.device)
        strain = torch.linalg.matrix_norm(deformation - eye, ord=2)
        return ((2 * max_moved + (self.cutoff + self.skin) * strain) >= fraction * self.skin).any()

    def within_cutoff(self, positions: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor,
                      edge_index: torch.Tensor, unit_shifts: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The listed pairs closer than ``cutoff`` now: skin pairs add no energy but cost model time. Boolean
        indexing reads the count to the host, so callers outside a device-side MD loop use it (the calculator)."""
        keep = pair_lengths(positions, cell, batch, edge_index, unit_shifts) < self.cutoff
        return edge_index[:, keep], unit_shifts[keep]


def pair_lengths(positions: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor, edge_index: torch.Tensor,
                 unit_shifts: torch.Tensor) -> torch.Tensor:
    """Current length (Å) of every listed pair (E,), lattice shifts applied with each structure's cell."""
    from .graph import cartesian_shifts

    shifts = cartesian_shifts(unit_shifts.to(positions.dtype), cell, batch, edge_index)
    return (positions[edge_index[1]] - positions[edge_index[0]] + shifts).norm(dim=-1)


def atoms_batch(atoms_list, species, r_max: float, dtype: torch.dtype, device, displacements=None, loc: str = ""):
    """A model-ready batch (edges within ``r_max``) of ASE structures, optionally displaced by ``displacements``
    (N_total, 3) Å: what one-off model calls outside MD (Z* of a frame, loop integrals) feed the models."""
    from .. import keys as K
    from .graph import atoms_to_batch

    batch = atoms_to_batch(atoms_list, species, dtype, device, loc=loc)
    if displacements is not None:
        batch[K.POSITIONS] = batch[K.POSITIONS] + displacements.reshape(-1, 3).to(batch[K.POSITIONS])
    edges, shifts = VerletList(r_max, 0.0).build(batch[K.POSITIONS], batch[K.CELL], batch[K.PBC], batch[K.PTR])
    batch[K.EDGE_INDEX], batch[K.UNIT_SHIFTS] = edges, shifts.to(dtype)
    return batch
