"""Analytic models with exact answers, behind the same interface as the trained ones (for checking the engine).

- ``HarmonicModel``: every atom tethered to its site r0 by an isotropic spring k_κ (eV/Å²),
  U = Σ_κ ½ k_κ |u_κ|², u = r − r0 (positions unwrapped, as the MD engine keeps them). Exact: ⟨u_κ⟩ = Z*_κᵀE/k_κ and ⟨δu δuᵀ⟩ = k_BT/k_κ.
- ``ConstantBornModel``: Z*_κ a fixed tensor per atom, Σ_κ Z*_κ = 0 (acoustic sum rule).
Together: ε = ε∞ + Σ_κ Z*_κ Z*_κᵀ / (k_κ ε0 Ω), for both the fluctuation and the finite-field estimators.
- ``MeanFieldDoubleWellModel``: polar sites in quartic wells coupled through their mean (infinite-range φ⁴, the
  mean-field ferroelectric), with a known transition temperature; other atoms harmonic.
- ``LennardJonesModel``: a shifted-force 12-6 pair potential with forces and stress from ``models.autograd``, for
  checks that need a real equation of state (thermostats on an anharmonic solid, the NPT barostat).
"""

from __future__ import annotations

from typing import Sequence

import torch

from .. import keys as K
from ..keys import SHIFTS
from .autograd import energy_forces_stress


class HarmonicModel(torch.nn.Module):
    """U = Σ ½ k_κ |r_κ − r0_κ|² (eV) for replicas of one reference structure; zero stress."""

    kind = "energy"

    def __init__(self, reference_positions, stiffness: Sequence[float], atomic_numbers: Sequence[int],
                 r_max: float = 1.0):
        super().__init__()
        self.register_buffer("r0", torch.as_tensor(reference_positions, dtype=torch.float64))
        self.register_buffer("k", torch.as_tensor(stiffness, dtype=torch.float64))
        self.atomic_numbers = sorted(set(int(z) for z in atomic_numbers))
        self.r_max = float(r_max)

    @property
    def dtype(self):
        return self.r0.dtype

    def forward(self, batch, compute_forces=True, compute_stress=False, training=False):
        n_ref = self.r0.shape[0]
        local = torch.arange(batch[K.POSITIONS].shape[0], device=self.r0.device) - batch[K.PTR][batch[K.BATCH]]
        u = batch[K.POSITIONS] - self.r0[local % n_ref]
        k = self.k[local % n_ref]
        node = 0.5 * k * (u * u).sum(-1)
        b = batch[K.NUM_ATOMS].shape[0]
        energy = torch.zeros(b, dtype=torch.float64, device=u.device).index_add(0, batch[K.BATCH],
                                                                                 node.to(torch.float64))
        out = {K.ENERGY: energy, K.FORCES: -k[:, None] * u}
        if compute_stress:
            out[K.STRESS] = torch.zeros_like(batch[K.CELL])
        return out


class ConstantBornModel(torch.nn.Module):
    """Z*_κ (e) fixed per atom of the reference structure, repeated for every replica."""

    kind = "born"

    def __init__(self, born: torch.Tensor, atomic_numbers: Sequence[int], r_max: float = 1.0):
        super().__init__()
        born = torch.as_tensor(born, dtype=torch.float64)
        if born.abs().sum() > 0 and float(born.sum(0).abs().max()) > 1e-10:
            raise ValueError("ConstantBornModel: Z* must satisfy the acoustic sum rule Σ_κ Z*_κ = 0")
        self.register_buffer("born", born)
        self.atomic_numbers = sorted(set(int(z) for z in atomic_numbers))
        self.r_max = float(r_max)

    @property
    def dtype(self):
        return self.born.dtype

    def forward(self, batch):
        n_ref = self.born.shape[0]
        local = torch.arange(batch[K.POSITIONS].shape[0], device=self.born.device) - batch[K.PTR][batch[K.BATCH]]
        return {K.BORN_CHARGES: self.born[local % n_ref]}


class LennardJonesModel(torch.nn.Module):
    """U = ½ Σ_{i≠j} φ(r_ij), φ the 12-6 potential (ε eV, σ Å) shifted so φ and φ' vanish at ``r_max`` (Å)."""

    kind = "energy"

    def __init__(self, epsilon: float, sigma: float, atomic_numbers: Sequence[int], r_max: float):
        super().__init__()
        self.epsilon, self.sigma, self.r_max = float(epsilon), float(sigma), float(r_max)
        self.atomic_numbers = sorted(set(int(z) for z in atomic_numbers))
        s6 = (self.sigma / self.r_max) ** 6
        self._phi_c = 4 * self.epsilon * (s6 * s6 - s6)  # φ(r_c), eV
        self._dphi_c = 4 * self.epsilon * (-12 * s6 * s6 + 6 * s6) / self.r_max  # φ'(r_c), eV/Å
        self.register_buffer("_dtype_marker", torch.zeros((), dtype=torch.float64))

    @property
    def dtype(self):
        return self._dtype_marker.dtype

    def _phi(self, r):
        s6 = (self.sigma / r) ** 6
        return 4 * self.epsilon * (s6 * s6 - s6)

    def energy(self, batch):
        sender, receiver = batch[K.EDGE_INDEX]
        vec = batch[K.POSITIONS][receiver] - batch[K.POSITIONS][sender] + batch[SHIFTS]
        r = vec.norm(dim=-1)
        pair = self._phi(r) - self._phi_c - (r - self.r_max) * self._dphi_c
        pair = torch.where(r < self.r_max, pair, torch.zeros_like(pair))
        b = batch[K.NUM_ATOMS].shape[0]
        energy = torch.zeros(b, dtype=torch.float64, device=r.device).index_add(
            0, batch[K.BATCH][sender], 0.5 * pair.to(torch.float64))
        return {K.ENERGY: energy}

    def forward(self, batch, compute_forces=True, compute_stress=False, training=False):
        return energy_forces_stress(self.energy, batch, compute_forces, compute_stress, training)


class MeanFieldDoubleWellModel(torch.nn.Module):
    """U = Σ_{i polar} [½a|u_i|² + ¼b|u_i|⁴ + ¼c Σ_α u_iα⁴] − (J/2N_p)|Σ_i u_i|² + Σ_{others} ½k|u_j|²  (eV, Å),
    u = r − r0 per replica. For J > a the polar sites order at low T; c < 0 makes ⟨100⟩ the easy axes (a
    tetragonal ordered phase). Mean-field theory, exact as N_p → ∞: the disordered phase is stable while
    J⟨u_x²⟩₀/(k_B T) < 1, ⟨·⟩₀ over one site's weight exp(−V(u)/k_B T); ``critical_temperature`` solves it."""

    kind = "energy"

    def __init__(self, reference_positions, atomic_numbers: Sequence[int], polar_species: int, a: float, b: float,
                 c: float, coupling: float, stiffness: float, r_max: float = 1.0):
        super().__init__()
        z = torch.as_tensor(list(atomic_numbers))
        self.register_buffer("r0", torch.as_tensor(reference_positions, dtype=torch.float64))
        self.register_buffer("polar", z == int(polar_species))
        self.a, self.b, self.c, self.coupling, self.stiffness = float(a), float(b), float(c), float(coupling), \
            float(stiffness)
        self.atomic_numbers = sorted(set(int(x) for x in atomic_numbers))
        self.r_max = float(r_max)

    @property
    def dtype(self):
        return self.r0.dtype

    def site_energy(self, u: torch.Tensor) -> torch.Tensor:
        """V(u) of one polar site (eV), u (..., 3) in Å."""
        u2 = (u * u).sum(-1)
        return 0.5 * self.a * u2 + 0.25 * self.b * u2 * u2 + 0.25 * self.c * (u ** 4).sum(-1)

    def energy(self, batch):
        n_ref = self.r0.shape[0]
        local = torch.arange(batch[K.POSITIONS].shape[0], device=self.r0.device) - batch[K.PTR][batch[K.BATCH]]
        u = batch[K.POSITIONS] - self.r0[local % n_ref]
        polar = self.polar[local % n_ref]
        node = torch.where(polar, self.site_energy(u), 0.5 * self.stiffness * (u * u).sum(-1))
        b = batch[K.NUM_ATOMS].shape[0]
        total = torch.zeros((b, 3), dtype=u.dtype, device=u.device).index_add(0, batch[K.BATCH], u * polar[:, None])
        count = torch.zeros(b, dtype=u.dtype, device=u.device).index_add(0, batch[K.BATCH], polar.to(u.dtype))
        energy = torch.zeros(b, dtype=torch.float64, device=u.device).index_add(0, batch[K.BATCH],
                                                                                 node.to(torch.float64))
        return {K.ENERGY: energy - (0.5 * self.coupling * (total * total).sum(-1) / count).to(torch.float64)}

    def forward(self, batch, compute_forces=True, compute_stress=False, training=False):
        out = energy_forces_stress(self.energy, {**batch, SHIFTS: torch.zeros_like(batch[K.UNIT_SHIFTS])},
                                   compute_forces, False, training)
        if compute_stress:
            out[K.STRESS] = torch.zeros_like(batch[K.CELL])
        return out

    def critical_temperature(self, points: int = 81, extent: float = 1.0) -> float:
        """T_c (K) of the mean-field transition: J⟨u_x²⟩₀(T_c) = k_B T_c (3D grid quadrature, bisection)."""
        import numpy as np

        from ..units import KB_EV_PER_K

        grid = np.linspace(-extent, extent, points)
        ux, uy, uz = np.meshgrid(grid, grid, grid, indexing="ij")
        u = torch.as_tensor(np.stack([ux, uy, uz], axis=-1))
        v = self.site_energy(u).numpy()

        def excess(t):
            kt = KB_EV_PER_K * t
            w = np.exp(-(v - v.min()) / kt)
            return self.coupling * (w * ux ** 2).sum() / w.sum() - kt

        lo, hi = 1.0, 1e5
        for _ in range(100):
            mid = np.sqrt(lo * hi)
            lo, hi = (mid, hi) if excess(mid) > 0 else (lo, mid)
        return float(np.sqrt(lo * hi))
