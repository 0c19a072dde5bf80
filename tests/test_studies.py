"""Studies: the analysis physics on cases with known answers, and each study end to end on a tiny cell (the shipped
5-atom models) writing a CSV and a PNG whose plotted numbers are the CSV's."""

from __future__ import annotations

import json
import os

import ase
import numpy as np
import pytest
import torch
from ase.io import read, write

from ferronn.data.datamodule import default_data_path
from ferronn.md.config import MDConfig
from ferronn.md.engine import Simulation
from ferronn.models.analytic import ConstantBornModel, HarmonicModel
from ferronn.study import dielectric, hysteresis, phases, spectrum
from ferronn.study.__main__ import main as study_main
from ferronn.study.outputs import read_csv
from ferronn.units import (AMU_A2_PER_FS2_IN_EV, E_PER_A2_TO_UC_PER_CM2, EPSILON0_E_PER_V_A,
                           RAD_PER_FS_PER_WAVENUMBER, atomic_masses)
from helpers import ROOT

QE_SMALL = ROOT / "checkpoints" / "batio3-qe-small"
FRAC = np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


# --- phases: classifier on constructed structures ----------------------------------------------------------------

def _perovskite(direction, rng, repeat=2, shift=0.15, noise=0.03, c_over_a=1.0):
    atoms = ase.Atoms("BaTiO3", scaled_positions=FRAC, cell=np.diag([4.0, 4.0, 4.0 * c_over_a]), pbc=True)
    atoms = atoms.repeat((repeat, repeat, repeat))
    d = np.asarray(direction, dtype=float)
    if d.any():
        atoms.positions[atoms.numbers == 22] += shift * d / np.linalg.norm(d)
    atoms.positions += noise * rng.standard_normal(atoms.positions.shape)
    return atoms


def _nominal_born(atoms):
    """Isotropic Z* satisfying the sum rule: Ba 2.75, Ti 7.25, O −10/3 (e)."""
    z = {56: 2.75, 22: 7.25, 8: -10.0 / 3.0}
    return np.array([z[int(n)] * np.eye(3) for n in atoms.numbers])


@pytest.mark.parametrize("direction,expected", [((0, 0, 1), "T"), ((0, 1, 1), "O"), ((1, 1, 1), "R"),
                                                ((0, 0, 0), "C"), ((1, 0, 0), "T"), ((-1, 0, 1), "O")])
def test_classifier_on_displaced_perovskites_with_thermal_noise(direction, expected):
    rng = np.random.default_rng(7)
    for trial in range(3):
        atoms = _perovskite(direction, rng)
        p = phases.local_polarization(atoms, _nominal_born(atoms), [2, 2, 2])
        assert phases.classify(p, threshold=5.0, tolerance=0.35) == expected, (direction, p)
        if expected != "C":  # the polarization points along the Ti shift (Z*_Ti·u / Ω plus the noise)
            d = np.asarray(direction, dtype=float) / np.linalg.norm(direction)
            assert p @ d / np.linalg.norm(p) > 0.9
            assert np.linalg.norm(p) == pytest.approx(7.25 * 0.15 * 8 / atoms.get_volume() * E_PER_A2_TO_UC_PER_CM2, rel=0.2)


def test_pseudo_cubic_lattice_and_angles():
    cell = np.array([[8.0, 0, 0], [0.2, 8.0, 0], [0, 0, 8.4]])
    lat = phases.pseudo_cubic(cell, [2, 2, 2])
    assert lat["a"] == pytest.approx(4.0) and lat["c"] == pytest.approx(4.2)
    assert lat["gamma"] < 90 and lat["alpha"] == pytest.approx(90) and lat["beta"] == pytest.approx(90)


# --- hysteresis: P_r and E_c of a known loop ------------------------------------------------------------------------

def test_cycle_analysis_recovers_remanence_and_coercive_field():
    """A tanh loop with P_s = 30 μC/cm², E_c = 0.05 V/Å, seen as ΔP from its +P start (offset −P_s, as MD gives
    it): P_r = P_s tanh(E_c/w), E_c recovered, tips closed."""
    e_max, ec, w, ps = 0.2, 0.05, 0.02, 30.0
    t = np.linspace(0, 1, 2001)[1:]
    e = e_max * (1 - 4 * np.abs(np.remainder(t + 0.25, 1.0) - 0.5))  # triangle: 0 → E_max → 0 → −E_max → 0
    rising = np.gradient(e) > 0
    p = np.where(rising, ps * np.tanh((e - ec) / w), ps * np.tanh((e + ec) / w)) - ps
    out = hysteresis.analyse_cycle(e, p, e_max)
    assert out["switched"]
    assert (out["P_r_plus"] - out["P_r_minus"]) / 2 == pytest.approx(ps * np.tanh(ec / w), rel=1e-3)
    assert (out["E_c_plus"] - out["E_c_minus"]) / 2 == pytest.approx(ec, rel=1e-3)
    assert out["P_top_rising"] == pytest.approx(out["P_top_falling"], abs=0.05)


def test_a_noisy_down_switch_is_not_read_as_an_up_switch():
    """One sine cycle from a poled start (allegro-pol's protocol, one cycle): the cell switches down at −E_c and
    would switch back up only in the next cycle. Thermal noise at the jump makes ΔP recross the loop's centre
    upwards on the falling branch; that crossing is not an up-switch (it made E_c ≈ 0 before), so the cycle has
    a down-switch only, at −E_c."""
    e_max, ec, ps = 0.3636, 0.11, 55.0
    t = np.linspace(0, 1, 5001)[1:]
    e = e_max * np.sin(2 * np.pi * t)
    falling = np.gradient(e) < 0
    switched = np.maximum.accumulate(falling & (e <= -ec))
    p = np.where(switched, -2 * ps, 0.0) + 40.0 * e
    jump = int(np.argmax(switched))
    p[jump:jump + 6] = [-60.0, -45.0, -70.0, -48.0, -90.0, -100.0]  # down through the centre, up, down again
    out = hysteresis.analyse_cycle(e, p, e_max)
    assert np.isnan(out["E_c_plus"]) and not out["switched"]
    assert out["E_c_minus"] == pytest.approx(-ec, abs=2e-3)
    assert (out["P_r_plus"] - out["P_r_minus"]) / 2 == pytest.approx(ps, abs=0.1)


def test_ramp_switch_detection_ignores_linear_response():
    e = np.linspace(0, 0.1, 200)
    linear = 30.0 - 400.0 * e  # a big dielectric response, no switching
    assert phases is not None and hysteresis._excess_drop(e, linear).max() < 1e-9
    switched = linear - 60.0 * (e > 0.07)
    assert hysteresis._excess_drop(e, switched).max() == pytest.approx(60.0)
    # A thermal switch (a drop of 60 centred on 0.07 V/Å, width 0.003) under noise of 3 μC/cm² per sample, as a
    # 135-atom cell at 300 K gives: the switching field is where the drop passes switch_drop/2 = 15, i.e.
    # 0.07 + 0.003 ln(15/45), for every noise draw (the noisy slope's minimum landed at 0.0, 0.083, 0.1 V/Å).
    expected = 0.07 + 0.003 * np.log(15.0 / 45.0)
    for seed in range(5):
        noise = np.random.default_rng(seed).normal(0.0, 3.0, e.size)
        noisy = linear - 60.0 / (1.0 + np.exp(-(e - 0.07) / 0.003)) + noise
        excess = hysteresis._excess_drop(e, noisy)
        assert hysteresis.switching_field(e, excess, 30.0) == pytest.approx(expected, abs=0.002)


# --- spectrum: harmonic oscillators with constant Z* -----------------------------------------------------------------

@pytest.mark.slow  # long MD run (a whole study)
def test_spectrum_of_harmonic_charges_peaks_at_their_frequencies(tmp_path):
    """Ti (k = 3 eV/Å²) and one O (k = 0.4) carry Z* = ±4: χ(ω) = Σ Z²/(ε0 Ω m (ω_κ² − ω²)), so Im χ peaks at
    ω_κ = sqrt(k/m) and χ(0) = Σ Z²/(k ε0 Ω). (A weak Langevin friction, 5e-4/fs, samples the canonical
    amplitudes and broadens the lines by ~3 cm⁻¹.)"""
    atoms = ase.Atoms("BaTiO3", scaled_positions=FRAC, cell=4.0 * np.eye(3), pbc=True)
    stiffness = [10.0, 3.0, 0.4, 10.0, 10.0]
    born = np.zeros((5, 3, 3))
    born[1], born[2] = 4 * np.eye(3), -4 * np.eye(3)
    cfg = MDConfig(ensemble="nvt_langevin", friction_per_fs=0.0005, dt_fs=6.0, temperatures=[300.0], copies=24,
                   steps=2000, equilibration_steps=0, log_every=2, trajectory_every=0, restart_every=0, skin=0.5,
                   seed=1, dtype="float64", device="cpu")
    sim = Simulation(cfg, HarmonicModel(atoms.positions, stiffness, atoms.numbers),
                     ConstantBornModel(torch.tensor(born), atoms.numbers), atoms, out=str(tmp_path))
    sim.run(progress=False)
    times, m, volumes = spectrum.dipole_series(str(tmp_path), 0)
    dt = times[1] - times[0]
    c = spectrum.autocorrelation(m, int(3000 / dt))
    grid = np.arange(0.0, 250.0, 1.0)
    chi = spectrum.susceptibility(c, dt, grid, float(volumes.mean()), 300.0)
    masses = atomic_masses()
    expected = [np.sqrt(k / (masses[z] * AMU_A2_PER_FS2_IN_EV)) / RAD_PER_FS_PER_WAVENUMBER
                for k, z in ((3.0, 22), (0.4, 8))]
    absorption = chi[:, 0, 0].imag + chi[:, 1, 1].imag + chi[:, 2, 2].imag
    peaks = [k for k in range(1, len(grid) - 1) if absorption[k] >= absorption[k - 1] and absorption[k] >= absorption[k + 1]]
    top = sorted(peaks, key=lambda k: -absorption[k])[:2]
    assert sorted(grid[top]) == pytest.approx(sorted(expected), abs=6.0), (grid[top], expected)
    static = 16.0 * (1 / 3.0 + 1 / 0.4) / (EPSILON0_E_PER_V_A * atoms.get_volume())
    assert np.mean([chi[0, a, a].real for a in range(3)]) == pytest.approx(static, rel=0.25)


# --- each study end to end on the shipped 5-atom models --------------------------------------------------------------

def _md_args(tmp_path, supercell="[1,1,1]", **extra):
    start = tmp_path / "start.xyz"
    write(start, read(default_data_path(), 6))
    items = {"md.energy": QE_SMALL / "energy.ckpt", "md.born": QE_SMALL / "born.ckpt", "md.structure": start,
             "md.supercell": supercell, "md.dtype": "float64", "md.device": "cpu", "md.dt_fs": 2.0,
             "md.log_every": 5, "md.trajectory_every": 10, "md.restart_every": 20, **extra}
    return [arg for k, v in items.items() for arg in ("--set", f"{k}={v}")]


def _run(study, tmp_path, capsys, *args):
    out = tmp_path / study
    code = study_main([study, "--out", str(out), *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    return out, json.loads(captured.out.strip().splitlines()[-1])


def _plotted(fig, axis=0):
    return [(line.get_xdata(), line.get_ydata()) for line in fig.axes[axis].lines]


@pytest.mark.slow  # long MD run (a whole study)
def test_dielectric_study_end_to_end_and_resume(tmp_path, capsys, monkeypatch):
    args = _md_args(tmp_path, **{"md.steps": 30, "md.equilibration_steps": 4, "md.dielectric.block": 5,
                                 "md.dielectric.finite_field": "true", "md.dielectric.field": 0.01,
                                 "dielectric.temperatures": "[300,200]"})
    out, result = _run("dielectric", tmp_path, capsys, *args)
    cols = read_csv(out / "dielectric.csv")
    assert cols["T_K"] == [200.0, 300.0] and (out / "dielectric.png").stat().st_size > 5000
    fig = dielectric.plot(str(out / "dielectric.csv"))
    plotted = _plotted(fig)
    assert any(np.allclose(y, cols["eps_fluct_xx"], equal_nan=True) for _, y in plotted)
    assert any(np.allclose(y, cols["eps_field_zz"], equal_nan=True) for _, y in plotted)
    # Resume: a second call redoes no temperature (no MD is constructed) and rewrites the same table.
    monkeypatch.setattr(dielectric, "run_unit", lambda *a, **k: pytest.fail("a finished temperature was redone"))
    _, again = _run("dielectric", tmp_path, capsys, *args)
    assert read_csv(out / "dielectric.csv") == cols


def test_curie_weiss_fit_recovers_c_and_t0():
    t = np.array([400.0, 450.0, 500.0, 600.0])
    eps = 1.2e5 / (t - 380.0)
    cols = {"T_K": t.tolist(), **{f"eps_{e}_zz": eps.tolist() for e in ("fluct", "field")},
            **{f"eps_{e}_zz_err": (0.01 * eps).tolist() for e in ("fluct", "field")}}
    fit = dielectric.curie_weiss(cols, "zz")
    assert fit["C_K"] == pytest.approx(1.2e5, rel=1e-6) and fit["T0_K"] == pytest.approx(380.0, abs=1e-3)


@pytest.mark.slow  # long MD run (a whole study)
def test_hysteresis_study_end_to_end(tmp_path, capsys):
    args = _md_args(tmp_path, **{"hysteresis.amplitude": 0.3, "hysteresis.period_fs": 80.0,
                                 "hysteresis.cycles": 3, "hysteresis.sample_every": 2, "md.copies": 2})
    out, result = _run("hysteresis", tmp_path, capsys, *args)
    cols = read_csv(out / "hysteresis.csv")
    assert sorted(set(cols["cycle"])) == [0.0, 1.0, 2.0] and (out / "hysteresis.png").stat().st_size > 5000
    assert result["cycles_used"] == 2 and np.isfinite(result["P_r_uC_cm2"])
    fig = hysteresis.plot(str(out / "hysteresis.csv"), result, 1)
    cycle0 = np.array(cols["cycle"]) == 0
    replica0 = np.array(cols["replica"]) == 0
    x, y = _plotted(fig)[0]
    np.testing.assert_allclose(x, np.array(cols["E_MV_per_cm"])[cycle0 & replica0])
    np.testing.assert_allclose(y, np.array(cols["P_uC_cm2"])[cycle0 & replica0])
    assert max(abs(v) for v in cols["E_V_per_A"]) == pytest.approx(0.3, rel=0.1)  # sampled near the tips


@pytest.mark.slow  # four short MD units and their plots
def test_hysteresis_sweep_units_resume_and_single_samples(tmp_path, capsys, monkeypatch):
    """Temperatures × periods: one unit each (own folder, resumable); one kept cycle of one replica gives no error
    bar (null) and leaves closure undecided (null), never NaN or false; E_c(T) is drawn beside allegro-pol's points."""
    args = _md_args(tmp_path, **{"hysteresis.amplitude": 0.3, "hysteresis.cycles": 1, "hysteresis.discard_cycles": 0,
                                 "hysteresis.sample_every": 2, "hysteresis.temperatures": "[300,100]",
                                 "hysteresis.periods_fs": "[40,20]", "hysteresis.shape": "cosine"})
    seeds, resumed = {}, hysteresis.resumed_simulation

    def seeded(md, models, atoms, folder):  # records each unit's seed, then runs it as before
        seeds.setdefault(folder, md.seed)
        return resumed(md, models, atoms, folder)

    monkeypatch.setattr(hysteresis, "resumed_simulation", seeded)
    out, result = _run("hysteresis", tmp_path, capsys, *args)
    units = result["units"]
    # Each unit has its own random stream, a function of the recipe's seed and the unit's name only.
    assert len(set(seeds.values())) == 4 and hysteresis.unit_seed(0, "") == 0
    assert {os.path.basename(f): v for f, v in seeds.items()} == {
        n: hysteresis.unit_seed(0, n) for n in ("T300K_P40fs", "T300K_P20fs", "T100K_P40fs", "T100K_P20fs")}
    assert sorted((u["temperature_K"], u["period_fs"]) for u in units) == [(100, 20), (100, 40), (300, 20), (300, 40)]
    assert all((out / f"T{t:g}K_P{q:g}fs" / "restart.pt").exists() for t in (300, 100) for q in (40, 20))
    for u in units:
        assert u["samples_used"] == 1 and u["P_r_err_uC_cm2"] is None and u["E_c_err_MV_per_cm"] is None
        assert u["loop_closes"] is None and all(v["closed"] is None for v in u["closes"].values())
    summary = read_csv(out / "hysteresis_summary.csv")
    assert len(summary["T_K"]) == 4 and summary["P_r_err_uC_cm2"] == [""] * 4
    cols = read_csv(out / "hysteresis.csv")
    expected = 0.3 * np.cos(2 * np.pi * np.array(cols["time_fs"]) / np.array(cols["period_fs"]))
    np.testing.assert_allclose(cols["E_V_per_A"], expected, atol=1e-9)  # a cosine: starts at +E_max
    np.testing.assert_allclose(np.array(cols["E_MV_per_cm"]), 100.0 * np.array(cols["E_V_per_A"]), rtol=1e-12)
    fig = hysteresis.plot_coercive_temperature(units)
    assert any(len(x) == 2 and np.allclose(x, [280.0, 350.0]) for x, _ in _plotted(fig))  # allegro-pol's endpoints
    assert (out / "coercive_field_T.png").stat().st_size > 5000 and (out / "coercive_field_period.png").exists()
    # A single unit with one sample titles its loop without "nan" and says so.
    title = hysteresis.plot(str(out / "hysteresis.csv"), {**units[0], "loop_closes": None}).axes[0].get_title()
    assert "nan" not in title and "no error bar" in title and "undecided" in title
    # Resume: nothing is rerun.
    monkeypatch.setattr(hysteresis, "resumed_simulation", lambda *a, **k: pytest.fail("a finished unit was redone"))
    _, again = _run("hysteresis", tmp_path, capsys, *args)
    assert [u["P_r_uC_cm2"] for u in again["units"]] == [u["P_r_uC_cm2"] for u in units]


@pytest.mark.slow  # long MD run (a whole study)
def test_phases_study_end_to_end(tmp_path, capsys):
    args = _md_args(tmp_path, supercell="[2,2,2]", **{"md.ensemble": "npt", "md.steps": 20,
                                                      "md.equilibration_steps": 0, "md.dielectric.block": 5,
                                                      "phases.temperatures": "[100,300]",
                                                      "phases.pseudo_cubic": "[2,2,2]"})
    out, result = _run("phases", tmp_path, capsys, *args)
    cols = read_csv(out / "phases.csv")
    assert cols["T_K"] == [100.0, 300.0] and set(cols["phase"]) <= {"C", "T", "O", "R"}
    assert 3.8 < cols["a_A"][0] < 4.3 and (out / "phases.png").stat().st_size > 5000
    fig = phases.plot(str(out / "phases.csv"))
    assert np.allclose(_plotted(fig, 1)[2][1], cols["c_A"])


@pytest.mark.slow  # long MD run (a whole study)
def test_spectrum_study_end_to_end(tmp_path, capsys):
    args = _md_args(tmp_path, **{"md.ensemble": "nve", "md.steps": 80, "md.equilibration_steps": 0,
                                 "md.copies": 2, "spectrum.max_lag_fs": 60.0, "spectrum.sample_every": 2})
    out, result = _run("spectrum", tmp_path, capsys, *args)
    cols = read_csv(out / "spectrum.csv")
    assert cols["wavenumber_cm"][0] == 0.0 and (out / "spectrum.png").stat().st_size > 5000
    fig = spectrum.plot(str(out / "spectrum.csv"))
    assert np.allclose(_plotted(fig, 0)[2][1], cols["chi_zz_im"])
    assert np.allclose(_plotted(fig, 1)[0][1], cols["chi_xx_re"])


@pytest.mark.parametrize("study", ["dielectric", "hysteresis", "phases", "spectrum"])
def test_shipped_study_recipes_load(study, capsys):
    assert study_main([study, "--config", str(ROOT / "recipes" / f"study_{study}.yaml"), "--print-config"]) == 0
    assert f"{study}:" in capsys.readouterr().out


@pytest.mark.slow  # long MD run (a whole study)
def test_phase_ramp_finds_the_mean_field_double_well_transition(tmp_path):
    """Ti in quartic wells coupled through their mean (c < 0: ⟨100⟩ easy axes), 216 sites: heating through the
    known mean-field T_c gives tetragonal below and cubic above, the transition between the bracketing points."""
    from ferronn.models.analytic import MeanFieldDoubleWellModel
    from ferronn.study.config import StudyConfig

    atoms = ase.Atoms("BaTiO3", scaled_positions=FRAC, cell=4.0 * np.eye(3), pbc=True).repeat((6, 6, 6))
    model = MeanFieldDoubleWellModel(atoms.positions, atoms.numbers, 22, a=1.0, b=25.0, c=-18.0, coupling=2.0,
                                     stiffness=5.0)
    tc = model.critical_temperature()
    assert 350 < tc < 430
    born = ConstantBornModel(torch.tensor(_nominal_born(atoms)), atoms.numbers)
    config = StudyConfig(out=str(tmp_path / "phases"))
    config.md = MDConfig(ensemble="nvt_langevin", dt_fs=4.0, friction_per_fs=0.01, steps=400, equilibration_steps=200,
                         trajectory_every=20, restart_every=0, log_every=100, dtype="float64", device="cpu", seed=2)
    config.phases.temperatures = [0.4 * tc, 0.75 * tc, 2.0 * tc]
    config.phases.pseudo_cubic = [6, 6, 6]
    result = phases.run(config, (model, born, atoms))
    cols = read_csv(str(tmp_path / "phases" / "phases.csv"))
    assert list(result["phases"].values()) == ["T", "T", "C"], cols
    (transition,) = result["transitions"]
    assert 0.75 * tc < transition["T_K"] < 2.0 * tc
    # Mean-field order parameter at T → 0 is m0 = sqrt((J − a)/(b + c)) along an axis; at 0.4 T_c it is ~0.9 m0.
    p0 = 7.25 * np.sqrt(1.0 / 7.0) / 64.0 * E_PER_A2_TO_UC_PER_CM2
    assert 0.8 * p0 < cols["P_abs_uC_cm2"][0] < p0


def test_ledger_resumes_a_study_that_predates_new_md_settings_but_not_a_changed_one(tmp_path):
    """A study.json written before a setting existed (here: polarization_layers and a nested dielectric key are
    missing from it) resumes, since it ran with their defaults; a setting that really differs is refused."""
    from ferronn.errors import ConfigError
    from ferronn.study.outputs import Ledger

    md = MDConfig(temperatures=[300.0], steps=10)
    Ledger(str(tmp_path), "hysteresis", md).record("cycle0", {"replicas": []})
    path = tmp_path / "study.json"
    saved = json.loads(path.read_text())
    del saved["md"]["polarization_layers"]
    saved["md"]["dielectric"].pop(sorted(saved["md"]["dielectric"])[0])
    path.write_text(json.dumps(saved))
    assert Ledger(str(tmp_path), "hysteresis", md).get("cycle0") == {"replicas": []}
    with pytest.raises(ConfigError, match="other md settings \\(polarization_layers\\)"):
        Ledger(str(tmp_path), "hysteresis", MDConfig(temperatures=[300.0], steps=10, polarization_layers="z"))
    with pytest.raises(ConfigError, match="other md settings \\(temperatures\\)"):
        Ledger(str(tmp_path), "hysteresis", MDConfig(temperatures=[310.0], steps=10))
