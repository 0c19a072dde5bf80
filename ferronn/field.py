"""Uniform electric field coupling through Born charges: the one place where Z* meets a field.

Conventions (docs/conventions.md): Z*_κ[a][b] = ∂F_κb/∂E_a = ∂M_a/∂u_κb in e, E in V/Å, M in e·Å.
    forces      F_κ = F0_κ + Z*_κᵀ E                  (eV/Å, no unit factors)
    enthalpy    H = K + U0 − M·E                      (eV)
    dipole      ΔM = Σ_κ ½(Z*_κ(t) + Z*_κ(t+dt)) Δr_κ  (trapezoid, the Z* used in the forces)
Both the ASE calculator and the MD engine call these functions; nothing else adds field forces.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch

from .errors import ConfigError


def field_forces(born: torch.Tensor, field_per_atom: torch.Tensor) -> torch.Tensor:
    """Field force Z*ᵀE (N, 3) in eV/Å from Z* (N, 3, 3) in e and the field at each atom (N, 3) in V/Å."""
    return torch.einsum("na,nab->nb", field_per_atom, born)


def dipole_increment(born_old: torch.Tensor, born_new: torch.Tensor, displacement: torch.Tensor,
                     batch: torch.Tensor, num_structures: int) -> torch.Tensor:
    """Trapezoid-rule change of each structure's cell dipole (B, 3) in e·Å over one step.

    ``displacement`` (N, 3) is the step the integrator made (never a difference of wrapped positions).
    """
    per_atom = torch.einsum("nab,nb->na", 0.5 * (born_old + born_new), displacement)
    out = torch.zeros((num_structures, 3), dtype=per_atom.dtype, device=per_atom.device)
    return out.index_add(0, batch, per_atom)


def field_energy(dipole: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """Field term −M·E (B,) in eV of the electric enthalpy, from M (B, 3) e·Å and E (B, 3) V/Å."""
    return -(dipole * field).sum(-1)


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

    ``kind``: 'constant' → E0; 'sine' → E0·sin(2πt/period + phase); 'triangle' → E0·tri(t/period) with
    tri rising 0 → 1 → 0 → −1 → 0 over one period (hysteresis loops); 'ramp' → E0·t/period (a linear ramp
    that reaches E0 at t = period and goes on: finds switching fields); 'callable' → fn(t) → (3,) or (B, 3).
    """

    KINDS = ("constant", "sine", "triangle", "ramp", "callable")

    def __init__(self, amplitude: Union[Sequence[float], torch.Tensor] = (0.0, 0.0, 0.0), kind: str = "constant",
                 period_fs: Optional[float] = None, phase: float = 0.0, fn: Optional[FieldSchedule] = None):
        if kind not in self.KINDS:
            raise ConfigError(f"field.kind: expected one of {self.KINDS}, got '{kind}'")
        if kind in ("sine", "triangle", "ramp") and not (period_fs and period_fs > 0):
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
        frac = torch.remainder(x + self.phase / (2 * torch.pi) + 0.25, 1.0)  # tri(0)=0 rising
        return amp * (1.0 - 4.0 * (frac - 0.5).abs())
