"""How far a predicted Z* is from a gradient, i.e. how path-dependent the integrated dipole M = ∫ Z*·dr is.

The ensemble formulas for ε assume M is a state function: ∂Z*_κ[a][b]/∂r_λc = ∂Z*_λ[a][c]/∂r_κb. A network
that predicts Z* directly satisfies this only approximately. Two measures (docs/conventions.md):

- ``loop_integral``: ∮ Z*·dr (e·Å) around a small closed loop in configuration space (every atom moving on an
  ellipse of radius ``amplitude`` Å), by the same trapezoid rule the MD uses. Zero for a gradient, up to the
  O(1/points²) quadrature error; otherwise ≈ curl × enclosed area, so it is reported next to the largest
  excursion of M along the loop.
- ``path_discrepancy``: M(t) − [M(0) + Σ_κ ½(Z*_κ(0) + Z*_κ(t))·(r_κ(t) − r_κ(0))] for an MD run: the dipole
  integrated along the trajectory minus the one-step trapezoid between its ends; it grows with t (M diffuses)
  when Z* is not integrable.
"""

from __future__ import annotations

import itertools
import math
from typing import Dict

import torch

from .. import keys as K
from ..data.graph import SpeciesTable, atoms_to_batch
from ..data.verlet import atoms_batch


def loop_integral(born_model, atoms, amplitude: float = 0.05, points: int = 64, loops: int = 8,
                  seed: int = 0) -> Dict[str, float]:
    """∮ Z*·dr over ``loops`` random loops of radius ``amplitude`` Å around ``atoms`` (an ASE structure).

    Returns the median and maximum |∮| (e·Å), the median largest |M(θ) − M(0)| along a loop (e·Å), and their
    ratio, the non-integrable fraction of the dipole change (0 for a gradient).
    """
    reference = next(itertools.chain(born_model.parameters(), born_model.buffers()))
    dtype, device = reference.dtype, reference.device
    species = SpeciesTable(born_model.atomic_numbers)
    gen = torch.Generator().manual_seed(seed)
    base = atoms_to_batch([atoms], species, dtype, device, loc="loop integral: ")
    n = base[K.POSITIONS].shape[0]
    theta = torch.linspace(0.0, 2 * math.pi, points + 1, dtype=torch.float64)
    closures, excursions = [], []
    for _ in range(loops):
        a, b = (torch.randn((n, 3), generator=gen, dtype=torch.float64) for _ in range(2))
        a, b = a / a.norm(dim=-1).max(), b / b.norm(dim=-1).max()
        # u(θ) = δ[(cos θ − 1) a + sin θ b]: starts and ends at the structure itself.
        u = amplitude * ((torch.cos(theta) - 1)[:, None, None] * a + torch.sin(theta)[:, None, None] * b)
        z = _born_along(born_model, atoms, u.to(device=device, dtype=dtype), species, dtype, device)
        z, u = z.to(torch.float64), u.to(device=device)
        steps = torch.einsum("knab,knb->ka", 0.5 * (z[1:] + z[:-1]), u[1:] - u[:-1])
        m = torch.cat([torch.zeros((1, 3), dtype=torch.float64, device=device), steps.cumsum(0)])
        closures.append(float(m[-1].norm()))
        excursions.append(float((m - m[0]).norm(dim=-1).max()))
    closures_t, excursions_t = torch.tensor(closures), torch.tensor(excursions)
    return {"amplitude_A": amplitude, "points": points, "loops": loops,
            "loop_integral_median_eA": float(closures_t.median()), "loop_integral_max_eA": float(closures_t.max()),
            "dipole_excursion_median_eA": float(excursions_t.median()),
            "non_integrable_fraction": float((closures_t / excursions_t).median())}


def _born_along(born_model, atoms, displacements, species, dtype, device) -> torch.Tensor:
    """Z* (K, N, 3, 3) at atoms.positions + displacements[k], all K structures in one model call."""
    batch = atoms_batch([atoms] * displacements.shape[0], species, born_model.r_max, dtype, device, displacements,
                        loc="loop integral: ")
    with torch.no_grad():
        z = born_model(batch)[K.BORN_CHARGES]
    return z.reshape(displacements.shape[0], -1, 3, 3)


def path_discrepancy(dipole0: torch.Tensor, born0: torch.Tensor, positions0: torch.Tensor, dipole: torch.Tensor,
                     born: torch.Tensor, positions: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """(B, 3) e·Å: M(t) integrated along the path minus M(0) + Σ ½(Z*(0)+Z*(t))·(r(t) − r(0)) (unwrapped r)."""
    per_atom = torch.einsum("nab,nb->na", 0.5 * (born0 + born), positions - positions0)
    direct = torch.zeros_like(dipole).index_add(0, batch, per_atom.to(dipole.dtype))
    return dipole - dipole0 - direct
