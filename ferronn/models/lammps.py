"""Model files for the LAMMPS plugin (``lammps/``): TorchScript modules that libtorch loads in C++.

Why TorchScript and not the .pt2 programs of ``models/export.py``: libtorch runs a .pt2 only through
AOTInductor, which compiles C++ per model (minutes on 2 cores) and gives an inference-only graph, so forces
would need a second exported graph for the gradient. A traced TorchScript module loads in milliseconds with
``torch::jit::load``, keeps autograd (the plugin takes forces with ``torch::autograd::grad``), runs on CPU or
CUDA from the same file, and has dynamic atom and edge counts (checked below on sizes it was not traced at).

Inputs are the graph one LAMMPS rank builds in C++ from its full neighbour list, not a periodic cell
(``edge_index[0]`` sender j, ``edge_index[1]`` receiver i; the edge vector is r_i − r_j + shift, |…| < r_max):

    energy: (positions (N,3) Å, species (N,) int64, edge_index (2,E) int64, shifts (E,3) Å, nlocal () int64)
                                                              → node_energy (nlocal,) eV, float64
    born:   the same                                          → Z* (nlocal,3,3) e, *before* the acoustic sum
                                                                rule (the plugin subtracts the global mean)

Nodes 0..nlocal-1 are the rank's local atoms, the rest ghosts: only the local atoms' outputs are computed, and
each layer only where they need it (receiver pruning, ``models.receivers``). The plugin makes one node per atom
ID and folds other ghost images onto it as Cartesian shifts: on one rank of a periodic box the nodes are the
local atoms only (nlocal = N, no ghost shell to evaluate); on several ranks the atoms other ranks own within the
receptive field follow them (``pair_style ferronn graph ghost``: one node per image, every shift zero).
Metadata travels as an extra file ``ferronn_lammps.txt`` inside the archive, one ``key value...`` per line
(kind, format, atomic_numbers, r_max, num_interactions, dtype, units, ferronn_version): the C++ side parses it
without a JSON library.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Dict

import torch

from .. import __version__
from .. import keys as K
from ..errors import CheckpointError
from ..units import UNIT_SYSTEM

METADATA = "ferronn_lammps.txt"
SUFFIX = ".lammps.pt"
# Version of the modules' inputs, read by the plugin: 1 (no "format" row, before receiver pruning) took
# (positions, species, edge_index, shifts) and returned every node; 2 adds nlocal and returns the local atoms.
FORMAT = 2


def _one_structure(positions: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                   shifts: torch.Tensor) -> dict:
    """The batch of one structure with Cartesian edge shifts (Å); the unit cell is the identity, so the Born
    model's unit_shifts · cell is the same shift."""
    batch = torch.zeros_like(species)
    ptr = torch.cat([batch[:1], batch[:1] * 0 + positions.shape[0]])
    cell = torch.eye(3, dtype=positions.dtype, device=positions.device)[None]
    return {K.POSITIONS: positions, K.CELL: cell, K.SPECIES: species, K.EDGE_INDEX: edge_index,
            K.UNIT_SHIFTS: shifts, K.BATCH: batch, K.PTR: ptr, K.SHIFTS: shifts,
            K.NUM_ATOMS: ptr[1:] - ptr[:1]}


class LammpsEnergy(torch.nn.Module):
    """Per-atom energies (nlocal,) in eV (float64, E0 included) of the local atoms of a cluster; ``prune=False``
    traces the unpruned loop, for graphs where every node is local (nlocal = N)."""

    def __init__(self, model, prune: bool = True):
        super().__init__()
        self.model, self.prune = model, prune

    def forward(self, positions, species, edge_index, shifts, nlocal):
        batch = _one_structure(positions, species, edge_index, shifts)
        return self.model.energy(batch, nlocal if self.prune else None)[K.NODE_ENERGY]


class LammpsBorn(torch.nn.Module):
    """Per-atom Z* (nlocal, 3, 3) in e of the local atoms, before the acoustic sum rule (``prune`` as above)."""

    def __init__(self, model, prune: bool = True):
        super().__init__()
        self.model, self.prune = model, prune

    def forward(self, positions, species, edge_index, shifts, nlocal):
        batch = _one_structure(positions, species, edge_index, shifts)
        return self.model.unconstrained(batch, nlocal if self.prune else None)


class Dispatch(torch.nn.Module):
    """The file's module (scripted): every node local (one rank of a periodic box) runs the unpruned trace, whose
    numbers are the model's own to the bit; a ghost graph runs the pruned one. A tracer cannot branch on nlocal."""

    def __init__(self, full, pruned):
        super().__init__()
        self.full, self.pruned = full, pruned

    def forward(self, positions: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor, shifts: torch.Tensor,
                nlocal: torch.Tensor) -> torch.Tensor:
        if int(nlocal) == positions.shape[0]:
            return self.full(positions, species, edge_index, shifts, nlocal)
        return self.pruned(positions, species, edge_index, shifts, nlocal)


def graph_inputs(model, atoms, dtype) -> tuple:
    """(positions, species, edge_index, shifts) of ``atoms`` within the model's cutoff: an open cluster when
    ``atoms`` has no periodicity, else the periodic graph with Cartesian shifts."""
    from ..data.graph import SpeciesTable, neighbour_list

    positions = torch.as_tensor(atoms.positions, dtype=dtype)
    cell = torch.as_tensor(atoms.cell.array, dtype=dtype)
    species = SpeciesTable(model.atomic_numbers).index(torch.as_tensor(atoms.numbers), "LAMMPS export")
    edge_index, unit_shifts = neighbour_list(positions, cell, atoms.pbc, model.r_max)
    return positions, species, edge_index, unit_shifts.to(dtype) @ cell


def _cluster(model, size: int, seed: int, periodic: bool = False):
    """A jittered cubic cluster of ``size``³ sites (any elements the model knows), or its periodic crystal."""
    import ase

    numbers = model.atomic_numbers
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.arange(size)] * 3, indexing="ij"), -1).reshape(-1, 3)
    positions = grid.to(torch.float64) * 2.05 + 0.3 * torch.rand(grid.shape, generator=g, dtype=torch.float64)
    return ase.Atoms(numbers=[numbers[i % len(numbers)] for i in range(len(grid))], positions=positions.numpy(),
                     cell=[2.05 * size] * 3 if periodic else None, pbc=periodic)


def metadata_text(model, kind: str) -> str:
    rows = {"kind": kind, "format": str(FORMAT), "atomic_numbers": " ".join(str(z) for z in model.atomic_numbers),
            "r_max": repr(float(model.r_max)), "num_interactions": str(int(model.config.num_interactions)),
            "dtype": str(model.dtype).replace("torch.", ""), "units": UNIT_SYSTEM,
            "ferronn_version": __version__}
    return "".join(f"{k} {v}\n" for k, v in rows.items())


def read_metadata(path: str) -> Dict[str, str]:
    """The ``key value`` rows of a LAMMPS model file."""
    files = {METADATA: ""}
    torch.jit.load(path, map_location="cpu", _extra_files=files)
    text = files[METADATA].decode() if isinstance(files[METADATA], bytes) else files[METADATA]
    return dict(line.split(" ", 1) for line in text.splitlines() if line)


def export_lammps(checkpoint_path: str, out: str, dtype=None, tol=None) -> str:
    """Trace the model of ``checkpoint_path`` for the LAMMPS plugin into ``out`` (atomically), after checking the
    traced module against the model on a cluster of another size (atoms, edges) than it was traced on."""
    from ..atomic import atomic_path
    from .checkpoint import load_checkpoint as load

    model = load(checkpoint_path, dtype=dtype).eval()
    if model.kind not in ("energy", "born"):
        raise CheckpointError(f"checkpoint '{checkpoint_path}': cannot export a '{model.kind}' model for LAMMPS")
    wrapper = LammpsEnergy if model.kind == "energy" else LammpsBorn
    if model.kind == "energy":
        model._e0(torch.device("cpu"))
    example = graph_inputs(model, _cluster(model, 2, 0), model.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints: the check below is what counts
        full, pruned = (torch.jit.trace(wrapper(model, prune).eval(), (*example, torch.tensor(n)), check_trace=False)
                        for prune, n in ((False, len(example[0])), (True, 3)))
    traced = torch.jit.script(Dispatch(full, pruned))
    pairs = []
    # Sizes it was not traced at: a cluster with 10 of its 27 atoms local (pruned) and a periodic crystal, all
    # local (the one-rank graph), each against the unpruned model (every node local, nothing pruned).
    for atoms, nlocal in ((_cluster(model, 3, 1), 10), (_cluster(model, 3, 2, periodic=True), 27)):
        positions, species, edges, shifts = graph_inputs(model, atoms, model.dtype)
        positions.requires_grad_(True)
        shifts.requires_grad_(True)
        batch = _one_structure(positions, species, edges, shifts)
        a = traced(positions, species, edges, shifts, torch.tensor(nlocal))
        b = (model.energy(batch)[K.NODE_ENERGY] if model.kind == "energy" else model.unconstrained(batch))[:nlocal]
        pairs.append((a, b))
        if model.kind == "energy":  # forces on every atom and the shifts' gradient (the virial on one rank)
            pairs += zip(*(torch.autograd.grad(x.sum(), (positions, shifts)) for x in (a, b)))
    tol = tol if tol is not None else (1e-9 if model.dtype == torch.float64 else 1e-4)
    for x, y in pairs:
        if x.shape != y.shape:
            raise CheckpointError(f"LAMMPS export of '{checkpoint_path}': the traced module gives shape "
                                  f"{tuple(x.shape)}, the model {tuple(y.shape)}, on a new size; nothing written")
        error = float((x - y).detach().abs().max() / y.detach().abs().max().clamp_min(1e-12))
        if error > tol:
            raise CheckpointError(f"LAMMPS export of '{checkpoint_path}': the traced module differs from the model "
                                  f"by {error:.1e} (relative; allowed {tol:g}) on a new size; nothing written")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    buffer = io.BytesIO()  # the archive's root folder is named after a file name; a buffer gets a fixed one
    torch.jit.save(traced, buffer, _extra_files={METADATA: metadata_text(model, model.kind)})
    with atomic_path(out) as tmp, open(tmp, "wb") as handle:
        handle.write(buffer.getvalue())
    return out
