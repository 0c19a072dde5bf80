"""Per-layer local polarization of a perovskite ABO3 (BaTiO3): Ti-centred unit-cell dipoles from Z*·u.

For the cell of each B-site atom (Ti) with its 6 nearest O (weight ½, each shared by 2 cells) and 8 nearest A-site
atoms (Ba, weight ⅛, shared by 8), x_j the vector from the Ti to atom j (the periodic image fixed on the starting
structure, positions unwrapped) and c = Σ_Ba ⅛ x_Ba the centre of the Ba cube:

    p_c = Σ_j w_j Z*_j (x_j − c)   (e·Å; the Ti itself has x = 0, w = 1)     P_c = p_c / Ω_c,  Ω_c = Ω / n_Ti

zero for the ideal cubic cell, Z*_Ti·δ for a Ti displaced by δ; with a charge-neutral cell (Σ_j w_j Z*_j = 0) the
mean of P_c over all cells is the cell polarization Σ_κ Z*_κ u_κ / Ω. Cells are grouped into layers along one
lattice vector by their Ti's fractional coordinate on the starting structure (layer 0 lowest), and P_c is averaged
over each layer: (B, L, 3) in e/Å². Topology is built once on the host; evaluation is on the device.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import DataError

WEIGHTS = {"B": 1.0, "O": 0.5, "A": 0.125}


class LayerPolarization:
    """Local polarization per layer along ``axis`` (0, 1, 2: lattice vector a, b, c) for a batch of replicas."""

    def __init__(self, atoms_list: Sequence, axis: int, b_site: int = 22, a_site: int = 56, oxygen: int = 8,
                 device=None, dtype=torch.float64, loc: str = "layer polarization"):
        from ase.neighborlist import neighbor_list

        self.axis = axis
        centre, members, shifts, weights, layer, positions, offset = [], [], [], [], [], [], 0
        self.num_layers = None
        for b, atoms in enumerate(atoms_list):
            z = atoms.numbers
            ti = np.flatnonzero(z == b_site)
            if len(ti) == 0 or (z == a_site).sum() != len(ti) or (z == oxygen).sum() != 3 * len(ti):
                raise DataError(f"{loc}: replica {b} is not an ABO3 perovskite of Z={a_site}, {b_site}, {oxygen} "
                                f"(counts {[(int(k), int((z == k).sum())) for k in np.unique(z)]})")
            a_pc = (abs(atoms.cell.volume) / len(ti)) ** (1 / 3)
            i, j, shift, dist = neighbor_list("ijSd", atoms, 1.05 * a_pc)
            for t in ti:
                rows = []
                for kind, count in ((oxygen, 6), (a_site, 8)):
                    sel = np.flatnonzero((i == t) & (z[j] == kind))
                    sel = sel[np.argsort(dist[sel], kind="stable")]
                    if len(sel) < count:
                        raise DataError(f"{loc}: replica {b}, Ti atom {int(t)} has {len(sel)} atoms of Z={kind} "
                                        f"within {1.05 * a_pc:.2f} Å, expected {count} (not a perovskite cage)")
                    rows += [(int(j[k]), shift[k], WEIGHTS["O" if kind == oxygen else "A"]) for k in sel[:count]]
                centre.append(offset + int(t))
                members.append([offset + r[0] for r in rows])
                shifts.append([r[1] for r in rows])
                weights.append([r[2] for r in rows])
            # Layers: round the Ti planes' fractional coordinate onto n_L planes, n_L the cells along the axis.
            n_layers = max(1, int(round(np.linalg.norm(atoms.cell.array[axis]) / a_pc)))
            if self.num_layers is None:
                self.num_layers = n_layers
            elif n_layers != self.num_layers:
                raise DataError(f"{loc}: replica {b} has {n_layers} layers along axis {axis}, replica 0 has "
                                f"{self.num_layers}: replicas must share the cell layout")
            s = atoms.get_scaled_positions(wrap=True)[ti, axis]
            ref = s.min()
            k = np.floor(((s - ref) % 1.0) * n_layers + 0.5).astype(np.int64) % n_layers
            layer.append(b * n_layers + k)
            # each layer's position: the circular mean of its Ti, in [−½/L, 1 − ½/L) so a plane at s ≈ 1 reads ≈ 0
            angle = 2 * np.pi * s
            mean = [np.arctan2(np.sin(angle[k == m]).mean(), np.cos(angle[k == m]).mean()) / (2 * np.pi)
                    if (k == m).any() else (ref + m / n_layers) for m in range(n_layers)]
            low = -0.5 / n_layers
            positions.append([(x - low) % 1.0 + low for x in mean])
            offset += len(atoms)
        # Relabel layers so that layer 0 has the lowest fractional coordinate in each replica.
        positions = np.array(positions)
        order = np.argsort(positions, axis=1, kind="stable")
        rank = np.argsort(order, axis=1)
        layer = np.concatenate(layer)
        b_of = layer // self.num_layers
        layer = b_of * self.num_layers + rank[b_of, layer % self.num_layers]
        self.layer_positions = np.take_along_axis(positions, order, axis=1)  # (B, L) fractional centres
        self.num_replicas = len(atoms_list)
        kw = dict(device=device)
        self.centre = torch.tensor(centre, dtype=torch.int64, **kw)  # (C,)
        self.members = torch.tensor(members, dtype=torch.int64, **kw)  # (C, 14)
        self.shifts = torch.tensor(np.array(shifts), dtype=dtype, **kw)  # (C, 14, 3) lattice-vector multiples
        self.weights = torch.tensor(weights, dtype=dtype, **kw)  # (C, 14)
        self.layer = torch.tensor(layer, dtype=torch.int64, **kw)  # (C,) global layer index b·L + l
        self.replica = torch.tensor(b_of, dtype=torch.int64, **kw)  # (C,)
        counts = torch.zeros(self.num_replicas * self.num_layers, dtype=dtype, **kw)
        self.counts = counts.index_add(0, self.layer, torch.ones_like(self.layer, dtype=dtype))
        self.cells_per_replica = torch.zeros(self.num_replicas, dtype=dtype, **kw).index_add(
            0, self.replica, torch.ones_like(self.replica, dtype=dtype))

    def cell_dipoles(self, positions: torch.Tensor, cell: torch.Tensor, born: torch.Tensor) -> torch.Tensor:
        """p_c (C, 3) e·Å of every Ti-centred cell from unwrapped positions (N, 3) Å, cells (B, 3, 3), Z* (N, 3, 3)."""
        h = cell[self.replica].to(positions.dtype)  # (C, 3, 3)
        images = positions[self.members] + torch.einsum("cki,cij->ckj", self.shifts.to(positions.dtype), h)
        x = images - positions[self.centre][:, None, :]  # (C, 14, 3)
        a_site = self.weights == WEIGHTS["A"]
        c = (x * (self.weights * a_site)[..., None]).sum(1)  # Σ_Ba ⅛ x_Ba
        z = born.to(positions.dtype)
        own = -torch.einsum("cab,cb->ca", z[self.centre], c)  # the Ti: x = 0
        cage = torch.einsum("ck,ckab,ckb->ca", self.weights, z[self.members], x - c[:, None, :])
        return own + cage

    def __call__(self, positions: torch.Tensor, cell: torch.Tensor, born: torch.Tensor) -> torch.Tensor:
        """Mean P_c per layer (B, L, 3) in e/Å²."""
        p = self.cell_dipoles(positions, cell, born)
        omega_cell = torch.linalg.det(cell).abs().to(p.dtype)[self.replica] / self.cells_per_replica[self.replica]
        sums = torch.zeros((self.num_replicas * self.num_layers, 3), dtype=p.dtype, device=p.device)
        sums = sums.index_add(0, self.layer, p / omega_cell[:, None])
        return (sums / self.counts.to(p.dtype)[:, None]).reshape(self.num_replicas, self.num_layers, 3)
