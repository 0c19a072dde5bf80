"""One frame through Quantum ESPRESSO: pw.x SCF (energy, forces, stress), then ph.x at Γ (Born charges, ε∞).

Inputs are written with ASE's espresso I/O and pw.x's output is read back with it (eV, eV/Å, eV/Å³ in ASE's
sign convention); ph.x's dielectric tensor and effective charges are parsed here. ph.x prints Z* as
"d Force / dE" with one row per field component (Ex, Ey, Ez) and one column per force component: exactly
Z[a][b] = ∂F_b/∂E_a of docs/conventions.md, so no transpose. Its charges do not sum to zero exactly on a
finite k-grid: they are kept as ``born_charge_raw`` and ``born_charge`` has the per-structure mean removed, as in
../shared/data/batio3-qe.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import time

import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io.espresso import write_espresso_in

from .config import QEConfig

PREFIX = "ferronn"
_FLOAT = r"[-+]?\d+\.\d*(?:[eEdD][-+]?\d+)?"


class QEFailure(RuntimeError):
    """A pw.x or ph.x run that did not finish with usable results; the message says which step and why."""


def pw_input(atoms, qe: QEConfig, need_ph: bool) -> dict:
    """pw.x namelists for an SCF with forces and stress of ``atoms`` (Å)."""
    system = {"ecutwfc": qe.ecutwfc}
    if qe.ecutrho is not None:
        system["ecutrho"] = qe.ecutrho
    if qe.smearing:
        system.update(occupations="smearing", smearing=qe.smearing, degauss=qe.degauss)
    return {
        "control": {"calculation": "scf", "prefix": PREFIX, "outdir": "./out", "tprnfor": True, "tstress": True,
                    "pseudo_dir": os.path.abspath(qe.pseudo_dir), "disk_io": "low" if need_ph else "none"},
        "system": system,
        "electrons": {"conv_thr": qe.conv_thr},
    }


def ph_input(qe: QEConfig) -> str:
    """ph.x at Γ: electric-field perturbations only (ε∞ and Z*), no phonons."""
    return ("Born charges at Gamma\n&inputph\n"
            f"  prefix = '{PREFIX}', outdir = './out', fildyn = 'dyn',\n"
            f"  tr2_ph = {qe.tr2_ph:.1e}, epsil = .true., zeu = .true., trans = .false.\n/\n0.0 0.0 0.0\n")


def _command(qe: QEConfig, program: str) -> list:
    args = shlex.split(program) + ["-nk", str(min(qe.pools, qe.mpi_ranks))]
    if qe.mpi_ranks > 1:
        args = shlex.split(qe.launcher()) + ["-np", str(qe.mpi_ranks)] + args
    return args


def _environment() -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # one thread per MPI rank: ranks already fill the cores
    # Open MPI's shared-memory single copy (CMA) is refused in many containers; without this two ranks were
    # slower than one (batio3-qe README: an SCF went from 34 s to 9.5 s).
    env.setdefault("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
    return env


def run_program(qe: QEConfig, program: str, input_name: str, output_name: str, workdir: str) -> float:
    """Run ``program`` on ``workdir/input_name``, stdout to ``output_name``; returns wall seconds.

    QEFailure (with the tail of the output) on a non-zero exit, a timeout or an output without 'JOB DONE'. A run
    killed by an error of the MPI library itself (``MPI_ERR_*``, ``ORTE_ERROR_LOG`` or ``PMIX_ERROR`` on stderr, no
    QE error message) is rerun once, with one k-point pool (``-nk 1``): seen here in ph.x runs (MPI_ERR_TRUNCATE
    in an Allreduce on a pool communicator, twice in a row on one idle CI host; "ORTE_ERROR_LOG: Data unpack would
    read past end of buffer" after the field calculation ended), and the same run with the same pools can fail again.
    """
    start = time.perf_counter()
    output = os.path.join(workdir, output_name)
    for attempt in range(2):  # the second pass only after an MPI-library abort, without pools
        run_qe = qe if attempt == 0 else dataclasses.replace(qe, pools=1)
        with open(output, "w") as stdout, open(output + ".err", "w") as stderr:
            try:
                proc = subprocess.run(_command(run_qe, program) + ["-in", input_name], cwd=workdir, stdout=stdout,
                                      stderr=stderr, env=_environment(), timeout=qe.timeout_s)
            except subprocess.TimeoutExpired:
                raise QEFailure(f"{program}: no result after {qe.timeout_s:.0f} s (qe.timeout_s)") from None
            except OSError as exc:
                raise QEFailure(f"{program}: could not start ({exc})") from None
        text = open(output, errors="replace").read()
        if proc.returncode == 0 and "JOB DONE" in text:
            return time.perf_counter() - start
        qe_error, mpi = _qe_error(text, workdir), _mpi_error(output + ".err")
        if qe_error is not None or mpi is None:
            break
    raise QEFailure(f"{program} failed (exit {proc.returncode}): {qe_error or mpi or _last_line(text)}")


def _mpi_error(stderr_path: str):
    """Open MPI's own error line (e.g. 'MPI_ERR_TRUNCATE: message truncated', 'ORTE_ERROR_LOG: ...'), else None."""
    found = re.search(r"(MPI_ERR_\w+|ORTE_ERROR_LOG|PMIX_ERROR)[^\n]*", open(stderr_path, errors="replace").read())
    return found.group(0).strip() if found else None


def _qe_error(text: str, workdir: str):
    """QE's own error message (CRASH file or the '%%%%' block, or unconverged SCF), else None."""
    crash = os.path.join(workdir, "CRASH")
    source = open(crash, errors="replace").read() if os.path.exists(crash) else text
    block = re.findall(r"%{10,}\n(.*?)\n\s*%{10,}", source, re.S)
    if block:
        return " ".join(block[-1].split())
    if "convergence NOT achieved" in text:
        return "SCF convergence NOT achieved"
    return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def parse_ph_output(text: str, num_atoms: int):
    """(Z* (N, 3, 3) as printed, ε∞ (3, 3)) from ph.x's output; QEFailure when a block is missing."""
    eps = re.search(r"Dielectric constant in cartesian axis\s*\n\s*\n?" + r"\s*\(\s*(.*?)\)" * 3, text)
    if eps is None:
        raise QEFailure("ph.x output has no 'Dielectric constant in cartesian axis' block")
    epsilon = np.array([[float(x) for x in eps.group(i).split()] for i in (1, 2, 3)])
    start = text.find("Effective charges (d Force / dE) in cartesian axis")
    if start < 0:
        raise QEFailure("ph.x output has no 'Effective charges (d Force / dE)' block (zeu = .true.?)")
    rows = re.findall(r"E[xyz]\s*\(\s*(" + _FLOAT + r")\s+(" + _FLOAT + r")\s+(" + _FLOAT + r")\s*\)", text[start:])
    if len(rows) < 3 * num_atoms:
        raise QEFailure(f"ph.x output: found {len(rows) // 3} atoms' effective charges, expected {num_atoms}")
    born = np.array(rows[: 3 * num_atoms], dtype=np.float64).reshape(num_atoms, 3, 3)
    return born, epsilon


def label_atoms(atoms, qe: QEConfig, labels, workdir: str):
    """A copy of ``atoms`` carrying the requested DFT labels (energy/forces/stress in its calculator, Born
    charges in arrays, ε∞ and wall times in info). QEFailure says which step failed and why."""
    import ase.io

    os.makedirs(workdir, exist_ok=True)
    need_ph = "born_charge" in labels
    pseudos = {s: os.path.basename(qe.pseudopotential(s)) for s in sorted(set(atoms.get_chemical_symbols()))}
    with open(os.path.join(workdir, "pw.in"), "w") as handle:
        write_espresso_in(handle, atoms, input_data=pw_input(atoms, qe, need_ph), pseudopotentials=pseudos,
                          kpts=tuple(qe.kpts), koffset=tuple(qe.koffset))
    out = atoms.copy()
    out.info["pw_wall_s"] = round(run_program(qe, qe.pw_command, "pw.in", "pw.out", workdir), 1)
    try:
        scf = ase.io.read(os.path.join(workdir, "pw.out"), format="espresso-out", index=-1)
        results = {"energy": scf.get_potential_energy(), "forces": scf.get_forces(), "stress": scf.get_stress()}
    except Exception as exc:  # ASE's parser raises many kinds on a truncated file
        raise QEFailure(f"pw.x output could not be read ({type(exc).__name__}: {exc})") from None
    if len(results["forces"]) != len(atoms):
        raise QEFailure(f"pw.x output has forces for {len(results['forces'])} atoms, expected {len(atoms)}")
    out.calc = SinglePointCalculator(out, **{k: v for k, v in results.items() if k in labels})
    if need_ph:
        with open(os.path.join(workdir, "ph.in"), "w") as handle:
            handle.write(ph_input(qe))
        out.info["ph_wall_s"] = round(run_program(qe, qe.ph_command, "ph.in", "ph.out", workdir), 1)
        raw, epsilon = parse_ph_output(open(os.path.join(workdir, "ph.out")).read(), len(atoms))
        out.arrays["born_charge_raw"] = raw.reshape(len(atoms), 9)
        out.arrays["born_charge"] = (raw - raw.mean(axis=0)).reshape(len(atoms), 9)
        out.info["epsilon_inf"] = epsilon.reshape(9)
    return out
