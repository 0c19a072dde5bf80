"""Physics identities of the energy model: F = -∇E, σ = (1/Ω)∂E/∂ε, symmetries, periodic images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from ferronn import keys as K
from helpers import build_model, distorted, make_batch


def _energy(model, frame, species):
    return float(model(make_batch([frame], species, model.r_max), compute_forces=False)[K.ENERGY][0])


def test_forces_are_minus_energy_gradient(model, qe_frames, species, rng):
    frame = distorted(qe_frames[10], rng)
    out = model(make_batch([frame], species, model.r_max))
    forces = out[K.FORCES].detach().numpy()
    assert np.abs(forces).max() > 1e-2, "forces too small for a meaningful finite-difference check"
    h = 1e-4
    for atom, axis in [(0, 0), (1, 2), (3, 1), (4, 2)]:
        plus, minus = dict(frame), dict(frame)
        plus["positions"] = frame["positions"].copy(); plus["positions"][atom, axis] += h
        minus["positions"] = frame["positions"].copy(); minus["positions"][atom, axis] -= h
        fd = -(_energy(model, plus, species) - _energy(model, minus, species)) / (2 * h)
        assert fd == pytest.approx(forces[atom, axis], abs=1e-6, rel=1e-5)


def test_stress_is_strain_derivative(model, qe_frames, species, rng):
    frame = distorted(qe_frames[20], rng)
    frame["cell"] = frame["cell"] @ (np.eye(3) + 0.02 * rng.standard_normal((3, 3)))  # triclinic
    out = model(make_batch([frame], species, model.r_max), compute_stress=True)
    stress = out[K.STRESS][0].detach().numpy()
    assert np.allclose(stress, stress.T, atol=1e-12)
    volume = abs(np.linalg.det(frame["cell"]))
    h = 1e-5
    for a, b in [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2)]:
        eps = np.zeros((3, 3)); eps[a, b] += h / 2; eps[b, a] += h / 2
        energies = []
        for sign in (1, -1):
            strained = dict(frame)
            strained["positions"] = frame["positions"] @ (np.eye(3) + sign * eps)
            strained["cell"] = frame["cell"] @ (np.eye(3) + sign * eps)
            energies.append(_energy(model, strained, species))
        fd = (energies[0] - energies[1]) / (2 * h) / volume
        assert fd == pytest.approx(stress[a, b], abs=1e-7, rel=1e-5)


def test_rotation_translation_permutation(model, qe_frames, species, rng):
    frame = distorted(qe_frames[15], rng)
    ref = model(make_batch([frame], species, model.r_max), compute_stress=True)
    rot = Rotation.random(random_state=7).as_matrix()
    moved = dict(frame)
    moved["positions"] = frame["positions"] @ rot.T + np.array([0.3, -1.1, 2.5])
    moved["cell"] = frame["cell"] @ rot.T
    out = model(make_batch([moved], species, model.r_max), compute_stress=True)
    assert float(out[K.ENERGY][0]) == pytest.approx(float(ref[K.ENERGY][0]), abs=1e-9)
    assert torch.allclose(out[K.FORCES], ref[K.FORCES] @ torch.tensor(rot.T), atol=1e-9)
    rotated_stress = torch.tensor(rot) @ ref[K.STRESS][0] @ torch.tensor(rot.T)
    assert torch.allclose(out[K.STRESS][0], rotated_stress, atol=1e-10)

    perm = rng.permutation(len(frame["positions"]))
    shuffled = dict(frame, positions=frame["positions"][perm], atomic_numbers=frame["atomic_numbers"][perm])
    out = model(make_batch([shuffled], species, model.r_max))
    assert float(out[K.ENERGY][0]) == pytest.approx(float(ref[K.ENERGY][0]), abs=1e-9)
    assert torch.allclose(out[K.FORCES], ref[K.FORCES][perm], atol=1e-10)


def test_small_cell_sees_its_images_like_supercell(model, qe_frames, species, rng):
    """A 5-atom cell (3.97-4.06 Å, r_max 4.5 Å) has atoms seeing their own images: the 2x2x2 supercell must
    give the same energy per atom and the same forces on each image."""
    frame = distorted(qe_frames[14], rng, amplitude=0.05)
    assert np.linalg.norm(frame["cell"], axis=1).min() < model.r_max
    shifts = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], dtype=float)
    n = len(frame["positions"])
    big = dict(frame)
    big["positions"] = np.concatenate([frame["positions"] + s @ frame["cell"] for s in shifts])
    big["atomic_numbers"] = np.tile(frame["atomic_numbers"], 8)
    big["cell"] = 2 * frame["cell"]
    small = model(make_batch([frame], species, model.r_max), compute_stress=True)
    large = model(make_batch([big], species, model.r_max), compute_stress=True)
    assert float(large[K.ENERGY][0]) / (8 * n) == pytest.approx(float(small[K.ENERGY][0]) / n, abs=1e-10)
    assert torch.allclose(large[K.FORCES], small[K.FORCES].repeat(8, 1), atol=1e-10)
    assert torch.allclose(large[K.STRESS], small[K.STRESS], atol=1e-11)


def test_batching_is_independent_of_neighbours_in_batch(model, qe_frames, species, rng):
    frames = [distorted(f, rng) for f in qe_frames[:6]]
    together = model(make_batch(frames, species, model.r_max), compute_stress=True)
    for b, frame in enumerate(frames):
        alone = model(make_batch([frame], species, model.r_max), compute_stress=True)
        assert float(alone[K.ENERGY][0]) == pytest.approx(float(together[K.ENERGY][b]), abs=1e-10)
        assert torch.allclose(alone[K.FORCES], together[K.FORCES][5 * b:5 * b + 5], atol=1e-10)


def test_matches_mace_own_force_and_stress(model, qe_frames, species, rng):
    """ferronn's autograd wrapper and mace-torch's own compute_force/compute_stress agree."""
    from ferronn.keys import SHIFTS

    batch = make_batch([distorted(f, rng) for f in qe_frames[3:6]], species, model.r_max)
    ours = model(batch, compute_stress=True)
    shifts = torch.einsum("ei,eij->ej", batch[K.UNIT_SHIFTS], batch[K.CELL][batch[K.BATCH][batch[K.EDGE_INDEX][0]]])
    data = {"positions": batch[K.POSITIONS].clone(), "node_attrs": torch.nn.functional.one_hot(batch[K.SPECIES], 3).double(),
            "edge_index": batch[K.EDGE_INDEX], "shifts": shifts, "unit_shifts": batch[K.UNIT_SHIFTS],
            "cell": batch[K.CELL], "batch": batch[K.BATCH], "ptr": batch[K.PTR]}
    theirs = model.mace(data, compute_force=True, compute_stress=True)
    assert torch.allclose(ours[K.FORCES], theirs["forces"], atol=1e-10)
    assert torch.allclose(ours[K.STRESS], theirs["stress"], atol=1e-11)
    e0 = torch.tensor(model.reference_energies, dtype=torch.float64)[batch[K.SPECIES]]
    e0 = torch.zeros(3, dtype=torch.float64).index_add(0, batch[K.BATCH], e0)
    assert torch.allclose(ours[K.ENERGY], theirs["energy"] + e0, atol=1e-8)
    assert SHIFTS == "shifts"


def test_fast_messages_match_stock_mace(model, qe_frames, species, rng, monkeypatch):
    """models/messages.py rearranges mace's messages for speed (index_select gather, split-sliced tensor product):
    the same weights in a stock mace/e3nn model give the same energy, forces, stress and weight gradients."""
    import ferronn.models.energy as energy_module
    from ferronn.models.messages import stock_copy
    from mace.modules.blocks import InteractionBlock

    blocks = [b for b in model.mace.modules() if isinstance(b, InteractionBlock)]
    assert blocks and all(b.conv_fusion == "index_select" for b in blocks)
    assert any("split" in b.conv_tp._compiled_main_left_right.code for b in blocks)
    monkeypatch.setattr(energy_module, "fast_messages", lambda module: module)
    stock = build_model(qe_frames)
    stock.load_state_dict(model.state_dict())
    assert not any(hasattr(b, "conv_fusion") for b in stock.mace.modules() if isinstance(b, InteractionBlock))
    undone = stock_copy(model.mace)  # what benchmarks hand the peers: mace's own code, these weights
    assert not any(hasattr(b, "conv_fusion") for b in undone.modules() if isinstance(b, InteractionBlock))
    assert not any("split" in b.conv_tp._compiled_main_left_right.code
                   for b in undone.modules() if isinstance(b, InteractionBlock))
    batch = make_batch([distorted(f, rng) for f in qe_frames[6:9]], species, model.r_max)
    ours, theirs = model(batch, compute_stress=True), stock(batch, compute_stress=True)
    assert torch.allclose(ours[K.ENERGY], theirs[K.ENERGY], atol=1e-10, rtol=0)
    assert torch.allclose(ours[K.FORCES], theirs[K.FORCES], atol=1e-12)
    assert torch.allclose(ours[K.STRESS], theirs[K.STRESS], atol=1e-13)
    assert ours[K.FORCES].abs().max() > 1e-2
    ours_grad = torch.autograd.grad(model(batch, compute_forces=False)[K.ENERGY].sum(), list(model.parameters()))
    theirs_grad = torch.autograd.grad(stock(batch, compute_forces=False)[K.ENERGY].sum(), list(stock.parameters()))
    for (name, _), a, b in zip(model.named_parameters(), ours_grad, theirs_grad):
        assert torch.allclose(a, b, atol=1e-12, rtol=1e-10), name
    stock.mace = undone
    again = stock(batch, compute_stress=True)
    assert torch.allclose(again[K.FORCES], theirs[K.FORCES], atol=1e-12)
    assert torch.allclose(again[K.STRESS], theirs[K.STRESS], atol=1e-13)


def test_float32_model_keeps_float64_energy(qe_frames, species, rng):
    model64 = build_model(qe_frames, torch.float64)
    model32 = build_model(qe_frames, torch.float32)
    model32.load_state_dict(model64.state_dict())
    frame = distorted(qe_frames[5], rng)
    e64 = model64(make_batch([frame], species, model64.r_max, torch.float64))
    e32 = model32(make_batch([frame], species, model32.r_max, torch.float32))
    assert e32[K.ENERGY].dtype == torch.float64 and e32[K.FORCES].dtype == torch.float32
    # The absolute energy (-3590 eV) keeps sub-meV agreement because E0 sums stay in float64.
    assert float(e32[K.ENERGY][0]) == pytest.approx(float(e64[K.ENERGY][0]), abs=2e-4)
    assert torch.allclose(e32[K.FORCES].double(), e64[K.FORCES], atol=2e-4)
