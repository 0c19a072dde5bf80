"""What an MD run writes as it goes: ``log.csv`` (one row per replica every ``log_every`` steps), ``layers.csv``
(per-layer local polarization, when asked), ``trajectory_r{b}.extxyz`` frames, the progress bar, and the
truncation of rows/frames written after a restart's step. Values arrive as host lists: reading the device is the
caller's one read per log."""

from __future__ import annotations

import csv
import glob
import os
from typing import Callable, List, Optional

from ..atomic import atomic_path
from ..units import ASE_TIME_UNIT_FS
from .state import MDState

LOG_FIELDS = ["step", "time_fs", "replica", "temperature_K", "target_K", "potential_eV", "kinetic_eV",
              "enthalpy_eV", "pressure_GPa", "volume_A3", "Ex", "Ey", "Ez", "Mx", "My", "Mz", "Px_uC_cm2",
              "Py_uC_cm2", "Pz_uC_cm2", "a_A", "b_A", "c_A", "field_work_eV"]

#: Log columns of a committee's spread (ModelForces.spread), present only when the models are committees.
SPREAD_COLUMNS = {"born": "born_std_max_e", "forces": "force_std_max_eV_A"}

LAYER_FIELDS = ["step", "time_fs", "replica", "layer", "s_frac", "Px_uC_cm2", "Py_uC_cm2", "Pz_uC_cm2"]


def append_log(path: str, step: int, time_fs: float, columns: dict, spread: dict) -> None:
    """Rows of ``log.csv``: ``columns`` maps names to per-replica lists (temperature, target, potential, kinetic,
    enthalpy, pressure, volume, field, dipole, polarization, lengths, work); ``spread`` a committee's."""
    new = not os.path.exists(path)
    with open(path, "a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(LOG_FIELDS + [SPREAD_COLUMNS[k] for k in spread])
        rows = zip(*(columns[k] for k in ("temperature", "target", "potential", "kinetic", "enthalpy", "pressure",
                                          "volume", "field", "dipole", "polarization", "lengths", "work")))
        for b, (t, tt, u, k, h, p, v, e, m, pp, abc, w) in enumerate(rows):
            writer.writerow([step, f"{time_fs:.3f}", b, f"{t:.3f}", tt, f"{u:.6f}", f"{k:.6f}", f"{h:.6f}",
                             f"{p:.5f}", f"{v:.4f}", *e, *[f"{x:.6f}" for x in m], *[f"{x:.4f}" for x in pp],
                             *[f"{x:.5f}" for x in abc], f"{w:.6f}", *[f"{s[b]:.5f}" for s in spread.values()]])


def append_layers(path: str, step: int, time_fs: float, layer_positions, polarization: List[List[List[float]]]) -> None:
    """Rows of ``layers.csv``: per replica and layer, its fractional position and mean local P (μC/cm²)."""
    new = not os.path.exists(path)
    with open(path, "a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(LAYER_FIELDS)
        for b, layers in enumerate(polarization):
            for k, p in enumerate(layers):
                writer.writerow([step, f"{time_fs:.3f}", b, k, f"{layer_positions[b][k]:.4f}",
                                 *[f"{x:.4f}" for x in p]])


def replica_atoms(s: MDState, step: int) -> list:
    """One ase.Atoms per replica of ``s`` with its momenta and, in info, replica, step, time, dipole and field."""
    import ase

    pos, cell, z = s.positions.detach().cpu().numpy(), s.cell.cpu().numpy(), s.atomic_numbers.cpu().numpy()
    mom, ptr = s.momenta.detach().cpu().numpy(), s.ptr.tolist()
    atom_field = s.atom_field.cpu().numpy() if s.atom_field is not None else None
    out = []
    for b in range(s.num_replicas):
        lo, hi = ptr[b], ptr[b + 1]
        atoms = ase.Atoms(numbers=z[lo:hi], positions=pos[lo:hi], cell=cell[b], pbc=s.pbc[b].cpu().numpy())
        atoms.set_momenta(mom[lo:hi] * ASE_TIME_UNIT_FS)  # amu·Å/fs → ASE's amu·Å/(Å·sqrt(amu/eV))
        atoms.info.update(replica=b, step=step, time_fs=float(s.time), dipole=s.dipole[b].cpu().numpy(),
                          field=s.field[b].cpu().numpy(), temperature_target=float(s.temperature_target[b]))
        if atom_field is not None:
            atoms.arrays["efield"] = atom_field[lo:hi]
        out.append(atoms)
    return out


def write_frames(state: MDState, step: int, path_of: Callable[[int], str]) -> None:
    """Append one extxyz frame per replica b to ``path_of(b)``."""
    import ase.io

    for b, atoms in enumerate(replica_atoms(state, step)):
        ase.io.write(path_of(b), atoms, format="extxyz", append=True)


def truncate_outputs(out: str, step: int) -> None:
    """Drop log/layer rows and trajectory frames written after the restart's step (a kill leaves them behind)."""
    for name in ("log.csv", "layers.csv"):
        path = os.path.join(out, name)
        if os.path.exists(path):
            with open(path) as handle:
                rows = list(csv.reader(handle))
            keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
            with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
                csv.writer(handle).writerows(keep)
    import ase.io

    for traj in glob.glob(os.path.join(out, "trajectory_r*.extxyz")):
        frames = [a for a in ase.io.read(traj, index=":") if int(a.info.get("step", 0)) <= step]
        with atomic_path(traj) as tmp:
            ase.io.write(tmp, frames, format="extxyz")


def progress(steps: int, enabled: bool) -> Optional[object]:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=steps, unit="step", dynamic_ncols=True)
