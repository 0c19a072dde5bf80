"""`python -m ferronn.label`: Quantum ESPRESSO labels on a 5-atom BaTiO3 cell at a low cutoff (seconds).

The reproduction of a ../shared/data/batio3-qe frame at the dataset's own settings takes ~4 min on 2 cores, too
long for the suite: it is ``benchmarks/qe_reproduce.py``.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import ase.io
import numpy as np
import pytest

from helpers import ROOT
from ferronn.data.datamodule import default_data_path
from ferronn.errors import ConfigError
from ferronn.label.config import LabelConfig, QEConfig
from ferronn.label.espresso import QEFailure, label_atoms, parse_ph_output, run_program
from ferronn.label.store import failures_path, label_frames, read_labelled

PSEUDOS = ROOT.parent / "shared" / "pseudos"
#: Fast settings: 30 Ry and a shifted 2×2×2 grid label a 5-atom cell in ~12 s (pw.x 2 s, ph.x 10 s).
FAST = dict(pseudo_dir=str(PSEUDOS), ecutwfc=30.0, kpts=[2, 2, 2], conv_thr=1e-9, tr2_ph=1e-12)


def needs_qe():
    if shutil.which("pw.x") is None or shutil.which("ph.x") is None:
        pytest.skip("Quantum ESPRESSO (pw.x, ph.x) not installed: apt-get install quantum-espresso (.ci/run does)")
    if not PSEUDOS.exists():
        pytest.skip(f"pseudopotentials not found at {PSEUDOS} (CI has ../shared beside the checkout)")


def structure(index=16):
    """Frame ``index`` of the embedded QE set without its labels (16: Ti displaced 0.05 Å along z)."""
    atoms = ase.io.read(default_data_path(), index)
    atoms.calc = None
    for key in [k for k in atoms.arrays if k not in ("numbers", "positions")]:
        del atoms.arrays[key]
    atoms.info = {"name": atoms.info["name"]}
    return atoms


@pytest.mark.slow  # Quantum ESPRESSO or CLI subprocesses
def test_label_cli_writes_labels_in_ferronn_units(tmp_path):
    needs_qe()
    ase.io.write(tmp_path / "in.xyz", [structure(16)])
    out = tmp_path / "labelled.xyz"
    cmd = [sys.executable, "-m", "ferronn.label", "--in", str(tmp_path / "in.xyz"), "--out", str(out)]
    for key, value in FAST.items():
        cmd += ["--set", f"qe.{key}={value}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (atoms,) = ase.io.read(out, ":")
    assert -3600 < atoms.get_potential_energy() < -3500  # eV (−263 Ry per cell)
    forces, stress = atoms.get_forces(), atoms.get_stress()
    assert forces.shape == (5, 3) and stress.shape == (6,)
    assert np.abs(forces.sum(axis=0)).max() < 1e-3  # eV/Å: no net force
    raw = atoms.arrays["born_charge_raw"].reshape(5, 3, 3)
    born = atoms.arrays["born_charge"].reshape(5, 3, 3)
    assert np.abs(born.sum(axis=0)).max() < 1e-10  # the sum rule imposed
    np.testing.assert_allclose(born, raw - raw.mean(axis=0), atol=1e-12)
    # BaTiO3's anomalous charges in the right places: Ti and each O along its Ti–O bond (the O at (½,½,0) along
    # z, the O at (½,0,½) along y); the coarse grid lowers their size (Ti 6.3 e vs 7.1 e converged), not the pattern.
    diagonal = raw.diagonal(axis1=1, axis2=2)
    np.testing.assert_allclose(diagonal[0], 2.7, atol=0.3)  # Ba: nearly its nominal +2
    assert diagonal[1].min() > 5.0  # Ti: anomalous, nominal +4
    assert diagonal[2, 2] < -3.0 and diagonal[3, 1] < -3.0 and diagonal[4, 0] < -3.0  # O∥
    np.testing.assert_allclose([diagonal[2, 0], diagonal[3, 0], diagonal[4, 1]], -2.0, atol=0.4)  # O⊥
    assert np.abs(raw - raw.transpose(0, 2, 1)).max() < 1e-3  # tetragonal site symmetry: no antisymmetric part
    eps = np.asarray(atoms.info["epsilon_inf"]).reshape(3, 3)
    assert 4.0 < eps[0, 0] < 8.0 and abs(eps[0, 0] - eps[1, 1]) < 1e-6  # the distortion is along z
    assert atoms.info["label_source"] == 0 and atoms.info["ph_wall_s"] > 0
    assert "1 labelled" in proc.stdout
    # A rerun finds the frame done and runs nothing.
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "0 labelled, 1 already in" in again.stdout


@pytest.mark.slow  # Quantum ESPRESSO or CLI subprocesses
def test_pw_forces_and_stress_are_the_energy_derivatives(tmp_path):
    """Units and signs of pw.x's forces (Ry/bohr) and stress (kbar) as read back: finite differences of E."""
    needs_qe()
    qe = QEConfig(**FAST, mpi_ranks=2)
    labels = ["energy", "forces", "stress"]
    base = label_atoms(structure(16), qe, labels, str(tmp_path / "0"))
    h = 0.01  # Å
    energies = []
    for sign in (1, -1):
        atoms = structure(16)
        atoms.positions[1, 2] += sign * h
        energies.append(label_atoms(atoms, qe, ["energy"], str(tmp_path / f"x{sign}")).get_potential_energy())
    assert (energies[1] - energies[0]) / (2 * h) == pytest.approx(base.get_forces()[1, 2], abs=3e-3)
    eps = 0.002  # strain along z: σ_zz = (1/Ω) ∂E/∂ε_zz (ASE's sign convention)
    strained = []
    for sign in (1, -1):
        atoms = structure(16)
        atoms.set_cell(atoms.cell.array @ np.diag([1, 1, 1 + sign * eps]), scale_atoms=True)
        strained.append(label_atoms(atoms, qe, ["energy"], str(tmp_path / f"s{sign}")).get_potential_energy())
    sigma_zz = (strained[0] - strained[1]) / (2 * eps) / base.get_volume()
    assert sigma_zz == pytest.approx(base.get_stress()[2], abs=2e-4)  # eV/Å³ (2e-4 eV/Å³ = 0.03 GPa)


def test_ph_output_rows_are_field_components():
    """Z[a][b] = ∂F_b/∂E_a: ph.x's 'Ex ( ... )' row is a = x; no transpose on the way in."""
    text = """
          Dielectric constant in cartesian axis

          (       6.370864124       0.100000000       0.000000000 )
          (       0.100000000       6.370864124       0.000000000 )
          (       0.000000000       0.000000000       6.234036122 )

          Effective charges (d Force / dE) in cartesian axis

           atom      1   Ba
      Ex  (        2.74949        0.50000        0.00000 )
      Ey  (       -0.00000        2.74949        0.00000 )
      Ez  (        0.00000        0.00000        2.75836 )
           atom      2   Ti
      Ex  (        7.12149        0.00000        0.00000 )
      Ey  (        0.00000        7.12149        0.00000 )
      Ez  (        0.30000        0.00000        6.97556 )
"""
    born, eps = parse_ph_output(text, 2)
    assert born[0, 0, 1] == 0.5 and born[0, 1, 0] == 0.0 and born[1, 2, 0] == 0.3
    assert eps[0, 1] == 0.1 and eps[2, 2] == pytest.approx(6.234036122)
    with pytest.raises(QEFailure, match="found 2 atoms' effective charges, expected 5"):
        parse_ph_output(text, 5)


def _fake_pw(tmp_path, real_pw: str) -> str:
    """A pw.x that fails like QE does (error block, exit 1) for the structure with Ti at z = 2.05 Å."""
    script = tmp_path / "pw.x"
    script.write_text(f"""#!/bin/bash
if grep -q "2.0500000000" "${{@: -1}}"; then
  printf ' %%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%\\n Error in routine electrons (1):\\n charge is wrong\\n %%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%\\n'
  exit 1
fi
exec {real_pw} "$@"
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@pytest.mark.slow  # Quantum ESPRESSO or CLI subprocesses
def test_failed_pw_run_is_recorded_and_the_batch_goes_on(tmp_path):
    needs_qe()
    qe = QEConfig(**FAST, mpi_ranks=1, pw_command=_fake_pw(tmp_path, shutil.which("pw.x")))
    config = LabelConfig(labels=["energy", "forces", "stress"], qe=qe)
    out = str(tmp_path / "labelled.xyz")
    frames = [structure(16), structure(1)]  # 16 fails (Ti at z = 2.05 Å), 1 (cubic) succeeds
    summary = label_frames(frames, out, config, log=lambda *_: None)
    assert summary["labelled"] == 1 and len(summary["failed"]) == 1
    record = summary["failed"][0]
    assert record["source"] == 0 and "Error in routine electrons (1): charge is wrong" in record["reason"]
    assert os.path.exists(os.path.join(record["workdir"], "pw.out"))  # kept for the post-mortem
    assert [a.info["label_source"] for a in read_labelled(out)] == [1]
    assert os.path.exists(failures_path(out))


@pytest.mark.slow  # Quantum ESPRESSO or CLI subprocesses
def test_mpi_library_error_is_rerun_once_and_then_recorded(tmp_path):
    """ph.x died of Open MPI's own errors on a loaded host (MPI_ERR_TRUNCATE; an ORTE_ERROR_LOG after a finished
    calculation): such a run is repeated once; twice is a failure."""
    needs_qe()
    script = tmp_path / "pw.x"
    script.write_text(f"""#!/bin/bash
n=$(cat "{tmp_path}/count" 2>/dev/null || echo 0); echo $((n + 1)) > "{tmp_path}/count"
if [ "$n" -eq 0 ] && [ "$(cat {tmp_path}/faults)" -gt 0 ]; then
  echo '[vm:1] [[6382,0],0] ORTE_ERROR_LOG: Data unpack would read past end of buffer in file show_help.c' >&2
  exit 15
elif [ "$n" -lt "$(cat {tmp_path}/faults)" ]; then
  echo '[vm:1] *** An error occurred in MPI_Allreduce' >&2
  echo '[vm:1] *** MPI_ERR_TRUNCATE: message truncated' >&2
  exit 15
fi
exec {shutil.which("pw.x")} "$@"
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    config = LabelConfig(labels=["energy"], qe=QEConfig(**FAST, mpi_ranks=1, pw_command=str(script)))
    (tmp_path / "faults").write_text("1")
    summary = label_frames([structure(1)], str(tmp_path / "a.xyz"), config, log=lambda *_: None)
    assert summary["labelled"] == 1 and (tmp_path / "count").read_text().strip() == "2"
    (tmp_path / "count").unlink()
    (tmp_path / "faults").write_text("2")
    summary = label_frames([structure(1)], str(tmp_path / "b.xyz"), config, log=lambda *_: None)
    assert summary["labelled"] == 0 and (tmp_path / "count").read_text().strip() == "2"
    assert "MPI_ERR_TRUNCATE: message truncated" in summary["failed"][0]["reason"]


def test_mpi_library_rerun_drops_the_pools(tmp_path, monkeypatch):
    """The rerun after an MPI-library abort uses one k-point pool: the abort (MPI_ERR_TRUNCATE in a pool
    communicator's Allreduce) came twice in a row with the same pools on one CI host."""
    calls = []

    def fake_run(args, stdout, stderr, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            stderr.write("[vm:1] *** MPI_ERR_TRUNCATE: message truncated\n")
            return subprocess.CompletedProcess(args, 15)
        stdout.write("JOB DONE.\n")
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    qe = QEConfig(mpi_ranks=2, pools=2, mpirun="mpirun")
    run_program(qe, "ph.x", "ph.in", "ph.out", str(tmp_path))
    nk = [call[call.index("-nk") + 1] for call in calls]
    assert nk == ["2", "1"] and all("-np" in call for call in calls)


def test_resume_skips_finished_frames_and_appends_whole_frames(tmp_path):
    calls = []

    def labeller(atoms, workdir):
        calls.append(atoms.info["name"])
        if atoms.info["name"] == "boom":
            raise KeyboardInterrupt  # a kill between frames
        out = atoms.copy()
        out.info["energy"] = -1.0
        return out

    out = str(tmp_path / "labelled.xyz")
    config = LabelConfig(qe=QEConfig(pseudo_dir=str(ROOT / "tests")  # pseudopotentials are only looked up
                                     , pseudopotentials={}))
    frames = [structure(i) for i in (0, 1, 2)]
    boom = structure(3)
    boom.info["name"] = "boom"
    with pytest.raises(ConfigError, match="no pseudopotential for element"):
        label_frames(frames, out, config, labeller=labeller)
    config.qe = QEConfig(**FAST)
    if not PSEUDOS.exists():
        pytest.skip(f"pseudopotentials not found at {PSEUDOS}")
    with pytest.raises(KeyboardInterrupt):
        label_frames(frames[:2] + [boom], out, config, labeller=labeller, log=lambda *_: None)
    assert [a.info["name"] for a in read_labelled(out)] == ["cubic_a3.97", "cubic_a4.00"]
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]  # no half-written output
    calls.clear()
    summary = label_frames(frames, out, config, labeller=labeller, log=lambda *_: None)
    assert calls == ["cubic_a4.03"] and summary == {"labelled": 1, "skipped": 2, "failed": []}


@pytest.mark.slow  # Quantum ESPRESSO or CLI subprocesses
def test_missing_programs_and_pseudopotentials_are_named(tmp_path):
    ase.io.write(tmp_path / "in.xyz", [structure(0)])
    base = [sys.executable, "-m", "ferronn.label", "--in", str(tmp_path / "in.xyz"), "--out", str(tmp_path / "o.xyz")]
    cases = [(["--set", "qe.pw_command=/nowhere/pw.x", "--set", f"qe.pseudo_dir={PSEUDOS}"],
              "qe.pw_command: '/nowhere/pw.x' not found"),
             (["--set", f"qe.pseudo_dir={tmp_path}"], f"file '{tmp_path}/Ba-sp.upf' for element 'Ba' does not exist"),
             (["--set", "qe.kpts=[4,4]"], "qe.kpts must be 3 positive ints")]
    for extra, message in cases:
        proc = subprocess.run(base + extra, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.xyz").exists()
