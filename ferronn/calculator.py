"""ASE calculator: energy, forces, stress, Born charges, cell dipole and polarization, with an external field.

    from ferronn import FerroCalculator
    atoms.calc = FerroCalculator("run/energy.ckpt", born="run/born.ckpt", field=(0, 0, 0.01))  # V/Å

Physics (docs/conventions.md): with a uniform field E (V/Å) the calculator returns
    forces  F = F0 + Z*ᵀE                      (eV/Å)
    energy  U = U0 − M·E                       (eV; ``energy_zero_field`` holds U0)
    dipole  M = M_ref + Σ_κ ½(Z*_κ(R_ref) + Z*_κ(R))·Δu_κ   (e·Å, Δu the minimum image of R − R_ref)
    polarization P = M/Ω                       (e/Å²)
Non-uniform fields: ``field`` may also be an N×3 array (V/Å at each atom) or a callable ``fn(atoms)`` returning
(3,) or (N, 3), and ``field_regions`` (atom indices or fractional slabs, ``ferronn.local_field``) and ``field_array``
(an ``atoms.arrays`` key, N×3) add to it; then F_i = F0_i + Z*_iᵀE_i and U = U0 − Σ_i E_i·m_i − Ē·M_ref with
m_i = ½(Z*_i(R_ref) + Z*_i(R))·Δu_i and Ē the mean field over the atoms (so a uniform E_i gives U0 − M·E exactly).
M is a one-segment trapezoid from the reference structure (``set_reference``, else the first structure this
calculator sees); ``ferronn.md`` instead integrates M along the trajectory step by step, which is exact for the
work the field does. Energy and forces are exactly consistent only at zero field or for a constant Z*: with a
Z* that depends on positions, optimizers and NEB under a field see a slightly non-conservative force. The
field-induced clamped-ion stress −(1/Ω)E·∂M/∂ε is neglected: the stress is the zero-field stress.
"""

from __future__ import annotations

import weakref
from typing import Optional

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from . import keys as K
from .data.graph import SpeciesTable, atoms_to_batch
from .data.verlet import VerletList
from .errors import CheckpointError, DataError
from .errors import ConfigError
from .field import as_field_vector, atom_dipole_increment, field_energy, field_forces, sum_per_structure
from .local_field import local_amplitudes, parse_regions
from .config import resolve_device
from .models import check_compatible, predict


def _load(model, kind, device, dtype):
    from .models.loading import load

    if isinstance(model, torch.nn.Module):
        if getattr(model, "kind", None) != kind:
            raise CheckpointError(f"expected a '{kind}' model, got {type(model).__name__}")
        return model.to(device=device, dtype=dtype or model.dtype).eval()
    return load(model, device=device, dtype=dtype, kind=kind)


class FerroCalculator(Calculator):
    """ferronn models behind ASE's calculator protocol (see the module docstring for the physics)."""

    implemented_properties = ["energy", "free_energy", "energy_zero_field", "forces", "stress", "born_charges",
                              "dipole", "polarization", "energy_std", "forces_std", "born_charges_std"]

    def __init__(self, model, born=None, device=None, dtype=None, field=(0.0, 0.0, 0.0), skin: float = 0.5,
                 field_regions=None, field_array: str = "", **kwargs):
        """``model``/``born``: checkpoint paths, committee folders (``train --committee N``; then the results also hold
        ``energy_std``, ``forces_std``, ``born_charges_std``) or loaded models; ``skin`` (Å) of the reused
        neighbour list; ``field``, ``field_regions``, ``field_array``: see the module docstring."""
        self._attached = None  # before ASE's __init__: Calculator(atoms=...) attaches through set_atoms
        super().__init__(**kwargs)
        self.device = resolve_device("auto" if device is None else str(device), "FerroCalculator device")
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        self.energy_model = _load(model, "energy", self.device, dtype)
        self.dtype = self.energy_model.dtype
        self.born_model = _load(born, "born", self.device, self.dtype) if born is not None else None
        check_compatible(self.energy_model, self.born_model)
        numbers = self.energy_model.atomic_numbers
        self.species = SpeciesTable(numbers)
        self._born_order = None
        if self.born_model is not None and self.born_model.atomic_numbers != numbers:
            # Born species indices follow its own table: map energy-model indices onto it once.
            self._born_order = SpeciesTable(self.born_model.atomic_numbers).index(torch.as_tensor(numbers))
            self._born_order = self._born_order.to(self.device)
        r_cut = max(self.energy_model.r_max, self.born_model.r_max if self.born_model is not None else 0.0)
        self.neighbours = VerletList(r_cut, skin)
        self._edges = None
        self._layout = None
        self._reference = None
        self.field_regions = parse_regions(field_regions or [], "FerroCalculator field_regions")
        self.field_array = field_array
        if (self.field_regions or field_array) and self.born_model is None:
            raise CheckpointError("a non-zero field needs Born charges: pass born='.../born.ckpt'")
        self.field = field

    # --- field and reference -------------------------------------------------------------------------------
    @property
    def field(self):
        """External field in V/Å: (3,), an N×3 array or a callable; may be changed between calls (a time-dependent
        field in ASE MD)."""
        if self._field_fn is not None:
            return self._field_fn
        return (self._field if self._atom_field is None else self._atom_field).cpu().numpy()

    @field.setter
    def field(self, value):
        self._field_fn, self._atom_field = None, None
        if callable(value):
            self._field_fn, field = value, torch.zeros(3, dtype=self.dtype, device=self.device)
            nonzero = True
        elif np.ndim(value) == 2:
            self._atom_field = self._per_atom(value, "FerroCalculator field")
            field = torch.zeros(3, dtype=self.dtype, device=self.device)
            nonzero = bool(self._atom_field.any())
        else:
            field = as_field_vector(value, "FerroCalculator field", self.dtype, self.device)
            nonzero = bool(field.any())
        if nonzero and self.born_model is None:
            raise CheckpointError("a non-zero field needs Born charges: pass born='.../born.ckpt'")
        self._field = field
        self.results = {}  # the field is not part of ASE's system state: invalidate cached results by hand

    def _per_atom(self, value, loc: str, n: Optional[int] = None) -> torch.Tensor:
        """An (N, 3) field in V/Å as a tensor, or a one-line error naming ``loc`` and the shape received."""
        try:
            arr = torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=self.dtype, device=self.device)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{loc}: expected (Ex, Ey, Ez) or an N×3 array in V/Å ({exc})") from None
        if arr.ndim != 2 or arr.shape[1] != 3 or (n is not None and arr.shape[0] != n):
            want = f"({n}, 3)" if n is not None else "(N, 3)"
            raise ConfigError(f"{loc}: expected (Ex, Ey, Ez) or a per-atom field of shape {want} in V/Å, got shape "
                              f"{tuple(arr.shape)}")
        if not bool(torch.isfinite(arr).all()):
            raise ConfigError(f"{loc}: the field must be finite")
        return arr

    def field_at_atoms(self, atoms) -> Optional[torch.Tensor]:
        """E_i (N, 3) V/Å for ``atoms``, or None when the field is uniform (then ``_field`` applies to every atom)."""
        if self._field_fn is None and self._atom_field is None and not self.field_regions and not self.field_array:
            return None
        n = len(atoms)
        out = self._field.expand(n, 3)
        if self._atom_field is not None:
            out = out + self._per_atom(self._atom_field, "FerroCalculator field", n)
        if self._field_fn is not None:
            value = self._field_fn(atoms)
            out = out + (as_field_vector(value, "FerroCalculator field(atoms)", self.dtype, self.device)
                         if np.ndim(value) == 1 else self._per_atom(value, "FerroCalculator field(atoms)", n))
        if self.field_regions or self.field_array:
            local = local_amplitudes(atoms, self.field_regions, self.field_array, "FerroCalculator: structure",
                                     "FerroCalculator field_regions")
            out = out + torch.as_tensor(local, dtype=self.dtype, device=self.device)
        return out

    def set_reference(self, atoms, dipole=(0.0, 0.0, 0.0)):
        """Structure R_ref whose cell dipole is ``dipole`` (e·Å): M is reported relative to it."""
        self._reference = None
        batch = self._batch(atoms)
        born = self._born(batch) if self.born_model is not None else None
        self._reference = {"positions": batch[K.POSITIONS].detach().clone(), "born": born,
                           "numbers": atoms.numbers.copy(),
                           "dipole": torch.as_tensor(dipole, dtype=self.dtype, device=self.device)}
        self.results = {}

    # --- evaluation ------------------------------------------------------------------------------------------
    def _batch(self, atoms) -> dict:
        layout = (tuple(atoms.numbers), tuple(atoms.pbc))
        batch = atoms_to_batch([atoms], self.species, self.dtype, self.device, loc="FerroCalculator: ")
        if layout != self._layout or self._edges is None or bool(
                self.neighbours.stale(batch[K.POSITIONS], batch[K.CELL], batch[K.BATCH])):
            self._edges = self.neighbours.build(batch[K.POSITIONS], batch[K.CELL], batch[K.PBC], batch[K.PTR],
                                                loc="FerroCalculator: ")
            self._layout = layout
        batch[K.EDGE_INDEX], batch[K.UNIT_SHIFTS] = self.neighbours.within_cutoff(
            batch[K.POSITIONS], batch[K.CELL], batch[K.BATCH], self._edges[0], self._edges[1].to(self.dtype))
        return batch

    def _born(self, batch, spread: Optional[dict] = None):
        """Z* (N, 3, 3); a committee's spread goes into ``spread`` when given."""
        if self._born_order is not None:
            batch = {**batch, K.SPECIES: self._born_order[batch[K.SPECIES]]}
        with torch.no_grad():
            out = self.born_model(batch)
        if spread is not None and K.BORN_CHARGES_STD in out:
            spread["born_charges_std"] = out[K.BORN_CHARGES_STD].cpu().numpy()
        return out[K.BORN_CHARGES]

    def _dipole(self, atoms, batch, born) -> torch.Tensor:
        """M (3,) e·Å."""
        ref, per_atom = self._atom_dipoles(atoms, batch, born)
        return ref + sum_per_structure(per_atom, batch[K.BATCH], 1)[0]

    def _atom_dipoles(self, atoms, batch, born):
        """(M_ref (3,), m_i (N, 3)) in e·Å: the reference dipole and each atom's trapezoid increment since R_ref."""
        ref = self._reference
        if ref is None or len(ref["numbers"]) != len(atoms) or (ref["numbers"] != atoms.numbers).any():
            self.set_reference(atoms)
            ref = self._reference
        cell = batch[K.CELL][0]
        delta = batch[K.POSITIONS] - ref["positions"]
        periodic = batch[K.PBC][0]
        if bool(periodic.any()):  # minimum image along periodic axes
            frac = delta @ torch.linalg.inv(cell)
            frac = torch.where(periodic, frac - torch.round(frac), frac)
            delta = frac @ cell
        return ref["dipole"], atom_dipole_increment(ref["born"], born, delta)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        periodic = bool(atoms.pbc.all())
        if periodic and abs(atoms.cell.volume) < 1e-9:
            raise DataError(f"FerroCalculator: structure {atoms.get_chemical_formula()} is periodic but has no cell "
                            "(volume 0); set atoms.cell")
        if ("stress" in properties or "polarization" in properties) and not periodic:
            raise DataError(f"FerroCalculator: '{[p for p in properties if p in ('stress', 'polarization')][0]}' "
                            f"needs a periodic cell, but {atoms.get_chemical_formula()} has pbc={atoms.pbc.tolist()}")
        batch = self._batch(atoms)
        out = predict({"energy": self.energy_model}, batch, compute_stress=periodic)
        u0 = out[K.ENERGY][0]
        forces = out[K.FORCES]
        results = {"energy_zero_field": float(u0.detach())}
        if K.FORCES_STD in out:  # a committee: its spread, for uncertainty-aware workflows
            results["energy_std"] = float(out[K.ENERGY_STD][0].detach())
            results["forces_std"] = out[K.FORCES_STD].detach().cpu().numpy()
        if self.born_model is not None:
            born = self._born(batch, results)
            reference, per_atom = self._atom_dipoles(atoms, batch, born)
            dipole = reference + sum_per_structure(per_atom, batch[K.BATCH], 1)[0]
            field = self._field
            atom_field = self.field_at_atoms(atoms)
            if atom_field is None:
                forces = forces + field_forces(born, field.expand(born.shape[0], 3))
                energy = u0.detach() + field_energy(dipole.to(torch.float64), field.to(torch.float64))
            else:  # W = Σ_i E_i·m_i + Ē·M_ref (= M·E for a uniform field)
                forces = forces + field_forces(born, atom_field)
                work = (atom_field * per_atom).sum() + (atom_field.mean(0) * reference).sum()
                energy = u0.detach() - work.to(torch.float64)
                results["field_per_atom"] = atom_field.detach().cpu().numpy()
            results["born_charges"] = born.detach().cpu().numpy()
            results["dipole"] = dipole.detach().cpu().numpy()
            if periodic:
                results["polarization"] = results["dipole"] / abs(atoms.cell.volume)
        else:
            energy = u0
        results["energy"] = results["free_energy"] = float(energy.detach())
        results["forces"] = forces.detach().cpu().numpy().astype(np.float64)
        if periodic:
            results["stress"] = full_3x3_to_voigt_6_stress(out[K.STRESS][0].detach().cpu().numpy())
        self.results.update(results)

    def set_atoms(self, atoms):
        """Called by ASE on ``atoms.calc = calc``: the structure the getters below compute for when given none
        (held weakly, so a calculator never keeps a structure alive)."""
        self._attached = weakref.ref(atoms)

    def _structure(self, atoms, getter: str):
        """``atoms``, else the structure this calculator is attached to, else the last one it computed."""
        if atoms is not None:
            return atoms
        attached = self._attached() if self._attached is not None else None
        if attached is not None and attached.calc is self:
            return attached
        if self.atoms is None:
            raise DataError(f"FerroCalculator.{getter}(): no structure to compute for; pass one "
                            f"(calc.{getter}(atoms)) or attach the calculator first (atoms.calc = calc)")
        return self.atoms

    def get_born_charges(self, atoms=None) -> np.ndarray:
        """Z* (N, 3, 3) in e, ``Z[a][b] = ∂F_b/∂E_a``, of ``atoms`` (default: the structure the calculator is on)."""
        return self.get_property("born_charges", self._structure(atoms, "get_born_charges"))

    def get_polarization(self, atoms=None) -> np.ndarray:
        """P = M/Ω (3,) in e/Å² relative to the reference structure, of ``atoms`` (default: as get_born_charges)."""
        return self.get_property("polarization", self._structure(atoms, "get_polarization"))

