"""Torch MD engine: physics checks (H conservation with a field, exact dielectric response of a harmonic model),
batching, neighbour-list reuse, affine-free dipole under NPT, restarts."""

from __future__ import annotations

import math

import ase
import ase.io
import numpy as np
import pytest
import torch

from ferronn.data.graph import SpeciesTable
from ferronn.field import TimeDependentField
from ferronn.md import integrators
from ferronn.md.config import load_md_config
from ferronn.md.engine import Simulation, initial_state
from ferronn.md.forces import ModelForces
from ferronn.models.analytic import ConstantBornModel, HarmonicModel
from ferronn.units import EPSILON0_E_PER_V_A
from helpers import build_born, build_model
from helpers import frame_atoms as _atoms
from helpers import md_config as _config

# Cubic-perovskite-like Z* (e), ASR exact: Ba, Ti, O(z chain), O, O.
Z_CUBIC = [np.diag(d) for d in ([2.75] * 3, [7.16] * 3, [-2.11, -2.11, -5.69], [-2.11, -5.69, -2.11],
                                [-5.69, -2.11, -2.11])]


@pytest.fixture(scope="module")
def mace_models(qe_frames):
    return build_model(qe_frames), build_born(qe_frames)


def test_nve_conserves_electric_enthalpy_with_and_without_field(qe_frames, mace_models, tmp_path, rng):
    """H = K + U0 − M·E with M integrated from Z*·dr is conserved as well under a field as without one."""
    atoms = _atoms(qe_frames[0]).repeat((2, 1, 1))
    atoms.positions += 0.05 * rng.standard_normal(atoms.positions.shape)
    cfg = _config(ensemble="nve", dt_fs=0.5, temperatures=[300.0], fields=[[0, 0, 0], [0.02, -0.01, 0.05]])
    sim = Simulation(cfg, *mace_models, atoms, out=str(tmp_path))
    h0 = sim.enthalpy()
    drift = []
    for _ in range(60):
        sim.state = sim.step_fn(sim.state, sim.forces)
        drift.append((sim.enthalpy() - h0).abs())
    drift = torch.stack(drift).max(0).values
    field_work = (sim.state.dipole[1] * sim.state.field[1]).sum().abs()
    assert float(drift[0]) < 2e-3 and float(drift[1]) < 2e-3, drift
    assert float(drift[1]) < 3 * float(drift[0]) + 1e-4
    assert float(field_work) > 10 * float(drift[1]), "the field did work comparable to the tolerance: test is vacuous"


def test_field_forces_are_born_charges_times_field(qe_frames, mace_models):
    atoms = _atoms(qe_frames[1])
    energy, born = mace_models
    field = torch.tensor([[0.03, -0.02, 0.01]], dtype=torch.float64)
    states = []
    for f in (torch.zeros_like(field), field):
        gen = torch.Generator().manual_seed(0)
        s = initial_state([atoms], [300.0], f.tolist(), [0.0], SpeciesTable(energy.atomic_numbers), torch.float64,
                          "cpu", gen)
        states.append(ModelForces(energy, born)(s))
    expected = torch.einsum("a,nab->nb", field[0], states[1].born)
    torch.testing.assert_close(states[1].forces - states[0].forces, expected, atol=1e-12, rtol=0)


def _harmonic_simulation(tmp_path, finite_field: bool, steps: int, field=0.05):
    cell = 4.0 * np.eye(3)
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    atoms = ase.Atoms("BaTiO3", scaled_positions=frac, cell=cell, pbc=True)
    stiffness = [2.0, 3.0, 1.5, 1.5, 1.5]
    energy = HarmonicModel(atoms.positions, stiffness, atoms.numbers)
    born = ConstantBornModel(torch.tensor(np.array(Z_CUBIC)), atoms.numbers)
    cfg = _config(ensemble="nvt_langevin", dt_fs=5.0, friction_per_fs=0.02, temperatures=[300.0],
                  fields=[[0, 0, 0]], copies=8, steps=steps, equilibration_steps=200, sample_every=1,
                  skin=1.5, seed=3)  # the harmonic model needs no neighbours: rarely rebuild
    cfg.dielectric.finite_field, cfg.dielectric.field, cfg.dielectric.block = finite_field, field, 200
    cfg.dielectric.eps_inf = 4.0
    sim = Simulation(cfg, energy, born, atoms, out=str(tmp_path))
    exact = 4.0 + sum(z @ z.T / k for z, k in zip(Z_CUBIC, stiffness)) / (EPSILON0_E_PER_V_A * atoms.cell.volume)
    return sim, exact


@pytest.mark.slow  # long MD run (4200 steps x 56 replicas)
def test_dielectric_estimators_match_the_harmonic_model_exactly(tmp_path):
    """Fluctuation and ±E estimators vs ε = ε∞ + Σ Z Zᵀ/(k ε0 Ω), each within 3σ, and with each other."""
    sim, exact = _harmonic_simulation(tmp_path, finite_field=True, steps=4000)
    summary = sim.run(progress=False)
    fluct, fluct_err = (np.array(summary["epsilon_fluctuation"][k]) for k in ("mean", "error"))
    field, field_err = (np.array(summary["epsilon_finite_field"][k]) for k in ("mean", "error"))
    diag = np.diag_indices(3)
    assert np.all(np.abs(fluct - exact)[diag] < 3 * fluct_err[diag] + 1e-9), (fluct[diag], fluct_err[diag], exact[diag])
    assert np.all(np.abs(field - exact)[diag] < 3 * field_err[diag] + 1e-9), (field[diag], field_err[diag], exact[diag])
    assert np.all(fluct_err[diag] < 0.2 * exact[diag]) and np.all(field_err[diag] < 0.1 * exact[diag])
    combined = np.sqrt(fluct_err ** 2 + field_err ** 2)
    assert np.all(np.abs(fluct - field)[diag] < 3 * combined[diag])
    # The temperature the thermostat holds (Langevin: 3N degrees of freedom).
    t = np.array(summary["temperature"]["mean"])
    assert np.all(np.abs(t - 300.0) < 30.0), t


def test_batched_replicas_equal_separate_runs(qe_frames, mace_models):
    """Two structures of different sizes in one batch follow the same NVE trajectories as run alone."""
    energy, born = mace_models
    sp = SpeciesTable(energy.atomic_numbers)
    structures = [_atoms(qe_frames[2]), _atoms(qe_frames[3]).repeat((1, 2, 1))]
    fields = [[0.0, 0.0, 0.02], [0.01, 0.0, 0.0]]

    def run(atoms_list, fields_list, seed):
        gen = torch.Generator().manual_seed(seed)
        s = initial_state(atoms_list, [300.0] * len(atoms_list), fields_list, [0.0] * len(atoms_list), sp,
                          torch.float64, "cpu", gen)
        forces = ModelForces(energy, born)
        return s, forces

    together, f_all = run(structures, fields, 0)
    alone = []
    for b in range(2):
        s, f = run([structures[b]], [fields[b]], 0)
        lo, hi = together.ptr[b], together.ptr[b + 1]
        alone.append((s.replace(momenta=together.momenta[lo:hi].clone()), f))
    together = f_all(together)
    alone = [(f(s), f) for s, f in alone]
    for _ in range(5):
        together = integrators.velocity_verlet(together, f_all, 1.0)
        alone = [(integrators.velocity_verlet(s, f, 1.0), f) for s, f in alone]
    for b, (s, _) in enumerate(alone):
        lo, hi = together.ptr[b], together.ptr[b + 1]
        torch.testing.assert_close(together.positions[lo:hi], s.positions, atol=1e-10, rtol=0)
        torch.testing.assert_close(together.dipole[b], s.dipole[0], atol=1e-10, rtol=0)


def test_born_every_k_uses_the_same_stale_born_charges_in_forces_and_dipole(qe_frames, mace_models, rng):
    """born_every: 3 refreshes Z* at steps 0, 3, 6 only; in between the last Z* enters both F = F0 + Z*ᵀE and the
    trapezoid ΔM = ½(Z*(t) + Z*(t+dt))·Δr (docs/conventions.md), so the model is called a third as often."""
    from ferronn.field import dipole_increment

    energy, born = mace_models
    atoms = _atoms(qe_frames[0]).repeat((2, 1, 1))
    atoms.positions += 0.05 * rng.standard_normal(atoms.positions.shape)
    field = torch.tensor([0.05, -0.02, 0.03], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    state = initial_state([atoms], [600.0], [field.tolist()], [0.0], SpeciesTable(energy.atomic_numbers),
                          torch.float64, "cpu", gen)
    stale, plain = ModelForces(energy, born, born_every=3), ModelForces(energy)
    fresh = ModelForces(energy, born)  # Z* at the current positions, for reference
    calls = []
    hook = born.register_forward_pre_hook(lambda module, inputs: calls.append(1))
    states = [stale(state)]
    for _ in range(7):
        states.append(integrators.velocity_verlet(states[-1], stale, 1.0))
    hook.remove()
    assert len(calls) == 3, f"the Born model ran {len(calls)} times over 8 force calls, expected 3 (steps 0, 3, 6)"
    for t, s in enumerate(states):
        refreshed = states[3 * (t // 3)]
        torch.testing.assert_close(s.born, fresh(refreshed).born, atol=1e-12, rtol=0)
        f0 = plain(s.replace(born=None)).forces
        torch.testing.assert_close(s.forces, f0 + torch.einsum("a,nab->nb", field, s.born), atol=1e-12, rtol=0)
        if t:
            prev = states[t - 1]
            step = dipole_increment(prev.born, s.born, s.positions - prev.positions, s.batch, 1)
            torch.testing.assert_close(s.dipole, prev.dipole + step, atol=1e-12, rtol=0)
    assert torch.equal(states[1].born, states[2].born), "Z* refreshed between the k-step refreshes"
    change = (states[3].born - states[2].born).abs().max()
    assert float(change) > 1e-4, "Z* did not change over three steps: the staleness check is vacuous"
    assert float((fresh(states[2]).born - states[2].born).abs().max()) > 1e-4


def test_verlet_skin_gives_the_same_trajectory_as_rebuilding_every_step(qe_frames, mace_models, tmp_path):
    atoms = _atoms(qe_frames[4])
    results = {}
    for skin in (0.0, 1.0):
        cfg = _config(ensemble="nve", dt_fs=1.0, fields=[[0, 0, 0.01]], skin=skin, seed=1)
        sim = Simulation(cfg, *mace_models, atoms, out=str(tmp_path / f"s{skin}"))
        sim.run(30, progress=False)
        results[skin] = (sim.state.positions, sim.forces.rebuilds)
    torch.testing.assert_close(results[0.0][0], results[1.0][0], atol=1e-9, rtol=0)
    assert results[0.0][1] == 31 and results[1.0][1] < 5, (results[0.0][1], results[1.0][1])


def test_affine_cell_deformation_does_not_change_the_dipole(qe_frames, mace_models):
    """Under NPT the dipole integrates Z*·h(t+dt)Δs: a pure strain of positions and cell gives ΔM = 0."""
    energy, born = mace_models
    gen = torch.Generator().manual_seed(0)
    s = initial_state([_atoms(qe_frames[0])], [300.0], [[0, 0, 0]], [0.0], SpeciesTable(energy.atomic_numbers),
                      torch.float64, "cpu", gen)
    forces = ModelForces(energy, born)
    s = forces(s)
    strain = torch.eye(3, dtype=torch.float64) + 0.01 * torch.tensor([[1.0, 0.2, 0], [0.2, -0.5, 0.1], [0, 0.1, 0.3]])
    moved = integrators._move(s, s.positions @ strain, s.momenta, forces, 1.0, cell=s.cell @ strain)
    assert float(moved.dipole.abs().max()) < 1e-12


def test_npt_relaxes_the_cell_towards_the_target_pressure(qe_frames, mace_models, tmp_path):
    atoms = _atoms(qe_frames[0]).repeat((2, 2, 2))
    cfg = _config(ensemble="npt", dt_fs=1.0, temperatures=[300.0], pressure_gpa=0.0, tau_p_fs=100.0,
                  bulk_modulus_gpa=100.0, seed=2)
    sim = Simulation(cfg, *mace_models, atoms, out=str(tmp_path))
    cell0 = sim.state.cell.clone()
    sim.run(20, progress=False)
    cell = sim.state.cell
    assert not torch.allclose(cell, cell0)
    deformation = torch.linalg.inv(cell0[0]) @ cell[0]
    strain = (deformation - torch.eye(3, dtype=deformation.dtype)).abs().max()
    rotation = (deformation - deformation.T).abs().max()  # symmetric steps: only a second-order rotation
    assert float(rotation) < 0.05 * float(strain), (rotation, strain)
    assert float(torch.linalg.det(cell[0]) / torch.linalg.det(cell0[0])) == pytest.approx(1.0, abs=0.1)


def test_nose_hoover_chain_conserves_its_extended_energy(qe_frames, mace_models, tmp_path):
    atoms = _atoms(qe_frames[5]).repeat((2, 1, 1))
    cfg = _config(ensemble="nvt_nose_hoover", dt_fs=0.5, temperatures=[600.0], tau_t_fs=20.0)
    sim = Simulation(cfg, *mace_models, atoms, out=str(tmp_path))
    h0 = sim.enthalpy()
    sim.run(60, progress=False)
    assert float((sim.enthalpy() - h0).abs().max()) < 2e-3
    assert float(sim.state.chain_momenta.abs().max()) > 0  # the thermostat acted


def test_restart_continues_the_same_trajectory(qe_frames, mace_models, tmp_path):
    atoms = _atoms(qe_frames[6]).repeat((2, 1, 1))
    cfg = _config(ensemble="nvt_langevin", dt_fs=1.0, fields=[[0, 0, 0.02]], seed=5, log_every=5,
                  trajectory_every=5)
    straight = Simulation(cfg, *mace_models, atoms, out=str(tmp_path / "a"))
    straight.run(20, progress=False)
    first = Simulation(cfg, *mace_models, atoms, out=str(tmp_path / "b"))
    first.run(10, progress=False)
    import shutil

    shutil.copy(tmp_path / "b" / "restart.pt", tmp_path / "restart10.pt")
    first.run(5, progress=False)  # then "killed": its log rows and frame at step 15 outlive the restart file
    shutil.copy(tmp_path / "restart10.pt", tmp_path / "b" / "restart.pt")
    resumed = Simulation(cfg, *mace_models, atoms, out=str(tmp_path / "b"))
    resumed.load_restart()
    resumed.run(10, progress=False)
    torch.testing.assert_close(resumed.state.positions, straight.state.positions, atol=1e-12, rtol=0)
    torch.testing.assert_close(resumed.state.dipole, straight.state.dipole, atol=1e-12, rtol=0)
    import ase.io

    steps = [int(a.info["step"]) for a in ase.io.read(tmp_path / "b" / "trajectory_r0.extxyz", ":")]
    assert steps == [5, 10, 15, 20]
    logged = np.loadtxt(tmp_path / "b" / "log.csv", delimiter=",", skiprows=1, usecols=0)
    assert logged.tolist() == [5, 10, 15, 20]


def test_time_dependent_fields():
    t = torch.tensor(0.0, dtype=torch.float64)
    tri = TimeDependentField([0, 0, 1.0], "triangle", period_fs=100.0)
    values = [float(tri(t + x)[2]) for x in (0.0, 25.0, 50.0, 75.0, 100.0)]
    assert values == pytest.approx([0.0, 1.0, 0.0, -1.0, 0.0], abs=1e-12)
    sine = TimeDependentField([0.5, 0, 0], "sine", period_fs=40.0)
    assert float(sine(t + 10.0)[0]) == pytest.approx(0.5)
    assert math.isclose(float(TimeDependentField([1, 2, 3])(t)[1]), 2.0)


def test_md_recipe_errors_name_the_key(tmp_path):
    from ferronn.errors import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("ensemble: npt\ntemprature: [300]\n")
    with pytest.raises(ConfigError, match="temprature"):
        load_md_config(str(bad))
    bad.write_text("ensemble: nvx\n")
    with pytest.raises(ConfigError, match="ensemble"):
        load_md_config(str(bad))


def test_dielectric_classifies_replicas_by_field_amplitude(tmp_path):
    """A sine field is zero at t = 0: its replicas must not enter the zero-field fluctuation estimator, and
    oscillating ±E replicas are not a finite-field pair."""
    cell = 4.0 * np.eye(3)
    atoms = ase.Atoms("BaTiO3", scaled_positions=[[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]],
                      cell=cell, pbc=True)
    energy = HarmonicModel(atoms.positions, [2.0, 3.0, 1.5, 1.5, 1.5], atoms.numbers)
    born = ConstantBornModel(torch.tensor(np.array(Z_CUBIC)), atoms.numbers)
    cfg = _config(ensemble="nvt_langevin", fields=[[0, 0, 0], [0, 0, 0.05], [0, 0, -0.05]], field_kind="sine",
                  field_period_fs=100.0)
    sim = Simulation(cfg, energy, born, atoms, out=str(tmp_path))
    assert sim.dielectric.zero == [0] and sim.dielectric.pairs == []
    cfg.field_kind = "constant"
    assert Simulation(cfg, energy, born, atoms, out=str(tmp_path)).dielectric.pairs == [(1, 2, 2)]


def test_eps_inf_from_the_data(tmp_path):
    """``eps_inf: data``: the mean ε∞ of the structure file — 1 + α/(ε0 Ω) from a Berry-phase polarizability (the
    allegro-pol SOURCE.md gives 4.63, 4.64, 4.34) or the stored DFPT tensor — reaches both estimators; a file with
    neither, or a malformed one, is an error that names it."""
    from helpers import ALLEGRO, require_shared
    from ferronn.errors import ConfigError, DataError
    from ferronn.md.observables import data_eps_inf

    require_shared()
    assert np.allclose(np.diag(data_eps_inf(str(ALLEGRO))), [4.63, 4.64, 4.34], atol=0.01)
    frames = [ase.Atoms("BaTiO3", scaled_positions=[[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]],
                        cell=a * np.eye(3), pbc=True) for a in (4.0, 4.1)]
    frames[0].info["epsilon_inf"], frames[1].info["epsilon_inf"] = np.diag([6.0, 6.0, 5.0]), np.diag([6.5, 6.2, 5.4])
    path = tmp_path / "eps.xyz"
    ase.io.write(path, frames)
    assert np.allclose(data_eps_inf(str(path)), np.diag([6.25, 6.1, 5.2]))
    energy = HarmonicModel(frames[0].positions, [2.0, 3.0, 1.5, 1.5, 1.5], frames[0].numbers)
    born = ConstantBornModel(torch.tensor(np.array(Z_CUBIC)), frames[0].numbers)
    cfg = _config(structure=str(path), ensemble="nvt_langevin")
    cfg.dielectric.eps_inf = "data"
    assert np.allclose(Simulation(cfg, energy, born, frames[0], out=str(tmp_path)).summary()["eps_inf"],
                       np.diag([6.25, 6.1, 5.2]))
    frames[1].info["epsilon_inf"] = [1.0, 2.0]
    ase.io.write(path, frames)
    with pytest.raises(DataError, match="frame 1.*'epsilon_inf'"):
        data_eps_inf(str(path))
    for frame in frames:
        del frame.info["epsilon_inf"]
    ase.io.write(path, frames)
    with pytest.raises(ConfigError, match="eps.xyz.*'polarizability'"):
        data_eps_inf(str(path))
    cfg.dielectric.eps_inf = "dfpt"
    with pytest.raises(ConfigError, match="dielectric.eps_inf"):
        cfg.validate()


def test_block_average_memory_is_bounded_and_merged_blocks_are_exact():
    """A long run holds at most max_blocks blocks: adjacent blocks merge (block length doubles) and the merged
    block means are exactly the means over the longer blocks; the mean is unaffected."""
    from ferronn.md.observables import BlockAverage

    x = torch.randn(1000, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    avg = BlockAverage(5, max_blocks=8)
    for row in x:
        avg.add(row)
    assert len(avg.block_means()) < 8 and avg.block == 5 * 2 ** 5  # 200 blocks of 5 → 6 blocks of 160
    expected = x[: 160 * 6].reshape(6, 160, 2, 3).mean(dim=1)
    torch.testing.assert_close(avg.block_means(), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(avg.mean(), x.mean(dim=0), rtol=0, atol=1e-12)


def test_replicas_start_from_a_list_of_frames(qe_frames, mace_models, tmp_path):
    """``index: [i, j]`` starts replica b from frame index[b % 2] (the recipe's models and file, via from_config)."""
    from ferronn.data.datamodule import default_data_path
    from ferronn.errors import ConfigError
    from ferronn.models.checkpoint import save

    energy, _ = mace_models
    save(energy, str(tmp_path / "energy.ckpt"))
    cfg = _config(energy=str(tmp_path / "energy.ckpt"), born=None, structure=default_data_path(), index=[3, 7],
                  temperatures=[300.0, 600.0], copies=2, out=str(tmp_path / "md"))
    sim = Simulation.from_config(cfg)
    ptr = sim.state.ptr.tolist()
    assert len(ptr) == 5  # 2 temperatures x 2 copies
    for b in range(4):
        start = qe_frames[[3, 7][b % 2]]["positions"]
        np.testing.assert_allclose(sim.state.positions[ptr[b]:ptr[b + 1]].numpy(), start, atol=1e-12, rtol=0)
    sim.run(2, progress=False)
    assert "epsilon_fluctuation" not in sim.summary()  # no Born model: no dipole, so no ε (not a fake ε∞ ± 0)
    with pytest.raises(ConfigError, match="key 'index'"):
        _config(index=[]).validate()
