"""Integrators as pure functions ``(state, forces_fn, dt, ...) → state`` over ``MDState`` (units: fs, K, eV/Å³).

- ``velocity_verlet``: NVE.
- ``langevin_baoab``: NVT, Langevin in the BAOAB splitting (Leimkuhler–Matthews), friction γ per fs.
- ``damped``: athermal damped dynamics (0 K): BAOAB with the O stage's friction and no noise, p ← e^{−γdt} p;
  under a slow field it follows the field-driven minimum (quasi-static switching, the MACE-Field protocol).
- ``nose_hoover_chain``: NVT, a Nosé–Hoover chain (Martyna–Klein–Tuckerman) around velocity Verlet;
  ``nose_hoover_energy`` is its conserved extra term.
- ``npt_langevin_scr``: NPT with a fully flexible cell: anisotropic stochastic cell rescaling (Bernetti & Bussi,
  JCP 153, 114107, 2020) inside a BAOAB Langevin step. Chosen over MTK because it is first order (no cell mass
  to tune, no cell oscillations), samples the isothermal–isobaric ensemble, needs one force call per step, and
  lets each lattice vector relax on its own, which ferroelectric phases (T/O/R strains) need. The strain is kept
  symmetric, so the cell does not rotate.

Every integrator moves positions, evaluates forces once, then advances the cell dipole with the trapezoid rule
on the integrator's own displacement (affine cell deformation excluded), in ``_move`` (per atom as well when the
state carries ``atom_dipoles``, for a non-uniform field).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ..field import atom_dipole_increment, sum_per_structure
from ..units import AMU_A2_PER_FS2_IN_EV, KB_EV_PER_K
from .state import MDState, degrees_of_freedom, kinetic_energy, pressure_tensor, volumes

ForcesFn = Callable[[MDState], MDState]
C = AMU_A2_PER_FS2_IN_EV  # 1 amu·Å²/fs² in eV: dp (amu·Å/fs) = F (eV/Å) · dt (fs) / C


def _kick(state: MDState, dt: float) -> torch.Tensor:
    return state.momenta + state.forces * (dt / C)


def _drift(state: MDState, momenta: torch.Tensor, dt: float) -> torch.Tensor:
    return state.positions + momenta / state.masses[:, None] * dt


def _move(state: MDState, positions: torch.Tensor, momenta: torch.Tensor, forces_fn: ForcesFn, dt: float,
          cell: Optional[torch.Tensor] = None) -> MDState:
    """Positions (and cell) of the next step → forces there and the dipole advanced by ½(Z*(t)+Z*(t+dt))·Δr."""
    cell = state.cell if cell is None else cell
    if cell is state.cell:
        displacement = positions - state.positions
    else:  # Δr = h(t+dt)[s(t+dt) − s(t)]: the affine part of the deformation is not a charge displacement
        frac_old = torch.einsum("ni,nij->nj", state.positions, torch.linalg.inv(state.cell)[state.batch])
        frac_new = torch.einsum("ni,nij->nj", positions, torch.linalg.inv(cell)[state.batch])
        displacement = torch.einsum("ni,nij->nj", frac_new - frac_old, cell[state.batch])
    new = forces_fn(state.replace(positions=positions, momenta=momenta, cell=cell, time=state.time + dt,
                                  step=state.step + 1))
    if new.born is not None:
        per_atom = atom_dipole_increment(state.born, new.born, displacement)
        dipole = state.dipole + sum_per_structure(per_atom, state.batch, state.num_replicas).to(state.dipole.dtype)
        new = new.replace(dipole=dipole)
        if state.atom_dipoles is not None:  # non-uniform field: W = Σ_i E_i·m_i needs each atom's dipole
            new = new.replace(atom_dipoles=state.atom_dipoles + per_atom.to(state.atom_dipoles.dtype))
    return new


def velocity_verlet(state: MDState, forces_fn: ForcesFn, dt: float) -> MDState:
    """One NVE step of ``dt`` fs (state must carry forces at its positions)."""
    half = _kick(state, dt / 2)
    new = _move(state, _drift(state, half, dt), half, forces_fn, dt)
    return new.replace(momenta=_kick(new.replace(momenta=half), dt / 2))


def _ornstein_uhlenbeck(state: MDState, momenta: torch.Tensor, dt: float, friction: float,
                        generator: torch.Generator) -> torch.Tensor:
    """Exact O step: p ← c p + sqrt((1 − c²) m k_B T) ξ with c = exp(−γ dt), T per replica."""
    c = math.exp(-friction * dt)
    kT = (KB_EV_PER_K * state.temperature_target)[state.batch][:, None]
    sigma = torch.sqrt((1 - c * c) * state.masses[:, None] * kT / C)
    noise = torch.randn(momenta.shape, generator=generator, dtype=momenta.dtype, device=momenta.device)
    return c * momenta + sigma * noise


def langevin_baoab(state: MDState, forces_fn: ForcesFn, dt: float, friction: float,
                   generator: torch.Generator) -> MDState:
    """One NVT step, BAOAB; ``friction`` γ in 1/fs (e.g. 0.01 = 1/(100 fs))."""
    p = _kick(state, dt / 2)
    half_state = state.replace(positions=_drift(state, p, dt / 2))
    p = _ornstein_uhlenbeck(state, p, dt, friction, generator)
    positions = _drift(half_state, p, dt / 2)
    new = _move(state, positions, p, forces_fn, dt)
    return new.replace(momenta=_kick(new.replace(momenta=p), dt / 2))


def damped(state: MDState, forces_fn: ForcesFn, dt: float, friction: float) -> MDState:
    """One step of athermal damped dynamics (BAOAB without noise), friction γ in 1/fs; no random numbers."""
    p = _kick(state, dt / 2)
    half_state = state.replace(positions=_drift(state, p, dt / 2))
    p = p * math.exp(-friction * dt)
    positions = _drift(half_state, p, dt / 2)
    new = _move(state, positions, p, forces_fn, dt)
    return new.replace(momenta=_kick(new.replace(momenta=p), dt / 2))


def _chain_masses(state: MDState, tau: float, length: int):
    kT = KB_EV_PER_K * state.temperature_target  # (B,)
    q = (kT * tau * tau)[:, None].repeat(1, length)  # eV·fs²
    q[:, 0] = q[:, 0] * degrees_of_freedom(state, True)
    return q, kT


def _chain_half_step(state: MDState, dt: float, tau: float) -> MDState:
    """Nosé–Hoover chain propagation over dt/2 (one Trotter stage, no Suzuki–Yoshida)."""
    p_xi, xi = state.chain_momenta.clone(), state.chain_positions.clone()
    length = p_xi.shape[1]
    q, kT = _chain_masses(state, tau, length)
    dof = degrees_of_freedom(state, True)
    h = dt / 2
    kin2 = 2 * kinetic_energy(state)

    def force(j, kin2):
        return (kin2 - dof * kT) if j == 0 else (p_xi[:, j - 1] ** 2 / q[:, j - 1] - kT)

    def update(j, kin2):
        if j + 1 < length:
            p_xi[:, j] = p_xi[:, j] * torch.exp(-h / 4 * p_xi[:, j + 1] / q[:, j + 1])
        p_xi[:, j] = p_xi[:, j] + h / 2 * force(j, kin2)
        if j + 1 < length:
            p_xi[:, j] = p_xi[:, j] * torch.exp(-h / 4 * p_xi[:, j + 1] / q[:, j + 1])

    for j in reversed(range(length)):
        update(j, kin2)
    scale = torch.exp(-h * p_xi[:, 0] / q[:, 0])
    momenta = state.momenta * scale[state.batch][:, None]
    kin2 = kin2 * scale ** 2
    xi = xi + h * p_xi / q
    for j in range(length):
        update(j, kin2)
    return state.replace(momenta=momenta, chain_momenta=p_xi, chain_positions=xi)


def nose_hoover_chain(state: MDState, forces_fn: ForcesFn, dt: float, tau: float) -> MDState:
    """One NVT step with a Nosé–Hoover chain of time constant ``tau`` fs."""
    state = _chain_half_step(state, dt, tau)
    state = velocity_verlet(state, forces_fn, dt)
    return _chain_half_step(state, dt, tau)


def nose_hoover_energy(state: MDState, tau: float) -> torch.Tensor:
    """Thermostat energy (B,) in eV: Σ p_ξ²/2Q + N_dof k_B T ξ₁ + k_B T Σ_{j>1} ξ_j (add to H to check drift)."""
    q, kT = _chain_masses(state, tau, state.chain_momenta.shape[1])
    dof = degrees_of_freedom(state, True)
    xi = state.chain_positions
    return (state.chain_momenta ** 2 / (2 * q)).sum(-1) + dof * kT * xi[:, 0] + kT * xi[:, 1:].sum(-1)


def _expm_small(x: torch.Tensor, terms: int = 8) -> torch.Tensor:
    """exp(x) for small (B, 3, 3) x by its Taylor series: a barostat step has ‖x‖ ≲ 1e-3, where 8 terms are exact
    to round-off; torch.linalg.matrix_exp picks its degree on the host (a round trip every step)."""
    out = term = torch.eye(3, dtype=x.dtype, device=x.device).expand_as(x)
    for k in range(1, terms):
        term = term @ x / k
        out = out + term
    return out


def npt_langevin_scr(state: MDState, forces_fn: ForcesFn, dt: float, friction: float, tau_p: float,
                     compressibility: float, generator: torch.Generator) -> MDState:
    """One NPT step: BAOAB with anisotropic stochastic cell rescaling in the O stage.

    ``tau_p`` fs, ``compressibility`` β_T in Å³/eV (isothermal; e.g. 1/(150 GPa)); the target is the scalar
    ``state.pressure_target`` (eV/Å³), hydrostatic. The log-strain increment is
    dε = −(β_T/τ_p)(P₀ − P_int − k_BT/Ω) dt + sqrt(2 k_BT β_T dt/(Ω τ_p)) η, η symmetric Gaussian; then
    h ← h·exp(dε), r ← r·exp(dε), p ← p·exp(−dε).
    """
    p = _kick(state, dt / 2)
    half_state = state.replace(positions=_drift(state, p, dt / 2))
    p = _ornstein_uhlenbeck(state, p, dt, friction, generator)

    omega = volumes(state)
    kT = KB_EV_PER_K * state.temperature_target
    eye = torch.eye(3, dtype=state.cell.dtype, device=state.cell.device)
    p_int = pressure_tensor(state.replace(momenta=p))
    p_int = 0.5 * (p_int + p_int.transpose(-1, -2))
    drive = (state.pressure_target + kT / omega)[:, None, None] * eye - p_int
    gauss = torch.randn(state.cell.shape, generator=generator, dtype=state.cell.dtype, device=state.cell.device)
    eta = (gauss + gauss.transpose(-1, -2)) / math.sqrt(2.0)
    d_eps = -(compressibility / tau_p) * drive * dt + torch.sqrt(
        2 * kT * compressibility * dt / (omega * tau_p))[:, None, None] * eta
    mu, mu_inv = _expm_small(d_eps), _expm_small(-d_eps)
    cell = state.cell @ mu
    positions = torch.einsum("ni,nij->nj", half_state.positions, mu[state.batch])
    p = torch.einsum("ni,nij->nj", p, mu_inv[state.batch])
    positions = positions + p / state.masses[:, None] * (dt / 2)
    new = _move(state, positions, p, forces_fn, dt, cell=cell)
    return new.replace(momenta=_kick(new.replace(momenta=p), dt / 2))
