"""Reading labelled frames from any ASE-readable file through a key map, with per-label masks.

A frame is a plain dict of float64 numpy arrays (positions Å, cell Å, labels in eV, eV/Å, eV/Å³, e). A label a
frame does not carry is simply absent from its dict: it is masked out of that loss later, never zero-filled.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np

from .. import keys as K
from ..errors import DataError, where

#: Smallest |det(cell)| in Å³ accepted for a periodic frame.
MIN_CELL_VOLUME = 1e-6


@dataclasses.dataclass
class KeyMap:
    """Where each label lives in the file (atoms.calc.results, atoms.info or atoms.arrays); null = not read.

    ``required`` lists labels every frame must carry (otherwise a frame without it is only masked).
    """

    energy: Optional[str] = "energy"
    forces: Optional[str] = "forces"
    stress: Optional[str] = "stress"
    born_charges: Optional[str] = "born_charge"
    born_charges_raw: Optional[str] = "born_charge_raw"  # reference only: DFT charges before the sum rule
    polarization: Optional[str] = None  # Berry-phase cell dipole (e·Å, (3,)): only the Born-path loss reads it
    required: list = dataclasses.field(default_factory=list)

    def items(self):
        return [(label, getattr(self, label)) for label in K.LABELS if getattr(self, label)]


def _lookup(atoms, key):
    """Value of ``key`` in calc results, info or arrays (ASE moves energy/forces/stress into calc results)."""
    calc = atoms.calc
    if calc is not None and key in getattr(calc, "results", {}):
        return calc.results[key]
    if key in atoms.info:
        return atoms.info[key]
    if key in atoms.arrays:
        return atoms.arrays[key]
    return None


def _available_keys(atoms) -> list:
    found = set(atoms.info) | (set(atoms.arrays) - {"numbers", "positions"})
    if atoms.calc is not None:
        found |= set(getattr(atoms.calc, "results", {}))
    return sorted(found)


def _as_stress(value, loc) -> np.ndarray:
    """3×3 stress (eV/Å³) from 3×3, 9 or ASE Voigt 6 (xx, yy, zz, yz, xz, xy)."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape in ((3, 3), (9,)):
        return arr.reshape(3, 3)
    if arr.shape == (6,):
        xx, yy, zz, yz, xz, xy = arr
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    raise DataError(f"{loc}: expected stress as 3x3, 9 or Voigt 6 values, got shape {arr.shape}")


def _as_born(value, n, loc) -> np.ndarray:
    """Born charges (n, 3, 3) in e from (n, 9) row-major or (n, 3, 3)."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape == (n, 9) or arr.shape == (n, 3, 3):
        return arr.reshape(n, 3, 3)
    raise DataError(
        f"{loc}: expected Born charges of shape ({n}, 9) row-major Z[a][b] or ({n}, 3, 3), got {arr.shape}"
    )


def _convert(label, value, n, loc):
    if label == K.ENERGY:
        arr = np.asarray(value, dtype=np.float64)
        if arr.size != 1:
            raise DataError(f"{loc}: expected one energy per frame (eV), got shape {arr.shape}")
        return arr.reshape(())
    if label == K.FORCES:
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != (n, 3):
            raise DataError(f"{loc}: expected forces of shape ({n}, 3), got {arr.shape}")
        return arr
    if label == K.STRESS:
        return _as_stress(value, loc)
    if label == K.BORN_CHARGES:
        return _as_born(value, n, loc)
    raise KeyError(label)


def frame_from_atoms(atoms, keymap: KeyMap, path="<memory>", index=0) -> dict:
    """Convert one ase.Atoms to a frame dict, checking shapes, finiteness and the cell."""
    n = len(atoms)
    if n == 0:
        raise DataError(f"{where(path, index)}: frame has no atoms")
    positions = np.asarray(atoms.get_positions(), dtype=np.float64)
    if not np.all(np.isfinite(positions)):
        raise DataError(f"{where(path, index, 'positions')}: positions contain NaN or inf")
    pbc = np.asarray(atoms.get_pbc(), dtype=bool)
    cell = np.asarray(atoms.get_cell().array, dtype=np.float64)
    if pbc.any():
        det = float(np.linalg.det(cell))
        if not det > MIN_CELL_VOLUME:
            kind = "left-handed" if det < -MIN_CELL_VOLUME else "singular"
            raise DataError(
                f"{where(path, index, 'Lattice')}: {kind} cell (det = {det:.4g} Å^3); expected three "
                "right-handed lattice vectors spanning a positive volume"
            )
    frame = {
        "index": int(index),
        "source": str(path),
        K.POSITIONS: positions,
        K.ATOMIC_NUMBERS: np.asarray(atoms.get_atomic_numbers(), dtype=np.int64),
        K.CELL: cell,
        K.PBC: pbc,
    }
    for label, key in keymap.items():
        value = _lookup(atoms, key)
        loc = where(path, index, key)
        if value is None:
            if label in keymap.required:
                raise DataError(
                    f"{loc}: required label '{label}' is missing; keys present: {_available_keys(atoms)}"
                )
            continue
        arr = _convert(label, value, n, loc)
        if not np.all(np.isfinite(arr)):
            raise DataError(f"{loc}: label '{label}' contains NaN or inf; expected finite values")
        frame[label] = arr
    if keymap.born_charges_raw:  # not a training label: only for reporting how far the DFT was from ASR
        value = _lookup(atoms, keymap.born_charges_raw)
        if value is not None:
            frame[K.BORN_CHARGES_RAW] = _as_born(value, n, where(path, index, keymap.born_charges_raw))
    if keymap.polarization:  # not a batched label: the Born-path loss compares it between frames
        value = _lookup(atoms, keymap.polarization)
        loc = where(path, index, keymap.polarization)
        if value is None and K.POLARIZATION in keymap.required:
            raise DataError(f"{loc}: required label 'polarization' is missing; keys present: {_available_keys(atoms)}")
        if value is not None:
            arr = np.asarray(value, dtype=np.float64)
            if arr.shape != (3,) or not np.all(np.isfinite(arr)):
                raise DataError(f"{loc}: expected the cell dipole as 3 finite values (e·Å), got shape {arr.shape}")
            frame[K.POLARIZATION] = arr
    return frame


#: Key map of a structure without labels: reading it runs only the checks (finite positions, right-handed cell).
NO_LABELS = KeyMap(None, None, None, None, None)


def _ase_read(path: str, index, key: Optional[str] = None):
    """``ase.io.read(path, index)``; a missing, empty or unreadable file is a DataError naming the file (and the
    recipe key that named it). IndexError/StopIteration (a frame past the end) pass through for the caller."""
    import ase.io

    loc = f"file '{path}'" + (f" (key '{key}')" if key else "")
    if not os.path.exists(path):
        raise DataError(f"{loc}: no such file")
    if os.path.getsize(path) == 0:
        raise DataError(f"{loc}: is empty (0 bytes); expected frames in an ASE-readable format (extxyz, ...)")
    try:
        return ase.io.read(path, index=index)
    except (IndexError, StopIteration):
        raise
    except Exception as exc:  # ASE raises many types for truncated/garbled files
        raise DataError(f"{loc}: could not be read by ASE ({type(exc).__name__}: {exc})") from None


def read_frames(path, keymap: Optional[KeyMap] = None, index=":", labels_needed=()) -> list:
    """Read every frame of an ASE-readable file (extxyz, ...) into frame dicts.

    ``labels_needed`` are labels the caller will train or evaluate on: if *no* frame carries one of them, the
    key map is wrong (e.g. ``energy`` where the file says ``total_energy``) and a DataError says so.
    """
    keymap = keymap or KeyMap()
    path = os.fspath(path)
    try:
        images = _ase_read(path, index)
    except (IndexError, StopIteration) as exc:  # a truncated extxyz can end like this, too
        raise DataError(f"file '{path}': could not be read by ASE ({type(exc).__name__}: {exc})") from None
    if not isinstance(images, list):
        images = [images]
    if not images:
        raise DataError(f"file '{path}': contains no frames")
    frames = [frame_from_atoms(atoms, keymap, path, i) for i, atoms in enumerate(images)]
    for label in labels_needed:
        key = getattr(keymap, label, None)
        if key is None:
            raise DataError(f"file '{path}': label '{label}' is needed but the key map does not name a key")
        if not any(label in f for f in frames):
            raise DataError(
                f"{where(path, 0, key)}: no frame carries label '{label}' under key '{key}'; "
                f"keys present in frame 0: {_available_keys(images[0])} (set keys.{label} in the recipe)"
            )
    return frames


def read_structure(path, index: int = 0, key: str = "structure"):
    """One unlabelled structure (frame ``index`` of ``path``) for MD or the calculator, checked like training frames
    (finite positions, a right-handed cell); errors name the file, the frame and the recipe key."""
    path = os.fspath(path)
    try:
        atoms = _ase_read(path, index, key)
    except (IndexError, StopIteration):  # extxyz raises StopIteration past the last frame
        count = len(_ase_read(path, ":", key))
        raise DataError(f"{where(path, index)} (key 'index'): no such frame; the file holds {count} frame(s)") from None
    frame_from_atoms(atoms, NO_LABELS, path, index)  # the checks only
    return atoms


def read_structures(path, index: str = ":", key: str = "in"):
    """Frames ``index`` (ASE syntax: ':', '3', '47:', '0:10:2') of ``path`` as (atoms list, their indices in the
    file), each checked like a training frame; errors name the file, the frame and the key."""
    from ase.io.formats import string2index

    path = os.fspath(path)
    frames = _ase_read(path, ":", key)
    try:
        selected = range(len(frames))[string2index(index)]
    except (ValueError, IndexError):
        raise DataError(f"file '{path}' (key 'index'): '{index}' selects no frame of {len(frames)}") from None
    sources = [selected] if isinstance(selected, int) else list(selected)
    if not sources:
        raise DataError(f"file '{path}' (key 'index'): '{index}' selects no frame of {len(frames)}")
    for source in sources:
        frame_from_atoms(frames[source], NO_LABELS, path, source)
    return [frames[i] for i in sources], sources
