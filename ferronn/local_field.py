"""Non-uniform fields from a recipe or a structure: static per-atom amplitudes A_i (N, 3) in V/Å.

A field can be given
- per region: ``{field: [Ex, Ey, Ez], indices: [0, 5, ...]}`` (atoms of the simulated cell, 0-based) or
  ``{field: [...], axis: x|y|z, lo: 0.0, hi: 0.5}``, a slab lo ≤ s < hi of the wrapped fractional coordinate s
  along lattice vector a, b or c (0 ≤ lo < hi ≤ 1; put the bounds between atomic planes). Membership is decided
  once, on the starting structure: atoms keep their field as they move (a static field conserves H exactly);
- per atom: an N×3 array of the structure file (``atoms.arrays[key]``, e.g. extxyz ``efield:R:3``), in V/Å.
Regions and the array add up; ``ferronn.field.FieldSchedule`` adds the result to each replica's uniform field.
Bad input raises one ConfigError/DataError line naming the region, key or structure and what was expected.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .errors import ConfigError, DataError
from .field import as_field_vector

AXES = {"x": 0, "y": 1, "z": 2}


@dataclasses.dataclass(frozen=True)
class FieldRegion:
    """A field (V/Å) on a group of atoms: by ``indices`` or by a slab ``lo <= s < hi`` along ``axis``."""

    field: Tuple[float, float, float]
    indices: Optional[Tuple[int, ...]] = None
    axis: Optional[str] = None
    lo: float = 0.0
    hi: float = 1.0

    def mask(self, atoms, loc: str = "field region") -> np.ndarray:
        """(n,) bool: the atoms of ``atoms`` (an ase.Atoms) in this region."""
        n = len(atoms)
        if self.indices is not None:
            idx = np.asarray(self.indices, dtype=np.int64)
            if idx.size and idx.max() >= n:
                raise ConfigError(f"{loc}.indices: atom index {int(idx.max())} is past the last atom (the structure "
                                  f"has {n} atoms, indices 0..{n - 1})")
            out = np.zeros(n, dtype=bool)
            out[idx] = True
            return out
        s = atoms.get_scaled_positions(wrap=True)[:, AXES[self.axis]]
        s = np.where(s >= 1.0, s - 1.0, s)  # wrap can return 1.0 for −1e-17
        return (s >= self.lo) & (s < self.hi)


def parse_region(spec: Union[dict, FieldRegion], loc: str = "field region") -> FieldRegion:
    """A region from a recipe mapping (or a FieldRegion), checked: one clear line naming ``loc`` on bad input."""
    if isinstance(spec, FieldRegion):
        spec = dataclasses.asdict(spec)
    if not isinstance(spec, dict):
        raise ConfigError(f"{loc}: expected a mapping {{field: [Ex, Ey, Ez], indices: [...]}} or {{field: [...], "
                          f"axis: x|y|z, lo: 0.0, hi: 0.5}}, got {spec!r}")
    known = {f.name for f in dataclasses.fields(FieldRegion)}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ConfigError(f"{loc}: unknown key '{unknown[0]}' (known: {sorted(known)})")
    if spec.get("field") is None:
        raise ConfigError(f"{loc}: needs 'field': [Ex, Ey, Ez] in V/Å")
    field = tuple(as_field_vector(spec["field"], f"{loc}.field").tolist())
    indices, axis = spec.get("indices"), spec.get("axis")
    if (indices is None) == (axis is None):
        raise ConfigError(f"{loc}: give exactly one of 'indices' (atom numbers) or 'axis' (a slab lo <= s < hi "
                          f"along a lattice vector), got {'both' if indices is not None else 'neither'}")
    if indices is not None:
        if (not isinstance(indices, (list, tuple)) or not indices
                or any(not isinstance(i, (int, np.integer)) or isinstance(i, bool) or i < 0 for i in indices)):
            raise ConfigError(f"{loc}.indices: expected a non-empty list of atom indices >= 0, got {indices!r}")
        return FieldRegion(field, indices=tuple(int(i) for i in indices))
    if axis not in AXES:
        raise ConfigError(f"{loc}.axis: expected one of {sorted(AXES)} (lattice vector a, b, c), got {axis!r}")
    try:
        lo, hi = float(spec.get("lo", 0.0)), float(spec.get("hi", 1.0))
    except (TypeError, ValueError):
        raise ConfigError(f"{loc}: lo and hi must be numbers, got {spec.get('lo')!r}, {spec.get('hi')!r}") from None
    if not (0.0 <= lo < hi <= 1.0):
        raise ConfigError(f"{loc}: slab [lo, hi) = [{lo}, {hi}) must lie inside [0, 1) of the fractional "
                          "coordinate, with lo < hi")
    return FieldRegion(field, axis=axis, lo=lo, hi=hi)


def parse_regions(specs: Sequence, loc: str = "field_regions") -> List[FieldRegion]:
    return [parse_region(spec, f"{loc}[{k}]") for k, spec in enumerate(specs or [])]


def array_field(atoms, key: str, loc: str = "structure") -> np.ndarray:
    """The per-atom field ``atoms.arrays[key]`` (n, 3) V/Å, checked for shape and finiteness."""
    if key not in atoms.arrays:
        raise DataError(f"{loc}: no per-atom array '{key}' for the field (arrays: {sorted(atoms.arrays)}); write it "
                        f"as an extxyz column '{key}:R:3' in V/Å")
    value = np.asarray(atoms.arrays[key], dtype=np.float64)
    if value.shape != (len(atoms), 3):
        raise DataError(f"{loc}: per-atom field '{key}' must be N×3 = ({len(atoms)}, 3) in V/Å, got shape "
                        f"{value.shape}")
    if not np.isfinite(value).all():
        raise DataError(f"{loc}: per-atom field '{key}' must be finite")
    return value


def local_amplitudes(atoms, regions: Sequence[FieldRegion] = (), array_key: str = "",
                     loc: str = "structure", region_loc: str = "field_regions") -> np.ndarray:
    """A_i (n, 3) V/Å of one structure: the sum of its regions' fields and of its per-atom array."""
    out = np.zeros((len(atoms), 3), dtype=np.float64)
    for k, region in enumerate(regions):
        out[region.mask(atoms, f"{region_loc}[{k}]")] += np.asarray(region.field)
    if array_key:
        out += array_field(atoms, array_key, loc)
    return out


def check_local_fn(fn, positions: torch.Tensor, time_fs: torch.Tensor, loc: str = "local field") -> None:
    """Call a user field g(positions, time) once (at setup, not in the step) and check it returns (N, 3) finite."""
    try:
        value = torch.as_tensor(fn(positions, time_fs))
    except Exception as exc:  # noqa: BLE001 — the user's code: report it on one line
        raise ConfigError(f"{loc}: calling it with positions {tuple(positions.shape)} and a time failed "
                          f"({type(exc).__name__}: {exc})") from None
    if value.shape != positions.shape:
        raise ConfigError(f"{loc}: must return the field at each atom, shape {tuple(positions.shape)} in V/Å, got "
                          f"shape {tuple(value.shape)}")
    if not bool(torch.isfinite(value).all()):
        raise ConfigError(f"{loc}: returned non-finite values")
