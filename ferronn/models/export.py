"""Exported models: a ferronn model as a ``torch.export`` program (.pt2) that runs without mace, e3nn or the
training code, and loads without unpickling anything.

The exported graph is the model's forward on plain tensors — for the energy model the per-atom energies
(float64 eV), for the Born model Z* (N, 3, 3) in e with the sum rule applied — with dynamic numbers of atoms,
edges and structures. Forces and stress are not baked in: ``ExportedEnergyModel`` takes them by autograd through
the loaded graph with the same code as every other model (``models.autograd``), so an exported model is a
drop-in for the calculator and the MD engine. Other engines (C++, AOTInductor) can load the same .pt2 and
differentiate it themselves. Inputs, in this order (the batch schema's keys, ``ferronn.keys``):

    energy: positions (N,3) Å, cell (B,3,3) Å, species (N,), edge_index (2,E), unit_shifts (E,3), batch (N,)
                                                                  → node_energy (N,) eV, float64
    born:   the same and num_atoms (B,)                          → born_charges (N,3,3) e

Tensors created inside the forward are traced on the export device: export on the device you will run on
(``--device cuda``), or let ``load_exported`` move the program (``torch.export.passes.move_to_device_pass``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from typing import Dict, Optional

import torch

from .._version import __version__
from .. import keys as K
from ..errors import CheckpointError
from ..units import UNIT_SYSTEM
from ..data.graph import cartesian_shifts
from ..keys import SHIFTS
from .autograd import energy_forces_stress, in_dtype

METADATA = "ferronn.json"  # extra file inside the .pt2 archive: kind, species, cutoff, dtype, units, version
INPUTS = {"energy": (K.POSITIONS, K.CELL, K.SPECIES, K.EDGE_INDEX, K.UNIT_SHIFTS, K.BATCH),
          "born": (K.POSITIONS, K.CELL, K.SPECIES, K.EDGE_INDEX, K.UNIT_SHIFTS, K.BATCH, K.NUM_ATOMS)}


@contextlib.contextmanager
def _traceable_e3nn():
    """e3nn normally TorchScript-compiles its generated code; torch.export cannot trace into ScriptModules, so
    models to export are rebuilt with plain fx modules (same numbers)."""
    import e3nn

    from .energy import _import_mace

    _import_mace()
    previous = e3nn.get_optimization_defaults()["jit_script_fx"]
    e3nn.set_optimization_defaults(jit_script_fx=False)
    try:
        yield
    finally:
        e3nn.set_optimization_defaults(jit_script_fx=previous)


class _EnergyGraph(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions, cell, species, edge_index, unit_shifts, batch):
        shifts = cartesian_shifts(unit_shifts, cell, batch, edge_index)
        # Per-atom energies do not depend on which structure an atom is in once the edge shifts are Cartesian, and
        # mace reads the structure count with int() (which would freeze it in the graph): show it one structure.
        one = torch.zeros_like(batch)
        ptr = torch.cat([one[:1], torch.full_like(one[:1], positions.shape[0])])
        data = {K.POSITIONS: positions, K.CELL: cell[:1], K.SPECIES: species, K.EDGE_INDEX: edge_index,
                K.UNIT_SHIFTS: unit_shifts, K.BATCH: one, K.PTR: ptr, SHIFTS: shifts}
        return self.model.energy(data)[K.NODE_ENERGY]


class _BornGraph(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions, cell, species, edge_index, unit_shifts, batch, num_atoms):
        data = {K.POSITIONS: positions, K.CELL: cell, K.SPECIES: species, K.EDGE_INDEX: edge_index,
                K.UNIT_SHIFTS: unit_shifts, K.BATCH: batch, K.NUM_ATOMS: num_atoms}
        return self.model(data)[K.BORN_CHARGES]


def _example_batch(model, dtype, device):
    """Two structures of different sizes (a dynamic dimension must not be traced at 0 or 1)."""
    import ase

    from ..data.graph import SpeciesTable
    from ..data.verlet import atoms_batch

    numbers = model.atomic_numbers
    structures = []
    for size in (2, 3):
        atoms = ase.Atoms(numbers=[numbers[i % len(numbers)] for i in range(size)],
                          cell=[4.0, 4.1, 4.2], pbc=True)
        atoms.positions = atoms.cell.cartesian_positions(torch.rand(size, 3, generator=torch.Generator()
                                                                    .manual_seed(size)).numpy())
        structures.append(atoms.repeat((2, 2, 2)))
    return atoms_batch(structures, SpeciesTable(numbers), model.r_max, dtype, device)


def export_checkpoint(checkpoint_path: str, out: str, device=None, dtype=None) -> str:
    """Export the model of ``checkpoint_path`` (energy or Born) to ``out`` (.pt2), atomically."""
    from torch.export import Dim, export

    from .checkpoint import load_checkpoint

    device = torch.device(device or "cpu")
    with _traceable_e3nn():
        model = load_checkpoint(checkpoint_path, device=device, dtype=dtype)
    if model.kind not in INPUTS:
        raise CheckpointError(f"checkpoint '{checkpoint_path}': cannot export a '{model.kind}' model")
    graph = (_EnergyGraph if model.kind == "energy" else _BornGraph)(model).eval()
    batch = _example_batch(model, model.dtype, device)
    args = tuple(batch[k] for k in INPUTS[model.kind])
    dynamic = tuple({0: Dim.AUTO} if k != K.EDGE_INDEX else {1: Dim.AUTO} for k in INPUTS[model.kind])
    if model.kind == "energy":
        model._e0(device)  # fill the E0 cache now: a tensor attribute set while tracing would warn
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*was assigned during export.*")
        program = export(graph, args, dynamic_shapes=dynamic, strict=False)
    program._example_inputs = None  # nothing but the graph and raw weights in the archive: no pickle to load
    metadata = {"kind": model.kind, "atomic_numbers": list(model.atomic_numbers), "r_max": model.r_max,
                "dtype": str(model.dtype).replace("torch.", ""), "units": UNIT_SYSTEM, "ferronn_version": __version__,
                "inputs": list(INPUTS[model.kind]), "device": str(device),
                "checkpoint_metadata": getattr(model, "checkpoint_metadata", {})}
    # torch.export.save names the archive's root folder after the file: write <tmpdir>/<name>.pt2, then rename.
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".tmp-", dir=folder)
    try:
        tmp = os.path.join(scratch, os.path.basename(out))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No complete tensor found")  # no shared storages: harmless
            torch.export.save(program, tmp, extra_files={METADATA: json.dumps(metadata)})
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


class _Exported(torch.nn.Module):
    def __init__(self, program, metadata: dict, device: torch.device):
        super().__init__()
        self._program, self.device = program, device
        self.graph = program.module()
        self.metadata = metadata
        self.atomic_numbers = [int(z) for z in metadata["atomic_numbers"]]
        self.r_max = float(metadata["r_max"])
        self._dtype = getattr(torch, metadata["dtype"])
        self.checkpoint_metadata = metadata.get("checkpoint_metadata", {})

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def to(self, *args, **kwargs):
        """Moves the program to another device; a dtype change is refused (the graph is traced in one dtype)."""
        dtype = kwargs.get("dtype") or next((a for a in args if isinstance(a, torch.dtype)), None)
        if dtype is not None and dtype != self._dtype:
            raise CheckpointError(f"an exported {self.kind} model runs in {self._dtype} only; export it again "
                                  f"with --dtype {str(dtype).replace('torch.', '')}")
        device = kwargs.get("device") or next((a for a in args if isinstance(a, (str, torch.device))), None)
        if device is not None and torch.device(device) != self.device:
            from torch.export.passes import move_to_device_pass

            self.device = torch.device(device)
            self._program = move_to_device_pass(self._program, self.device)
            self.graph = self._program.module()
        return self

    def eval(self):  # an exported program is inference-only already, and its module refuses eval()/train()
        return self

    def _inputs(self, batch) -> list:
        return [batch[k].to(self._dtype) if batch[k].is_floating_point() else batch[k] for k in INPUTS[self.kind]]


class ExportedEnergyModel(_Exported):
    """An exported energy model answering like ``EnergyModel`` (forces and stress by autograd)."""

    kind = "energy"

    def energy(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        node_energy = self.graph(*self._inputs(batch))
        ptr = batch[K.PTR]
        energy = torch.zeros(ptr.shape[0] - 1, dtype=torch.float64, device=node_energy.device)
        return {K.ENERGY: energy.index_add(0, batch[K.BATCH], node_energy), K.NODE_ENERGY: node_energy}

    def forward(self, batch, compute_forces: bool = True, compute_stress: bool = False,
                training: Optional[bool] = None) -> Dict[str, torch.Tensor]:
        # models.autograd hands ``energy`` the strained positions and cells; the graph derives the shifts from them.
        return energy_forces_stress(self.energy, in_dtype(batch, self._dtype), compute_forces, compute_stress, False)


class ExportedBornModel(_Exported):
    """An exported Born model answering like ``BornModel``."""

    kind = "born"

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {K.BORN_CHARGES: self.graph(*self._inputs(batch))}


def read_metadata(path: str) -> dict:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(f"extra/{METADATA}") or n.endswith(METADATA)]
            if not names:
                raise CheckpointError(f"exported model '{path}': no {METADATA} inside (not exported by ferronn)")
            return json.loads(archive.read(names[0]))
    except zipfile.BadZipFile:
        raise CheckpointError(f"exported model '{path}': not a .pt2 archive") from None


def load_exported(path, device=None, kind: Optional[str] = None):
    """An exported model (.pt2) as a drop-in model on ``device``; ``kind`` makes a model of another kind an
    error. No pickle is read: the archive holds the graph as JSON and the weights as raw bytes."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"exported model '{path}': no such file")
    metadata = read_metadata(path)
    if metadata.get("units") != UNIT_SYSTEM:
        raise CheckpointError(f"exported model '{path}': units {metadata.get('units')} differ from {UNIT_SYSTEM}")
    if kind is not None and metadata["kind"] != kind:
        raise CheckpointError(f"exported model '{path}': holds a '{metadata['kind']}' model, expected '{kind}'")
    try:
        program = torch.export.load(path)
    except Exception as exc:  # truncated archive, graph of a newer torch, ...
        raise CheckpointError(f"exported model '{path}': could not be loaded ({type(exc).__name__}: {exc})") from None
    cls = ExportedEnergyModel if metadata["kind"] == "energy" else ExportedBornModel
    model = cls(program, metadata, torch.device(metadata.get("device", "cpu")))
    return model.to(device) if device is not None else model
