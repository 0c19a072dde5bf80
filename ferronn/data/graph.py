"""Neighbour lists (vesin-torch) and batching of frames into the one batch schema (``ferronn.keys``).

Neighbour lists are periodic for any cell, including cells smaller than the cutoff where an atom sees its own
images (vesin returns those pairs with their lattice shifts).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from .. import keys as K
from ..errors import DataError, where

#: Two atoms closer than this (Å) are a broken structure, not physics.
MIN_INTERATOMIC_DISTANCE = 0.3


def cartesian_shifts(unit_shifts, cell, batch, edge_index) -> torch.Tensor:
    """Cartesian lattice shift (E, 3) in Å of each edge: unit_shifts · cell of the edge's structure."""
    # index_select, not cell[...]: the backward of advanced indexing (the stress) is a serial accumulating
    # index_put_ on a CPU, 16 ms for 45k edges into one cell against 2 ms (models/messages.py says more)
    edge_cells = cell.index_select(0, batch.index_select(0, edge_index[0]))
    return torch.bmm(unit_shifts.unsqueeze(1), edge_cells).squeeze(1)


def neighbour_list(positions, cell, pbc, r_max: float, check_distance=True, loc=""):
    """Full neighbour list within ``r_max`` (Å): edge_index (2, E) int64 [i, j] and integer unit shifts (E, 3).

    The edge vector is r_j - r_i + unit_shifts @ cell. Runs on the device of ``positions``.
    """
    from vesin_torch import NeighborList

    pbc = torch.as_tensor(pbc, dtype=torch.bool, device=positions.device)
    if not bool(pbc.any()):
        cell = torch.zeros(3, 3, dtype=positions.dtype, device=positions.device)
    # Sorted by sender, as matscipy's lists in mace: the gathers/scatters over edges are ~10-15% faster on CPU.
    calculator = NeighborList(cutoff=float(r_max), full_list=True, sorted=True)
    i, j, shifts, d = calculator.compute(positions, cell.to(positions.dtype), periodic=pbc, quantities="ijSd")
    if check_distance and d.numel() and float(d.min()) < MIN_INTERATOMIC_DISTANCE:
        k = int(torch.argmin(d))
        raise DataError(
            f"{loc}: atoms {int(i[k])} and {int(j[k])} are {float(d[k]):.3f} Å apart; expected at least "
            f"{MIN_INTERATOMIC_DISTANCE} Å (overlapping atoms or wrong units?)"
        )
    edge_index = torch.stack([i.to(torch.int64), j.to(torch.int64)])
    return edge_index, shifts.to(positions.dtype)


class SpeciesTable:
    """Maps atomic numbers to the model's species indices; unknown elements give a clear error."""

    def __init__(self, atomic_numbers: Sequence[int]):
        self.atomic_numbers = [int(z) for z in atomic_numbers]
        self._lookup = torch.full((119,), -1, dtype=torch.int64)
        for idx, z in enumerate(self.atomic_numbers):
            self._lookup[z] = idx

    def __len__(self):
        return len(self.atomic_numbers)

    def index(self, atomic_numbers: torch.Tensor, loc="") -> torch.Tensor:
        table = self._lookup.to(atomic_numbers.device)
        idx = table[atomic_numbers.clamp(0, 118)]
        if bool((idx < 0).any()):
            from ase.data import chemical_symbols

            unknown = sorted({int(z) for z in atomic_numbers[idx < 0]})
            known = [chemical_symbols[z] for z in self.atomic_numbers]
            raise DataError(
                f"{loc}: element(s) {[chemical_symbols[z] for z in unknown]} not known to the model; "
                f"it knows {known}"
            )
        return idx


def frame_to_graph(frame: dict, species: SpeciesTable, r_max: float) -> dict:
    """Frame dict (numpy, float64) → graph dict of float64 CPU tensors with its neighbour list."""
    loc = where(frame.get("source", "<memory>"), frame.get("index", 0))
    positions = torch.as_tensor(frame[K.POSITIONS], dtype=torch.float64)
    cell = torch.as_tensor(frame[K.CELL], dtype=torch.float64)
    pbc = torch.as_tensor(frame[K.PBC], dtype=torch.bool)
    z = torch.as_tensor(frame[K.ATOMIC_NUMBERS], dtype=torch.int64)
    edge_index, unit_shifts = neighbour_list(positions, cell, pbc, r_max, loc=loc)
    graph = {
        K.POSITIONS: positions,
        K.CELL: cell,
        K.PBC: pbc,
        K.ATOMIC_NUMBERS: z,
        K.SPECIES: species.index(z, loc),
        K.EDGE_INDEX: edge_index,
        K.UNIT_SHIFTS: unit_shifts,
        K.FRAME_INDEX: torch.tensor(frame.get("index", 0), dtype=torch.int64),
    }
    for label in K.LABELS + (K.POLARIZATION,):  # polarization stays on the graph; collate does not batch it
        if label in frame:
            graph[label] = torch.as_tensor(frame[label], dtype=torch.float64)
    return graph


def _label_shape(label, n):
    return {K.ENERGY: (), K.FORCES: (n, 3), K.STRESS: (3, 3), K.BORN_CHARGES: (n, 3, 3)}[label]


def collate(graphs: Sequence[dict], dtype: Optional[torch.dtype] = None, labels=K.LABELS) -> dict:
    """Concatenate graph dicts into one batch; float tensors in ``dtype`` except energies (always float64).

    A label missing from a structure gets mask False and NaN values, so it cannot silently enter a loss.
    """
    dtype = dtype or torch.get_default_dtype()
    num_atoms = torch.tensor([g[K.POSITIONS].shape[0] for g in graphs], dtype=torch.int64)
    ptr = torch.zeros(len(graphs) + 1, dtype=torch.int64)
    ptr[1:] = torch.cumsum(num_atoms, 0)
    edge_index = torch.cat([g[K.EDGE_INDEX] + ptr[b] for b, g in enumerate(graphs)], dim=1)
    batch = {
        K.POSITIONS: torch.cat([g[K.POSITIONS] for g in graphs]).to(dtype),
        K.CELL: torch.stack([g[K.CELL] for g in graphs]).to(dtype),
        K.PBC: torch.stack([g[K.PBC] for g in graphs]),
        K.ATOMIC_NUMBERS: torch.cat([g[K.ATOMIC_NUMBERS] for g in graphs]),
        K.SPECIES: torch.cat([g[K.SPECIES] for g in graphs]),
        K.EDGE_INDEX: edge_index,
        K.UNIT_SHIFTS: torch.cat([g[K.UNIT_SHIFTS] for g in graphs]).to(dtype),
        K.BATCH: torch.repeat_interleave(torch.arange(len(graphs)), num_atoms),
        K.PTR: ptr,
        K.NUM_ATOMS: num_atoms,
        K.FRAME_INDEX: torch.stack([g[K.FRAME_INDEX] for g in graphs]),
    }
    for label in labels:
        present = [label in g for g in graphs]
        if not any(present):
            continue
        label_dtype = torch.float64 if label == K.ENERGY else dtype
        values = []
        for g, n in zip(graphs, num_atoms.tolist()):
            values.append(g[label] if label in g else torch.full(_label_shape(label, n), float("nan")))
        stacked = torch.cat(values) if label in K.PER_ATOM_LABELS else torch.stack(values)
        batch[label] = stacked.to(label_dtype)
        batch[K.mask_key(label)] = torch.tensor(present, dtype=torch.bool)
    return batch


def batch_to(batch: dict, device) -> dict:
    """Move every tensor of a batch to ``device`` (non-blocking where possible)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def atoms_to_batch(atoms_list, species: SpeciesTable, dtype: torch.dtype, device, loc: str = "") -> dict:
    """ASE Atoms objects → a batch without edges or labels (the calculator and MD add edges from a VerletList)."""
    graphs = []
    for b, atoms in enumerate(atoms_list):
        z = torch.as_tensor(atoms.numbers, dtype=torch.int64)
        graphs.append({
            K.POSITIONS: torch.as_tensor(atoms.positions, dtype=torch.float64),
            K.CELL: torch.as_tensor(atoms.cell.array, dtype=torch.float64),
            K.PBC: torch.as_tensor(atoms.pbc, dtype=torch.bool),
            K.ATOMIC_NUMBERS: z,
            K.SPECIES: species.index(z, f"{loc}structure {b}"),
            K.EDGE_INDEX: torch.zeros((2, 0), dtype=torch.int64),
            K.UNIT_SHIFTS: torch.zeros((0, 3), dtype=torch.float64),
            K.FRAME_INDEX: torch.tensor(b, dtype=torch.int64),
        })
    return batch_to(collate(graphs, dtype, labels=()), device)
