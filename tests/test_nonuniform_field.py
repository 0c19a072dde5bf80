"""Non-uniform fields (a field per region or per atom) and the per-layer local polarization: physics checks.

F_i = F0_i + Z*_iᵀE_i, per-atom dipoles m_i from the trapezoid, H = K + U0 − Σ_i E_i·m_i conserved in NVE under a
static field, region == per-atom array, a uniform field unchanged, bad input one clear line; Ti-centred cell
dipoles on constructed perovskites whose answer is known."""

from __future__ import annotations

import ase
import numpy as np
import pytest
import torch

from ferronn import FerroCalculator
from ferronn.data.graph import SpeciesTable
from ferronn.errors import ConfigError, DataError
from ferronn.field import FieldSchedule, TimeDependentField
from ferronn.local_field import local_amplitudes, parse_regions
from ferronn.md.config import MDConfig
from ferronn.md.engine import Simulation, initial_state
from ferronn.md.forces import ModelForces
from ferronn.md.layers import LayerPolarization
from conftest import build_model
from test_born_model import build_born

HALF_X = {"field": [0.0, 0.0, 0.06], "axis": "x", "lo": 0.0, "hi": 0.5}


@pytest.fixture(scope="module")
def models(qe_frames):
    return build_model(qe_frames), build_born(qe_frames)


def _atoms(frame, repeat=(2, 1, 1), rng=None, amplitude=0.05):
    atoms = ase.Atoms(numbers=frame["atomic_numbers"], positions=frame["positions"], cell=frame["cell"],
                      pbc=True).repeat(repeat)
    atoms.positions += 1e-3  # off the slab bounds: the x = 0 plane must not wrap to s ≈ 1
    if rng is not None:
        atoms.positions += amplitude * rng.standard_normal(atoms.positions.shape)
    return atoms


def _config(**kw):
    base = dict(steps=0, equilibration_steps=0, log_every=10 ** 9, trajectory_every=0, restart_every=0,
                device="cpu", dtype="float64", seed=2)
    return MDConfig(**{**base, **kw})


def _run(sim, steps):
    for _ in range(steps):
        sim.state = sim.step_fn(sim.state, sim.forces)
    return sim


def test_nve_with_a_static_nonuniform_field_conserves_the_enthalpy(qe_frames, models, tmp_path, rng):
    """H = K + U0 − Σ_i E_i·m_i with m_i integrated from Z*_i·dr is conserved like the uniform case (test_md.py)."""
    atoms = _atoms(qe_frames[0], rng=rng)
    atoms.arrays["efield"] = 0.03 * rng.standard_normal((len(atoms), 3))
    cfg = _config(ensemble="nve", dt_fs=0.5, fields=[[0.0, 0.0, 0.0]], field_regions=[HALF_X], field_array="efield")
    sim = Simulation(cfg, *models, atoms, out=str(tmp_path))
    h0 = sim.enthalpy()
    drift = []
    for _ in range(40):
        _run(sim, 1)
        drift.append((sim.enthalpy() - h0).abs())
    drift = torch.stack(drift).max(0).values
    work = sim.field_work()
    assert float(drift[0]) < 2e-3, drift
    assert float(work.abs()[0]) > 10 * float(drift[0]), "the field did work comparable to the tolerance: vacuous"
    # The per-atom dipoles add up to the cell dipole, and W is not M·Ē: the field is really non-uniform.
    torch.testing.assert_close(sim.state.atom_dipoles.sum(0), sim.state.dipole[0], atol=1e-10, rtol=0)
    mean_field = sim.state.atom_field.mean(0)
    assert abs(float(work[0]) - float(sim.state.dipole[0] @ mean_field)) > 10 * float(drift[0])


def test_per_atom_forces_are_born_charges_times_the_local_field(qe_frames, models, rng):
    energy, born = models
    atoms = _atoms(qe_frames[1], rng=rng)
    amp = torch.as_tensor(0.04 * rng.standard_normal((len(atoms), 3)))
    uniform = torch.tensor([[0.01, 0.0, -0.02]], dtype=torch.float64)
    shift = torch.tensor([0.0, 0.02, 0.0], dtype=torch.float64)
    states = []
    for local, fn in ((None, None), (amp, lambda r, t: shift.expand_as(r))):
        state = initial_state([atoms], [300.0], uniform.tolist(), [0.0], SpeciesTable(energy.atomic_numbers),
                              torch.float64, "cpu", torch.Generator().manual_seed(0))
        schedule = FieldSchedule(TimeDependentField(uniform), local, fn)
        states.append(ModelForces(energy, born, field=schedule)(state))
    expected = torch.einsum("na,nab->nb", amp + shift, states[1].born)
    torch.testing.assert_close(states[1].forces - states[0].forces, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(states[1].atom_field, uniform + amp + shift, atol=0, rtol=0)
    assert states[0].atom_field is None  # a uniform schedule stays on today's path


def test_region_on_half_the_cell_equals_the_per_atom_array(qe_frames, models, tmp_path, rng):
    atoms = _atoms(qe_frames[2], rng=rng)
    half = atoms.get_scaled_positions(wrap=True)[:, 0] < 0.5
    assert 0 < half.sum() < len(atoms)
    atoms.arrays["efield"] = np.where(half[:, None], np.array(HALF_X["field"]), 0.0)
    runs = []
    for kw in (dict(field_regions=[HALF_X]), dict(field_array="efield")):
        cfg = _config(ensemble="nvt_langevin", dt_fs=1.0, fields=[[0.01, 0.0, 0.0]], **kw)
        runs.append(_run(Simulation(cfg, *models, atoms, out=str(tmp_path / str(len(runs)))), 4))
    a, b = (r.state for r in runs)
    assert torch.equal(a.atom_field, b.atom_field) and torch.equal(a.positions, b.positions)
    assert torch.equal(a.atom_dipoles, b.atom_dipoles)
    torch.testing.assert_close(runs[0].enthalpy(), runs[1].enthalpy(), atol=0, rtol=0)


def test_uniform_field_as_an_array_gives_todays_numbers(qe_frames, models, tmp_path, rng):
    """A per-atom array equal everywhere to E: the same forces, trajectory and dipole bit for bit as the uniform
    field, and the same H to round-off (Σ_i E·m_i vs E·M); the uniform run carries no per-atom state."""
    atoms = _atoms(qe_frames[3], rng=rng)
    field = [0.02, -0.01, 0.05]
    atoms.arrays["efield"] = np.tile(field, (len(atoms), 1))
    today = _run(Simulation(_config(ensemble="nve", dt_fs=0.5, fields=[field]), *models, atoms,
                            out=str(tmp_path / "u")), 6)
    local = _run(Simulation(_config(ensemble="nve", dt_fs=0.5, fields=[[0.0, 0.0, 0.0]], field_array="efield"),
                            *models, atoms, out=str(tmp_path / "a")), 6)
    assert today.state.atom_field is None and today.state.atom_dipoles is None
    for name in ("positions", "momenta", "forces", "dipole"):
        assert torch.equal(getattr(today.state, name), getattr(local.state, name)), name
    torch.testing.assert_close(today.enthalpy(), local.enthalpy(), atol=1e-11, rtol=0)
    assert float(today.field_work().abs()[0]) > 1e-3


def _one_line(exc_info, *words):
    message = str(exc_info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message


def test_bad_nonuniform_fields_give_one_clear_line(qe_frames, models, tmp_path):
    atoms = _atoms(qe_frames[0])
    atoms.arrays["efield"] = np.zeros((len(atoms), 2))
    with pytest.raises(DataError) as err:
        Simulation(_config(field_array="efield"), *models, atoms, out=str(tmp_path))
    _one_line(err, "efield", f"({len(atoms)}, 3)", f"({len(atoms)}, 2)")
    with pytest.raises(DataError) as err:
        Simulation(_config(field_array="E_local"), *models, atoms, out=str(tmp_path))
    _one_line(err, "E_local", "no per-atom array")
    with pytest.raises(ConfigError) as err:
        _config(field_regions=[{"field": [0, 0, 0.1], "axis": "z", "lo": 0.5, "hi": 1.5}]).validate()
    _one_line(err, "field_regions[0]", "[0, 1)")
    with pytest.raises(ConfigError) as err:
        _config(field_regions=[{"field": [0, 0, 0.1], "axis": "z", "lo": -0.1, "hi": 0.5}]).validate()
    _one_line(err, "field_regions[0]", "[0, 1)")
    with pytest.raises(ConfigError) as err:
        Simulation(_config(field_regions=[{"field": [0, 0, 0.1], "indices": [0, len(atoms)]}]), *models, atoms,
                   out=str(tmp_path))
    _one_line(err, "field_regions[0].indices", str(len(atoms)), f"0..{len(atoms) - 1}")
    with pytest.raises(ConfigError) as err:
        parse_regions([{"field": [0, 0.1], "indices": [0]}])
    _one_line(err, "field_regions[0].field", "(3,)")
    with pytest.raises(ConfigError) as err:
        Simulation(_config(), *models, atoms, out=str(tmp_path), local_field=lambda r, t: r[:, :2])
    _one_line(err, "local_field", f"({len(atoms)}, 3)")
    with pytest.raises(ConfigError) as err:
        FerroCalculator(models[0], born=models[1], device="cpu", field=np.zeros((4, 3))).get_forces(atoms)
    _one_line(err, "FerroCalculator field", f"({len(atoms)}, 3)", "(4, 3)")


def test_calculator_nonuniform_field(qe_frames, models, rng):
    """ASE: F_i − F0_i = Z*_iᵀE_i and U − U0 = −Σ_i E_i·m_i for a region + array field; uniform as an array = (3,)."""
    atoms = _atoms(qe_frames[4], rng=rng)
    reference = _atoms(qe_frames[4])
    field = np.array([0.02, -0.01, 0.03])
    calc = FerroCalculator(models[0], born=models[1], device="cpu")
    calc.set_reference(reference)
    atoms.calc = calc
    f0, u0 = atoms.get_forces().copy(), atoms.get_potential_energy()
    calc.field = field
    f_uniform, u_uniform = atoms.get_forces().copy(), atoms.get_potential_energy()
    calc.field = np.tile(field, (len(atoms), 1))
    np.testing.assert_array_equal(atoms.get_forces(), f_uniform)
    assert atoms.get_potential_energy() == pytest.approx(u_uniform, abs=1e-11)

    local = FerroCalculator(models[0], born=models[1], device="cpu", field=field, field_regions=[HALF_X])
    local.set_reference(reference)
    atoms.calc = local
    e_i = field + local_amplitudes(atoms, parse_regions([HALF_X]))
    z = local.get_born_charges(atoms)
    np.testing.assert_allclose(atoms.get_forces() - f0, np.einsum("na,nab->nb", e_i, z), atol=1e-12)
    z_ref = FerroCalculator(models[0], born=models[1], device="cpu").get_born_charges(reference)
    delta = atoms.positions - reference.positions
    m_i = np.einsum("nab,nb->na", 0.5 * (z_ref + z), delta)
    assert atoms.get_potential_energy() - u0 == pytest.approx(-(e_i * m_i).sum(), abs=1e-10)
    assert abs((e_i * m_i).sum() - m_i.sum(0) @ field) > 1e-4  # the region changed the work


# --- per-layer local polarization --------------------------------------------------------------------------------
A = 4.0
Z_BA, Z_TI, Z_O_PAR, Z_O_PERP = 2.75, 7.16, -5.69, -2.11


def _cubic(repeat):
    """Ideal cubic BaTiO3 supercell (a = 4 Å) and nominal Z* (N, 3, 3) with the cell sum rule exact: O∥ along its
    Ti–O bond axis."""
    cell = ase.Atoms("BaTiO3", scaled_positions=[(0, 0, 0), (.5, .5, .5), (.5, .5, 0), (.5, 0, .5), (0, .5, .5)],
                     cell=[A, A, A], pbc=True)
    bond = {2: 2, 3: 1, 4: 0}  # O at (½,½,0) bonds along z, (½,0,½) along y, (0,½,½) along x
    z = [np.eye(3) * Z_BA, np.eye(3) * Z_TI]
    for k in (2, 3, 4):
        d = np.full(3, Z_O_PERP)
        d[bond[k]] = Z_O_PAR
        z.append(np.diag(d))
    atoms = cell.repeat(repeat)
    return atoms, np.tile(np.array(z), (np.prod(repeat), 1, 1))


def _layers(atoms, born, axis):
    lp = LayerPolarization([atoms], axis)
    pos = torch.as_tensor(atoms.positions)
    cell = torch.as_tensor(atoms.cell.array)[None]
    return lp, lp(pos, cell, torch.as_tensor(born))[0].numpy()


def test_layer_polarization_of_displaced_ti_layers_is_z_ti_delta_over_the_cell_volume():
    atoms, born = _cubic((1, 1, 4))
    ti_layers = np.floor(atoms.get_scaled_positions()[:, 2] * 4).astype(int)
    delta = np.array([0.10, -0.05, 0.0, 0.20])  # Å along z per Ti layer
    ti = atoms.numbers == 22
    atoms.positions[ti, 2] += delta[ti_layers[ti]]
    atoms.positions += 0.7  # a rigid translation changes nothing
    lp, p = _layers(atoms, born, axis=2)
    assert lp.num_layers == 4
    # layers are ordered by position in [−1/8, 7/8) (a plane at s ≈ 0.92 after the translation reads −0.08)
    s = (atoms.get_scaled_positions()[ti, 2] + 1 / 8) % 1.0 - 1 / 8
    order = np.argsort(s)
    expected = delta[ti_layers[ti]][order]
    np.testing.assert_allclose(lp.layer_positions[0], s[order], atol=1e-12)
    np.testing.assert_allclose(p[:, 2], Z_TI * expected / A ** 3, atol=1e-12)
    np.testing.assert_allclose(p[:, :2], 0.0, atol=1e-12)


def test_layer_polarization_averages_to_the_cell_polarization(rng):
    """With the sum rule exact in every cell, the mean of the local P over all cells is Σ_κ Z*_κ u_κ / Ω for any
    displacements u (each atom's weights over its cells add up to one); layers along x and z agree on the mean."""
    atoms, born = _cubic((2, 2, 2))
    u = 0.15 * rng.standard_normal(atoms.positions.shape)
    atoms.positions += u
    expected = np.einsum("nab,nb->a", born, u) / atoms.get_volume()
    for axis in (0, 2):
        lp, p = _layers(atoms, born, axis)
        assert lp.num_layers == 2
        np.testing.assert_allclose(p.mean(0), expected, atol=1e-12)
    assert np.abs(p[0] - p[1]).max() > 1e-3  # the layers differ: not a trivially uniform pattern


def test_layers_csv_from_md(qe_frames, models, tmp_path):
    atoms = _atoms(qe_frames[0], repeat=(2, 1, 1))
    cfg = _config(ensemble="nvt_langevin", fields=[[0, 0, 0.01]], polarization_layers="x", log_every=2, steps=4,
                  field_regions=[HALF_X])
    sim = Simulation(cfg, *models, atoms, out=str(tmp_path))
    sim.run(progress=False)
    import csv

    rows = list(csv.DictReader(open(tmp_path / "layers.csv")))
    assert [int(r["step"]) for r in rows] == [0, 0, 2, 2, 4, 4] and {r["layer"] for r in rows} == {"0", "1"}
    assert [float(r["s_frac"]) for r in rows[:2]] == sorted(float(r["s_frac"]) for r in rows[:2])
    assert all(np.isfinite(float(r[f"P{a}_uC_cm2"])) for r in rows for a in "xyz")
    log = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert "field_work_eV" in log[0] and float(log[-1]["field_work_eV"]) != 0.0
    from ferronn.study.layers import plot_profiles, profile

    step, s, p = profile(str(tmp_path / "layers.csv"), "last")
    assert step == 4 and list(p) == [float(r["Pz_uC_cm2"]) for r in rows[4:]] and list(s) == sorted(s)
    assert len(plot_profiles([("end", str(tmp_path / "layers.csv"), "last")]).axes[0].lines) >= 1


def test_restart_with_a_time_dependent_region_field_continues_the_same_run(qe_frames, models, tmp_path, rng):
    """A killed run with a sine field on one slab (and per-layer P) resumes to the uninterrupted trajectory: the
    per-atom dipoles m_i, hence the field work Σ E_i·m_i and H, travel in the restart file."""
    import shutil

    atoms = _atoms(qe_frames[2], rng=rng)
    cfg = _config(ensemble="nvt_langevin", dt_fs=1.0, fields=[[0.0, 0.0, 0.01]], field_regions=[HALF_X],
                  field_kind="sine", field_period_fs=16.0, log_every=4, polarization_layers="x", seed=4)
    straight = Simulation(cfg, *models, atoms, out=str(tmp_path / "a"))
    straight.run(12, progress=False)
    first = Simulation(cfg, *models, atoms, out=str(tmp_path / "b"))
    first.run(6, progress=False)
    shutil.copy(tmp_path / "b" / "restart.pt", tmp_path / "restart6.pt")
    first.run(2, progress=False)  # then killed: its later rows must not survive the resume
    shutil.copy(tmp_path / "restart6.pt", tmp_path / "b" / "restart.pt")
    resumed = Simulation(cfg, *models, atoms, out=str(tmp_path / "b"))
    resumed.load_restart()
    assert resumed.state.atom_dipoles is not None and float(resumed.state.atom_dipoles.abs().max()) > 0
    resumed.run(6, progress=False)
    a, b = straight.state, resumed.state
    torch.testing.assert_close(b.positions, a.positions, atol=1e-12, rtol=0)
    torch.testing.assert_close(b.atom_dipoles, a.atom_dipoles, atol=1e-12, rtol=0)
    torch.testing.assert_close(b.atom_field, a.atom_field, atol=0, rtol=0)
    torch.testing.assert_close(resumed.enthalpy(), straight.enthalpy(), atol=1e-10, rtol=0)
    logged, resumed_rows = (np.loadtxt(tmp_path / x / "layers.csv", delimiter=",", skiprows=1) for x in "ab")
    assert sorted(set(resumed_rows[:, 0].tolist())) == [0, 4, 8, 12]
    assert resumed_rows.shape == logged.shape  # the killed run's step-8 rows were truncated, not kept twice
    np.testing.assert_allclose(resumed_rows, logged, atol=1e-9, rtol=0)
