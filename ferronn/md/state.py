"""The MD state: every replica's atoms, momenta, cell, targets, dipole and thermostat variables, on one device.

Integrators (``ferronn.md.integrators``) are pure functions ``state → state``; the state is a dataclass of tensors
so that a restart file is just its tensors (``torch.save`` of plain tensors, loaded with weights_only=True).
Units: Å, amu, eV, fs, K, e, V/Å; momenta in amu·Å/fs; stress eV/Å³ (ASE sign); dipole e·Å.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

import torch

from .. import keys as K
from ..units import AMU_A2_PER_FS2_IN_EV, KB_EV_PER_K


@dataclasses.dataclass
class MDState:
    """B replicas with N atoms in total, laid out like a model batch (``batch``/``ptr``/``num_atoms``)."""

    positions: torch.Tensor  # (N, 3) Å, unwrapped (the dipole is integrated from the integrator's own steps)
    momenta: torch.Tensor  # (N, 3) amu·Å/fs
    masses: torch.Tensor  # (N,) amu
    cell: torch.Tensor  # (B, 3, 3) Å, rows are lattice vectors
    pbc: torch.Tensor  # (B, 3) bool
    species: torch.Tensor  # (N,) model species index
    atomic_numbers: torch.Tensor  # (N,)
    batch: torch.Tensor  # (N,) replica of each atom
    ptr: torch.Tensor  # (B+1,)
    num_atoms: torch.Tensor  # (B,)
    temperature_target: torch.Tensor  # (B,) K (thermostats; ignored in NVE)
    pressure_target: torch.Tensor  # (B,) eV/Å³ (NPT only)
    field: torch.Tensor  # (B, 3) V/Å, the uniform field of the last force evaluation (the schedule's output)
    dipole: torch.Tensor  # (B, 3) e·Å, integrated along the path from Z*·dr
    time: torch.Tensor  # 0-d, fs
    step: torch.Tensor  # 0-d int64
    # Last force evaluation (kept so integrators reuse the forces and the trapezoid reuses Z*(t)).
    energy: Optional[torch.Tensor] = None  # (B,) U0 in eV, float64
    forces: Optional[torch.Tensor] = None  # (N, 3) total F0 + Z*ᵀE, eV/Å
    stress: Optional[torch.Tensor] = None  # (B, 3, 3) zero-field stress, eV/Å³
    born: Optional[torch.Tensor] = None  # (N, 3, 3) Z* used in the forces, e
    # Thermostat/barostat variables.
    chain_positions: Optional[torch.Tensor] = None  # (B, M) Nosé–Hoover chain ξ
    chain_momenta: Optional[torch.Tensor] = None  # (B, M) p_ξ, eV·fs
    rng_state: Optional[torch.Tensor] = None  # generator state (uint8) for Langevin/barostat noise
    # Non-uniform fields only (None otherwise, so a uniform run is unchanged): the field at each atom in the last
    # force evaluation and the per-atom dipoles m_i = Σ steps ½(Z*_i(t)+Z*_i(t+dt))·Δr_i (Σ_i m_i = dipole).
    atom_field: Optional[torch.Tensor] = None  # (N, 3) V/Å
    atom_dipoles: Optional[torch.Tensor] = None  # (N, 3) e·Å

    @property
    def num_replicas(self) -> int:
        return int(self.cell.shape[0])

    @property
    def velocities(self) -> torch.Tensor:
        return self.momenta / self.masses[:, None]

    def batch_dict(self) -> Dict[str, torch.Tensor]:
        """The model batch for the current positions (edges added by the force provider)."""
        return {K.POSITIONS: self.positions, K.CELL: self.cell, K.PBC: self.pbc, K.SPECIES: self.species,
                K.ATOMIC_NUMBERS: self.atomic_numbers, K.BATCH: self.batch, K.PTR: self.ptr,
                K.NUM_ATOMS: self.num_atoms}

    def replace(self, **changes) -> "MDState":
        return dataclasses.replace(self, **changes)

    def tensors(self) -> Dict[str, torch.Tensor]:
        """Every tensor of the state (for restart files); None fields are left out."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_tensors(cls, tensors: Dict[str, torch.Tensor], device=None) -> "MDState":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v.to(device) if device is not None else v for k, v in tensors.items() if k in names})


def kinetic_energy(state: MDState) -> torch.Tensor:
    """K (B,) in eV per replica."""
    per_atom = (state.momenta ** 2).sum(-1) / (2 * state.masses) * AMU_A2_PER_FS2_IN_EV
    return torch.zeros(state.num_replicas, dtype=per_atom.dtype, device=per_atom.device).index_add(
        0, state.batch, per_atom)


def without_centre_of_mass_motion(momenta: torch.Tensor, batch: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
    """``momenta`` (N, 3) with each replica's total momentum removed (its centre of mass at rest)."""
    total = torch.zeros((num_atoms.shape[0], 3), dtype=momenta.dtype, device=momenta.device).index_add(0, batch, momenta)
    return momenta - (total / num_atoms[:, None].to(momenta.dtype))[batch]


def degrees_of_freedom(state: MDState, momentum_conserved: bool) -> torch.Tensor:
    """N_dof (B,): 3N − 3 when total momentum is conserved (NVE, Nosé–Hoover), else 3N (Langevin)."""
    dof = 3 * state.num_atoms.to(state.momenta.dtype)
    return dof - 3 if momentum_conserved else dof


def temperature(state: MDState, momentum_conserved: bool) -> torch.Tensor:
    """Instantaneous T (B,) in K from the kinetic energy."""
    return 2 * kinetic_energy(state) / (degrees_of_freedom(state, momentum_conserved) * KB_EV_PER_K)


def volumes(state: MDState) -> torch.Tensor:
    """Ω (B,) in Å³."""
    return torch.linalg.det(state.cell).abs()


def pressure_tensor(state: MDState) -> torch.Tensor:
    """Pressure tensor (B, 3, 3) in eV/Å³: −σ + (1/Ω) Σ m v⊗v (σ the zero-field model stress)."""
    mv2 = torch.einsum("ni,nj->nij", state.momenta, state.momenta / state.masses[:, None]) * AMU_A2_PER_FS2_IN_EV
    kinetic = torch.zeros((state.num_replicas, 3, 3), dtype=mv2.dtype, device=mv2.device).index_add(
        0, state.batch, mv2)
    return -state.stress + kinetic / volumes(state)[:, None, None]


def pressure(state: MDState) -> torch.Tensor:
    """Scalar pressure p = tr(P)/3 (B,) in eV/Å³ of the pressure tensor above."""
    return torch.diagonal(pressure_tensor(state), dim1=-2, dim2=-1).mean(-1)
