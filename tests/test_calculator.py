"""ASE calculator: F = −∇E and stress by finite differences, exact field terms, ASE MD/optimizers/phonopy-style
loops, and clear errors."""

from __future__ import annotations

import ase
import numpy as np
import pytest
import torch
from ase.md.verlet import VelocityVerlet
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.optimize import BFGS

from ferronn import FerroCalculator
from ferronn.errors import CheckpointError, ConfigError, DataError
from ferronn.units import ASE_TIME_UNIT_FS
from helpers import build_born, build_model


@pytest.fixture(scope="module")
def models(qe_frames):
    return build_model(qe_frames), build_born(qe_frames)


def _atoms(frame, rng=None, repeat=(1, 1, 1), amplitude=0.05):
    atoms = ase.Atoms(numbers=frame["atomic_numbers"], positions=frame["positions"], cell=frame["cell"],
                      pbc=True).repeat(repeat)
    if rng is not None:
        atoms.positions += amplitude * rng.standard_normal(atoms.positions.shape)
    return atoms


def _calc(models, **kw):
    return FerroCalculator(models[0], born=models[1], device="cpu", **kw)


def test_forces_and_stress_are_derivatives_of_the_energy(qe_frames, models, rng):
    atoms = _atoms(qe_frames[0], rng)
    atoms.calc = _calc(models)
    numeric = atoms.calc.calculate_numerical_forces(atoms, d=1e-4)
    np.testing.assert_allclose(atoms.get_forces(), numeric, atol=1e-6)
    stress = atoms.get_stress()
    np.testing.assert_allclose(stress, atoms.calc.calculate_numerical_stress(atoms, d=1e-5), atol=1e-6)
    assert np.abs(atoms.get_forces()).max() > 0.05  # not a trivially flat model


def test_field_adds_born_force_and_dipole_energy_exactly(qe_frames, models, rng):
    atoms = _atoms(qe_frames[1], rng)
    calc = _calc(models)
    atoms.calc = calc
    calc.set_reference(_atoms(qe_frames[1]))
    f0, e0, m = atoms.get_forces().copy(), atoms.get_potential_energy(), calc.get_property("dipole", atoms)
    field = np.array([0.02, -0.01, 0.03])
    calc.field = field
    z = calc.get_born_charges(atoms)
    np.testing.assert_allclose(atoms.get_forces() - f0, np.einsum("a,nab->nb", field, z), atol=1e-12)
    assert atoms.get_potential_energy() - e0 == pytest.approx(-m @ field, abs=1e-10)
    assert np.abs(m).max() > 1e-3
    np.testing.assert_allclose(z.sum(0), 0, atol=1e-10)
    np.testing.assert_allclose(calc.get_polarization(atoms), m / atoms.cell.volume)


def test_dipole_is_the_trapezoid_from_the_reference(qe_frames, models, rng):
    """M(R) = Σ ½(Z*(R_ref)+Z*(R))·Δu with the minimum image of a displacement across the cell boundary."""
    ref = _atoms(qe_frames[2])
    calc = _calc(models)
    calc.set_reference(ref, dipole=(1.0, 2.0, 3.0))
    moved = ref.copy()
    shift = 0.03 * rng.standard_normal(moved.positions.shape)
    moved.positions += shift
    moved.positions[0] += moved.cell[0]  # the same structure, one atom a lattice vector away
    z_ref = calc.get_property("born_charges", ref.copy())
    moved.calc = calc
    z = calc.get_born_charges(moved)
    expected = np.array([1.0, 2.0, 3.0]) + np.einsum("nab,nb->a", 0.5 * (z_ref + z), shift)
    np.testing.assert_allclose(calc.get_property("dipole", moved), expected, atol=1e-12)


def _nve_enthalpy_drift(atoms, calc, steps, dt_fs):
    atoms.calc = calc
    z_old, r_old = calc.get_born_charges(atoms), atoms.positions.copy()
    dipole = np.zeros(3)
    field = calc.field
    series = []
    dyn = VelocityVerlet(atoms, timestep=dt_fs / ASE_TIME_UNIT_FS)
    for _ in range(steps):
        dyn.run(1)
        z = calc.get_born_charges(atoms)
        dipole = dipole + np.einsum("nab,nb->a", 0.5 * (z_old + z), atoms.positions - r_old)
        z_old, r_old = z, atoms.positions.copy()
        u0 = calc.get_property("energy_zero_field", atoms)
        series.append(atoms.get_kinetic_energy() + u0 - dipole @ field)
    series = np.array(series)
    return np.abs(series - series[0]).max(), abs(dipole @ field)


@pytest.mark.slow  # long MD run (ASE steps)
def test_ase_velocity_verlet_conserves_the_electric_enthalpy_under_a_field(qe_frames, models, rng):
    drifts = {}
    for field in ((0.0, 0.0, 0.0), (0.0, 0.02, 0.04)):
        atoms = _atoms(qe_frames[3], repeat=(2, 1, 1))
        MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=np.random.default_rng(0))
        drifts[field] = _nve_enthalpy_drift(atoms, _calc(models, field=field), steps=200, dt_fs=0.5)
    zero, with_field = drifts[(0.0, 0.0, 0.0)], drifts[(0.0, 0.02, 0.04)]
    assert zero[0] < 2e-3 and with_field[0] < max(2 * zero[0], 2e-4), drifts
    assert with_field[1] > 10 * with_field[0], "field work below the tolerance: vacuous"


def test_ase_optimizer_and_langevin_run(qe_frames, models, rng):
    from ase.md.langevin import Langevin

    atoms = _atoms(qe_frames[4], rng)
    atoms.calc = _calc(models, field=(0, 0, 0.01))
    f_start = np.abs(atoms.get_forces()).max()
    BFGS(atoms, logfile=None).run(fmax=1e-3, steps=30)
    assert np.abs(atoms.get_forces()).max() < f_start
    Langevin(atoms, timestep=1.0 / ASE_TIME_UNIT_FS, temperature_K=300, friction=0.01, logfile=None).run(5)
    assert np.isfinite(atoms.get_potential_energy())


def test_phonopy_style_finite_displacements_give_symmetric_force_constants(qe_frames, models):
    """Φ_iα,jβ = −∂F_jβ/∂u_iα by ±δ displacements: symmetric, and rows sum to zero (translation invariance)."""
    atoms = _atoms(qe_frames[5])
    calc = _calc(models, skin=0.2)
    n, delta = len(atoms), 0.01
    phi = np.zeros((3 * n, 3 * n))
    for i in range(n):
        for a in range(3):
            forces = []
            for sign in (1, -1):
                displaced = atoms.copy()
                displaced.positions[i, a] += sign * delta
                displaced.calc = calc
                forces.append(displaced.get_forces())
            phi[3 * i + a] = -(forces[0] - forces[1]).reshape(-1) / (2 * delta)
    scale = np.abs(phi).max()
    assert np.abs(phi - phi.T).max() < 1e-3 * scale
    assert np.abs(phi.reshape(3 * n, n, 3).sum(1)).max() < 1e-6 * scale
    assert calc.neighbours.builds <= 2  # ±0.01 Å displacements reuse the neighbour list


def test_clear_errors(qe_frames, models, tmp_path):
    calc = _calc(models)
    with pytest.raises(DataError, match="Cl"):
        calc.get_potential_energy(ase.Atoms("NaCl", positions=[[0, 0, 0], [2.8, 0, 0]], cell=5 * np.eye(3), pbc=True))
    molecule = _atoms(qe_frames[0])
    molecule.pbc = False
    molecule.cell = np.zeros((3, 3))
    molecule.calc = calc
    with pytest.raises(DataError, match="needs a periodic cell"):
        molecule.get_stress()
    with pytest.raises(ConfigError, match=r"shape \(3,\)"):
        calc.field = (0.0, 0.1)
    with pytest.raises(CheckpointError, match="non-zero field needs Born"):
        FerroCalculator(models[0], device="cpu", field=(0, 0, 0.1))
    with pytest.raises(CheckpointError, match="expected a 'energy' model"):
        FerroCalculator(models[1], device="cpu")
    other = build_born([f for f in qe_frames])
    other.atomic_numbers = [8, 22, 38]
    with pytest.raises(CheckpointError, match="different elements"):
        FerroCalculator(models[0], born=other, device="cpu")


def test_from_checkpoints_and_dtype(qe_frames, models, tmp_path):
    from ferronn.models.checkpoint import save

    save(models[0], tmp_path / "energy.ckpt")
    save(models[1], tmp_path / "born.ckpt")
    atoms = _atoms(qe_frames[6])
    atoms.calc = FerroCalculator(str(tmp_path / "energy.ckpt"), born=str(tmp_path / "born.ckpt"), device="cpu",
                                 dtype="float32")
    e32 = atoms.get_potential_energy()
    atoms.calc = _calc(models)
    assert e32 == pytest.approx(atoms.get_potential_energy(), abs=1e-3)
    assert atoms.calc.energy_model.dtype == torch.float64


def test_forces_and_born_charges_rotate_with_the_structure(qe_frames, models, rng):
    from scipy.spatial.transform import Rotation

    atoms = _atoms(qe_frames[7], rng)
    rot = Rotation.random(random_state=7).as_matrix()
    turned = atoms.copy()
    turned.positions = atoms.positions @ rot.T
    turned.cell = atoms.cell.array @ rot.T
    field = np.array([0.01, 0.02, -0.03])
    out = []
    for a, e in ((atoms, field), (turned, rot @ field)):
        a.calc = _calc(models, field=e)
        out.append((a.get_potential_energy(), a.get_forces(), a.calc.get_born_charges(a)))
    assert out[1][0] == pytest.approx(out[0][0], abs=1e-9)
    np.testing.assert_allclose(out[1][1], out[0][1] @ rot.T, atol=1e-9)
    np.testing.assert_allclose(out[1][2], rot @ out[0][2] @ rot.T, atol=1e-9)


def test_time_dependent_field_changed_between_ase_steps(qe_frames, models):
    """A field switched on mid-run acts from the next force call: the change of force is exactly Z*ᵀΔE."""
    atoms = _atoms(qe_frames[8])
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(1))
    calc = _calc(models)
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep=1.0 / ASE_TIME_UNIT_FS)
    applied = []

    def ramp():
        calc.field = (0.0, 0.0, 0.002 * dyn.nsteps)
        applied.append(calc.field[2])

    dyn.attach(ramp, interval=1)
    dyn.run(4)
    f_field = atoms.get_forces().copy()
    z, e = calc.get_born_charges(atoms), calc.field.copy()
    calc.field = (0, 0, 0)
    np.testing.assert_allclose(f_field - atoms.get_forces(), np.einsum("a,nab->nb", e, z), atol=1e-12)
    assert applied[-1] == pytest.approx(0.008) and e[2] == pytest.approx(0.008)


def test_getters_without_atoms_compute_for_the_attached_structure(qe_frames, models, rng):
    """get_born_charges()/get_polarization() with no argument, before anything was computed, use the structure the
    calculator is attached to (and follow it when it moves); a detached, unused calculator says what to pass."""
    atoms = _atoms(qe_frames[2], rng)
    atoms.calc = _calc(models)
    z = atoms.calc.get_born_charges()  # nothing computed yet
    p = atoms.calc.get_polarization()
    reference = _calc(models)
    np.testing.assert_allclose(z, reference.get_born_charges(atoms.copy()), atol=1e-12)
    np.testing.assert_allclose(z.sum(0), 0, atol=1e-10)  # the sum rule holds: real Z*, not a stale placeholder
    np.testing.assert_allclose(p, reference.get_polarization(atoms.copy()), atol=1e-12)
    atoms.positions[0] += 0.1  # the attached structure moved: Z* must be recomputed for it
    moved = atoms.calc.get_born_charges()
    assert np.abs(moved - z).max() > 1e-6
    np.testing.assert_allclose(moved, _calc(models).get_born_charges(atoms.copy()), atol=1e-12)
    with pytest.raises(DataError, match=r"get_born_charges\(\): no structure.*pass one") as info:
        _calc(models).get_born_charges()
    assert "\n" not in str(info.value)
