"""Electric field coupling through Born charges: the one place where Z* meets a field.

Conventions (docs/conventions.md): Z*_κ[a][b] = ∂F_κb/∂E_a = ∂M_a/∂u_κb in e, E in V/Å, M in e·Å.
    forces      F_κ = F0_κ + Z*_κᵀ E_κ                 (eV/Å, no unit factors; E_κ the field at atom κ)
    dipole      dm_κ = ½(Z*_κ(t) + Z*_κ(t+dt)) Δr_κ    (trapezoid, the Z* used in the forces), ΔM = Σ_κ dm_κ
    enthalpy    H = K + U0 − W,  W = Σ_κ E_κ·m_κ       (eV; W = M·E for a uniform field)
With a static field dH/dt = 0 exactly; with E_κ(t), dH/dt = −Σ_κ m_κ·dE_κ/dt.
Both the ASE calculator and the MD engine call these functions; nothing else adds field forces. ``FieldSchedule``
owns the field an MD run applies (uniform per replica, optionally non-uniform per atom: ``ferronn.local_field``).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch

from .errors import ConfigError


def field_forces(born: torch.Tensor, field_per_atom: torch.Tensor) -> torch.Tensor:
    """Field force Z*ᵀE (N, 3) in eV/Å from Z* (N, 3, 3) in e and the field at each atom (N, 3) in V/Å."""
    return torch.einsum("na,nab->nb", field_per_atom, born)


def atom_dipole_increment(born_old: torch.Tensor, born_new: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Trapezoid-rule dipole increments dm_i = ½(Z*_i(old) + Z*_i(new))·Δr_i (N, 3) in e·Å over one step.

    ``displacement`` (N, 3) is the step the integrator made (never a difference of wrapped positions).
    """
    return torch.einsum("nab,nb->na", 0.5 * (born_old + born_new), displacement)


def sum_per_structure(per_atom: torch.Tensor, batch: torch.Tensor, num_structures: int) -> torch.Tensor:
    """Σ over each structure's atoms (B, ...) of a per-atom quantity (N, ...)."""
    out = torch.zeros((num_structures, *per_atom.shape[1:]), dtype=per_atom.dtype, device=per_atom.device)
    return out.index_add(0, batch, per_atom)


def dipole_increment(born_old: torch.Tensor, born_new: torch.Tensor, displacement: torch.Tensor,
                     batch: torch.Tensor, num_structures: int) -> torch.Tensor:
    """Trapezoid-rule change of each structure's cell dipole (B, 3) in e·Å over one step: Σ_i dm_i."""
    return sum_per_structure(atom_dipole_increment(born_old, born_new, displacement), batch, num_structures)


def field_energy(dipole: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """Field term −M·E (B,) in eV of the electric enthalpy, from M (B, 3) e·Å and E (B, 3) V/Å."""
    return -(dipole * field).sum(-1)


def local_field_energy(atom_dipoles: torch.Tensor, atom_field: torch.Tensor, batch: torch.Tensor,
                       num_structures: int) -> torch.Tensor:
    """Field term −W = −Σ_i E_i·m_i (B,) in eV of a non-uniform field, from m_i (N, 3) e·Å and E_i (N, 3) V/Å;
    equal to −M·E when every E_i is the same."""
    return -sum_per_structure((atom_dipoles * atom_field).sum(-1), batch, num_structures)


def as_field_vector(field, loc: str = "field", dtype=torch.float64, device=None) -> torch.Tensor:
    """A field given by the user → tensor (3,) in V/Å, or a clear error naming ``loc`` and the shape received."""
    try:
        value = torch.as_tensor(field, dtype=dtype, device=device)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{loc}: expected a field (Ex, Ey, Ez) in V/Å, got {field!r} ({exc})") from None
    if value.shape != (3,):
        raise ConfigError(f"{loc}: expected a field (Ex, Ey, Ez) in V/Å of shape (3,), got shape "
                          f"{tuple(value.shape)}")
    if not bool(torch.isfinite(value).all()):
        raise ConfigError(f"{loc}: the field must be finite, got {value.tolist()}")
    return value


FieldSchedule = Callable[[torch.Tensor], torch.Tensor]


class TimeDependentField:
    """E(t) in V/Å for t in fs: constant, sine, triangle, or a user callable; evaluated on the device.

    ``kind``: 'constant' → E0; 'sine' → E0·sin(2πt/period + phase); 'cosine' → E0·cos(2πt/period + phase);
    'triangle' → E0·tri(t/period) with
    tri rising 0 → 1 → 0 → −1 → 0 over one period (hysteresis loops); 'ramp' → E0·t/period (a linear ramp
    that reaches E0 at t = period and goes on: finds switching fields); 'callable' → fn(t) → (3,) or (B, 3).
    """

    KINDS = ("constant", "sine", "cosine", "triangle", "ramp", "callable")

    def __init__(self, amplitude: Union[Sequence[float], torch.Tensor] = (0.0, 0.0, 0.0), kind: str = "constant",
                 period_fs: Optional[float] = None, phase: float = 0.0, fn: Optional[FieldSchedule] = None):
        if kind not in self.KINDS:
            raise ConfigError(f"field.kind: expected one of {self.KINDS}, got '{kind}'")
        if kind in ("sine", "cosine", "triangle", "ramp") and not (period_fs and period_fs > 0):
            raise ConfigError(f"field.period_fs: a {kind} field needs a positive period in fs, got {period_fs}")
        if kind == "callable" and fn is None:
            raise ConfigError("field: kind 'callable' needs fn(t_fs) -> field in V/Å")
        amp = torch.as_tensor(amplitude, dtype=torch.float64)
        if amp.shape[-1:] != (3,):
            raise ConfigError(f"field.amplitude: expected (Ex, Ey, Ez) or one per replica (B, 3) in V/Å, got shape "
                              f"{tuple(amp.shape)}")
        self.amplitude, self.kind, self.period_fs, self.phase, self.fn = amp, kind, period_fs, phase, fn

    def __call__(self, time_fs: torch.Tensor) -> torch.Tensor:
        """Field (…, 3) in V/Å at ``time_fs`` (a 0-d tensor, so no host round trip on the device)."""
        amp = self.amplitude.to(device=time_fs.device, dtype=time_fs.dtype)
        if self.kind == "constant":
            return amp
        if self.kind == "callable":
            return torch.as_tensor(self.fn(time_fs), dtype=time_fs.dtype, device=time_fs.device)
        x = time_fs / self.period_fs
        if self.kind == "ramp":
            return amp * x
        if self.kind == "sine":
            return amp * torch.sin(2 * torch.pi * x + self.phase)
        if self.kind == "cosine":
            return amp * torch.cos(2 * torch.pi * x + self.phase)
        frac = torch.remainder(x + self.phase / (2 * torch.pi) + 0.25, 1.0)  # tri(0)=0 rising
        return amp * (1.0 - 4.0 * (frac - 0.5).abs())


#: A field of the positions and the time: (positions (N, 3) Å, time 0-d fs) → field at each atom (N, 3) V/Å.
LocalFieldFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class FieldSchedule:
    """The one owner of the field an MD run applies: E_b(t) (B, 3) per replica and, when non-uniform, at each atom

        E_i(t) = E_b(i)(t) + s(t)·A_i + g(r, t)        (N, 3) V/Å

    with A_i (N, 3) V/Å static per-atom amplitudes (regions, arrays: ``ferronn.local_field``) following the uniform
    part's time shape s(t) (1 for 'constant' and 'callable'; sin, triangle or ramp of unit amplitude otherwise) and
    g a ``LocalFieldFn``. Called with a time, it is the uniform schedule (a ``FieldFn``, as before)."""

    def __init__(self, uniform: TimeDependentField, local_amplitude: Optional[torch.Tensor] = None,
                 local_fn: Optional[LocalFieldFn] = None):
        self.uniform, self.local_amplitude, self.local_fn = uniform, local_amplitude, local_fn
        self._shape = None
        if local_amplitude is not None and uniform.kind not in ("constant", "callable"):
            self._shape = TimeDependentField((1.0, 1.0, 1.0), uniform.kind, uniform.period_fs, uniform.phase)

    @property
    def amplitude(self) -> torch.Tensor:
        """The replicas' uniform field amplitudes (B, 3) or (3,) in V/Å."""
        return self.uniform.amplitude

    @property
    def nonuniform(self) -> bool:
        return self.local_amplitude is not None or self.local_fn is not None

    def __call__(self, time_fs: torch.Tensor) -> torch.Tensor:
        return self.uniform(time_fs)

    def atom_field(self, field: torch.Tensor, positions: torch.Tensor, batch: torch.Tensor,
                   time_fs: torch.Tensor) -> torch.Tensor:
        """E_i (N, 3) V/Å from the replicas' uniform field ``field`` (B, 3) now; on the device, no host read."""
        out = field.to(positions.dtype)[batch]
        if self.local_amplitude is not None:
            amp = self.local_amplitude.to(device=positions.device, dtype=positions.dtype)
            out = out + (amp if self._shape is None else amp * self._shape(time_fs.to(positions.dtype))[0])
        if self.local_fn is not None:
            out = out + torch.as_tensor(self.local_fn(positions.detach(), time_fs), dtype=positions.dtype,
                                        device=positions.device)
        return out
