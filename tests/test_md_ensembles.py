"""Torch MD engine against references: ASE's velocity Verlet step for step, NVE drift over 10 ps, thermostat and
barostat averages on a Lennard-Jones solid (forces and stress by autograd), and the NaN / close-contact guard."""

from __future__ import annotations

import ase
import ase.build
import numpy as np
import pytest
import torch

from ferronn.errors import SimulationError
from ferronn.md.config import MDConfig
from ferronn.md.engine import Simulation
from ferronn.models.analytic import ConstantBornModel, HarmonicModel, LennardJonesModel
from ferronn.units import ASE_TIME_UNIT_FS
from helpers import ROOT, build_model, require_shared

ARGON = dict(epsilon=0.0104, sigma=3.40, r_max=6.5)  # eV, Å: the textbook Ar parameters


def _config(**kw):
    base = dict(steps=0, equilibration_steps=0, log_every=10 ** 9, trajectory_every=0, restart_every=0,
                device="cpu", dtype="float64")
    return MDConfig(**{**base, **kw})


def _argon(repeat=2, a=5.30):
    atoms = ase.build.bulk("Ar", "fcc", a=a, cubic=True).repeat(repeat)
    return atoms, LennardJonesModel(ARGON["epsilon"], ARGON["sigma"], [18], ARGON["r_max"])


def _fit_slope(t, y):
    return np.polyfit(np.asarray(t), np.asarray(y), 1)[0]


@pytest.mark.slow  # long real-data run (135-atom cell / 600 steps of the trained models)
def test_velocity_verlet_matches_ase_step_for_step(qe_frames):
    """Same MACE weights, masses (ase.data.atomic_masses) and initial momenta: positions agree to 1e-6 Å."""
    import ase.io
    from ase.md.verlet import VelocityVerlet

    from ferronn import FerroCalculator

    atoms = ase.io.read(require_shared(), index=0)
    assert len(atoms) == 135
    energy = build_model(qe_frames)
    sim = Simulation(_config(ensemble="nve", dt_fs=1.0, temperatures=[300.0], seed=4), energy, None, atoms,
                     out="unused")
    ref = atoms.copy()
    ref.set_momenta(sim.state.momenta.numpy() * ASE_TIME_UNIT_FS)  # amu·Å/fs → ASE's momentum unit
    np.testing.assert_array_equal(ref.get_masses(), sim.state.masses.numpy())
    ref.calc = FerroCalculator(energy, device="cpu", dtype=torch.float64, skin=0.0)
    dyn = VelocityVerlet(ref, timestep=1.0 / ASE_TIME_UNIT_FS)
    for _ in range(50):
        sim.state = sim.step_fn(sim.state, sim.forces)
    dyn.run(50)
    moved = np.abs(ref.positions - atoms.positions).max()
    assert moved > 0.05, "atoms hardly moved: the comparison would be vacuous"
    np.testing.assert_allclose(sim.state.positions.numpy(), ref.positions, atol=1e-6, rtol=0)


@pytest.mark.slow  # long real-data run (135-atom cell / 600 steps of the trained models)
def test_nve_drift_with_and_without_field(qe_frames):
    """dt = 1 fs, 300 K, float64, 0.6 ps: the linear drift of H = K + U0 − M·E is ≤ 1e-4 eV/atom/ps, and no larger
    under a constant field (M integrated with the trapezoid rule from the Z* used in the forces). The ≥ 10 ps run
    with the trained BaTiO3 models is benchmarks/nve_drift.py (0.6 ps here keeps CI fast)."""
    from ferronn.models.loading import load

    # A trained potential (the shipped 5-atom-cell models): an untrained one has no stable minimum at 300 K.
    atoms = ase.Atoms(numbers=qe_frames[0]["atomic_numbers"], positions=qe_frames[0]["positions"],
                      cell=qe_frames[0]["cell"], pbc=True)
    energy, born = (load(ROOT / "checkpoints" / "batio3-qe-small" / f"{k}.ckpt") for k in ("energy", "born"))
    cfg = _config(ensemble="nve", dt_fs=1.0, temperatures=[300.0], fields=[[0, 0, 0], [0.01, -0.02, 0.03]])
    sim = Simulation(cfg, energy, born, atoms, out="unused")
    steps, every = 600, 20
    times, enthalpy = [], []
    for i in range(steps // every):
        for _ in range(every):
            sim.state = sim.step_fn(sim.state, sim.forces)
        times.append(float(sim.state.time) / 1000.0)  # ps
        enthalpy.append(sim.enthalpy().numpy() / len(atoms))
    enthalpy = np.array(enthalpy)
    drift = np.abs([_fit_slope(times, enthalpy[:, b]) for b in range(2)])  # eV/atom/ps
    assert times[-1] >= 0.6
    assert drift[0] <= 1e-4 and drift[1] <= max(1e-4, 2 * drift[0]), drift
    work = abs(float((sim.state.dipole[1] * sim.state.field[1]).sum())) / len(atoms)
    assert work > 10 * drift[1] * times[-1], "the field did no work worth mentioning: the field check is vacuous"


@pytest.mark.slow  # long MD run (ensemble statistics)
@pytest.mark.parametrize("ensemble, conserved", [("nvt_langevin", False), ("nvt_nose_hoover", True)])
def test_thermostats_hold_the_target_temperature(ensemble, conserved):
    """Mean T within 2% of the target, from 3N−3 degrees of freedom when momentum is conserved, else 3N."""
    atoms, lj = _argon()
    targets = [40.0, 60.0]
    # 6 ps at 10 fs (argon's fastest phonon period is ~0.5 ps); a 100 fs Nose-Hoover time decorrelates the
    # thermostat in time for 8 replicas per target to pin the mean to ~0.5% (three seeds: within 0.6%).
    cfg = _config(ensemble=ensemble, dt_fs=10.0, temperatures=targets, copies=8, friction_per_fs=0.01,
                  tau_t_fs=100.0, steps=600, equilibration_steps=150, seed=7)
    cfg.dielectric.fluctuation = False
    sim = Simulation(cfg, lj, None, atoms, out="unused")
    assert sim.momentum_conserved is conserved
    summary = _run_quietly(sim)
    mean = np.array(summary["temperature"]["mean"])
    per_target = mean.reshape(2, 8).mean(1)  # 8 replicas × 32 atoms per target
    np.testing.assert_allclose(per_target, targets, rtol=0.02)


@pytest.mark.slow  # long MD run (ensemble statistics)
def test_npt_holds_the_target_pressure_with_a_free_cell_shape():
    """Anisotropic stochastic cell rescaling: mean pressure within 2σ (block averages) of the target, and the cell
    shape is free: an fcc crystal started with c/a = 1.06 relaxes to c/a = 1 (mean cell lengths within 1.5%)."""
    atoms, lj = _argon(repeat=3, a=5.35)
    atoms.set_cell(atoms.cell @ np.diag([1.0, 1.0, 1.06]), scale_atoms=True)
    target_gpa = 0.1
    cfg = _config(ensemble="npt", dt_fs=5.0, temperatures=[20.0], copies=2, pressure_gpa=target_gpa,
                  friction_per_fs=0.01, tau_p_fs=200.0, bulk_modulus_gpa=3.0, steps=1500,
                  equilibration_steps=600, seed=11)
    cfg.dielectric.fluctuation, cfg.dielectric.block = False, 100
    sim = Simulation(cfg, lj, None, atoms, out="unused")
    summary = _run_quietly(sim)
    mean, err = (np.array(summary["pressure"][k]) for k in ("mean", "error"))
    mean, err = mean.mean(), np.sqrt((err ** 2).sum()) / len(err)  # independent replicas
    assert abs(mean - target_gpa) <= 2 * err, (mean, err)
    assert err < 0.01, err  # the error bar itself is meaningful (≪ the 0.1 GPa target)
    lengths = np.array(summary["cell_lengths"]["mean"]).mean(0)
    assert np.abs(lengths / lengths.mean() - 1.0).max() < 0.015, lengths


def _run_quietly(sim):
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        sim.out = out
        return sim.run(progress=False)


def _tethered(tmp_path, guard_every=5):
    atoms = ase.Atoms("BaTiO3", scaled_positions=[[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]],
                      cell=4.0 * np.eye(3), pbc=True)
    energy = HarmonicModel(atoms.positions, [2.0, 3.0, 1.5, 1.5, 1.5], atoms.numbers, r_max=3.0)
    cfg = _config(ensemble="nve", dt_fs=1.0, copies=2, guard_every=guard_every)
    return Simulation(cfg, energy, ConstantBornModel(torch.zeros(5, 3, 3), atoms.numbers), atoms,
                      out=str(tmp_path))


def test_guard_stops_on_nan_and_saves_the_last_good_frame(tmp_path):
    import ase.io

    sim = _tethered(tmp_path)
    sim.run(10, progress=False)
    good = sim.state.positions.clone()
    positions = sim.state.positions.clone()
    positions[7, 1] = float("nan")  # replica 1
    sim.state = sim.state.replace(positions=positions)
    with pytest.raises(SimulationError, match=r"step 15: replica 1: non-finite .*step 10") as info:
        sim.run(10, progress=False)
    assert "replica 0" not in str(info.value)
    frames = ase.io.read(tmp_path / "last_good.extxyz", ":")
    assert [f.info["replica"] for f in frames] == [0, 1]
    np.testing.assert_allclose(np.concatenate([f.positions for f in frames]), good.numpy(), atol=1e-7)  # extxyz keeps 8 decimals


def test_guard_stops_when_atoms_come_closer_than_half_an_angstrom(tmp_path):
    sim = _tethered(tmp_path, guard_every=1)
    positions = sim.state.positions.clone()
    positions[1] = positions[0] + torch.tensor([0.3, 0.0, 0.0], dtype=positions.dtype)  # replica 0: Ti onto Ba
    # The harmonic tether pulls Ti back only slowly: the pair stays within 0.5 Å for the next step.
    sim.state = sim.state.replace(positions=positions, momenta=torch.zeros_like(positions))
    with pytest.raises(SimulationError, match=r"replica 0: two atoms closer than 0.5 Å"):
        sim.run(3, progress=False)
    assert (tmp_path / "last_good.extxyz").exists()


class _PositionBorn(torch.nn.Module):
    """Z*_κ = q_κ I + terms linear in positions: ``gradient=True`` is ∂M/∂r of M_a = Σ q r_a + β Σ r_a²
    (integrable); ``gradient=False`` lets atom 0's charge follow atom 1's x (non-integrable)."""

    kind = "born"

    def __init__(self, atomic_numbers, gradient: bool):
        super().__init__()
        self.register_buffer("q", torch.tensor([2.0, -2.0], dtype=torch.float64))
        self.atomic_numbers, self.r_max, self.gradient = sorted(set(atomic_numbers)), 2.0, gradient

    def forward(self, batch):
        from ferronn import keys as K

        r = batch[K.POSITIONS]
        local = torch.arange(r.shape[0]) - batch[K.PTR][batch[K.BATCH]]
        eye = torch.eye(3, dtype=r.dtype)
        z = self.q[local % 2][:, None, None] * eye
        if self.gradient:
            z = z + 0.5 * torch.diag_embed(r)  # ∂(β r_a²)/∂r_b = 2β r_a δ_ab, β = 0.25
        else:
            partner_x = r[batch[K.PTR][batch[K.BATCH]] + 1, 0]
            z = z + 2.0 * ((local % 2 == 0).to(r.dtype) * partner_x)[:, None, None] * eye
        return {K.BORN_CHARGES: z}


def test_loop_integral_separates_integrable_from_path_dependent_born_charges():
    from ferronn.md.integrability import loop_integral

    atoms = ase.Atoms("NaCl", positions=[[0, 0, 0], [1.4, 1.5, 1.3]], cell=2.8 * np.eye(3), pbc=True)
    constant = loop_integral(ConstantBornModel(torch.tensor([np.eye(3), -np.eye(3)]), atoms.numbers), atoms)
    assert constant["loop_integral_max_eA"] < 1e-13
    gradient = loop_integral(_PositionBorn(atoms.numbers, gradient=True), atoms, points=128)
    curl = loop_integral(_PositionBorn(atoms.numbers, gradient=False), atoms, points=128)
    assert gradient["non_integrable_fraction"] < 1e-3, gradient  # trapezoid quadrature error only
    assert curl["non_integrable_fraction"] > 0.01, curl


@pytest.mark.slow  # subprocess, 135-atom real-data MD
def test_dielectric_recipe_runs_from_the_command_line(tmp_path):
    """recipes/batio3_dielectric.yaml with the shipped models, a few steps: every replica logged, trajectories
    readable by ASE, a summary with temperatures and the replica fields (±E along x, y, z)."""
    import json
    import subprocess
    import sys

    import ase.io

    require_shared()
    cmd = [sys.executable, "-m", "ferronn.md", "--config", "recipes/batio3_dielectric.yaml", "--out", str(tmp_path),
           "--steps", "4", "--no-progress", "--set", "equilibration_steps=0", "--set", "copies=1",
           "--set", "trajectory_every=2", "--set", "log_every=2", "--set", "device=cpu"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["replicas"] == 7 and summary["steps"] == 4 and summary["dtype"] == "float32"
    fields = np.array(summary["fields_V_per_A"])
    assert sorted(np.abs(fields).max(1).tolist()) == pytest.approx([0.0] + [0.005] * 6)
    frames = ase.io.read(tmp_path / "trajectory_r3.extxyz", ":")
    assert [f.info["step"] for f in frames] == [2, 4] and len(frames[0]) == 135
    rows = np.loadtxt(tmp_path / "log.csv", delimiter=",", skiprows=1, usecols=(0, 3))
    assert rows.shape == (14, 2) and np.all((rows[:, 1] > 50) & (rows[:, 1] < 1000))  # steps 2, 4 × 7 replicas


def test_overlap_met_by_a_neighbour_rebuild_also_stops_with_the_last_good_frame(tmp_path):
    sim = _tethered(tmp_path, guard_every=100)
    sim.run(3, progress=False)
    positions = sim.state.positions.clone()
    positions[6] = positions[5] + torch.tensor([0.1, 0.0, 0.0], dtype=positions.dtype)  # replica 1, far from its site
    sim.state = sim.state.replace(positions=positions)
    with pytest.raises(SimulationError, match=r"structure 1: atoms 0 and 1 are 0.1\d* Å apart.*\(step 0\)"):
        sim.run(3, progress=False)
    assert (tmp_path / "last_good.extxyz").exists()
