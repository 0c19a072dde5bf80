"""Born-charge network: equivariance (rotation, inversion), invariance, exact ASR, expressible 1e part."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from ferronn import keys as K
from ferronn.data.stats import born_statistics
from ferronn.models.born import acoustic_sum_rule
from helpers import build_born, distorted, make_batch

@pytest.fixture(scope="module")
def born(qe_frames):
    return build_born(qe_frames)


def _z(model, frames, species):
    return model(make_batch(frames, species, model.r_max))[K.BORN_CHARGES].detach()


def test_statistics_are_isotropic_offsets(qe_frames):
    offsets, scale = born_statistics(qe_frames, [8, 22, 56])
    # O, Ti, Ba mean traces/3 on the QE set: negative for O, large positive for Ti.
    assert offsets[0] < -2 and offsets[1] > 5 and 2 < offsets[2] < 3.5
    assert offsets[0] * 3 + offsets[1] + offsets[2] == pytest.approx(0.0, abs=1e-6)  # ASR-imposed data
    assert 0.1 < scale < 3


def test_rotation_and_inversion_equivariance(born, qe_frames, species, rng):
    frame = distorted(qe_frames[18], rng)
    ref = _z(born, [frame], species)
    for seed in (1, 2):
        rot = Rotation.random(random_state=seed).as_matrix()
        moved = dict(frame, positions=frame["positions"] @ rot.T + np.array([0.7, -0.2, 1.3]), cell=frame["cell"] @ rot.T)
        out = _z(born, [moved], species)
        r = torch.tensor(rot)
        assert torch.allclose(out, r @ ref @ r.T, atol=1e-6)
    # Inversion: Z* is a polar rank-2 tensor, unchanged under r -> -r (cell -> -cell is left-handed: use the
    # inverted positions inside the same cell instead, which is the same crystal seen through the origin).
    inverted = dict(frame, positions=-frame["positions"])
    assert torch.allclose(_z(born, [inverted], species), ref, atol=1e-6)


def test_antisymmetric_part_is_nonzero_and_transforms(born, qe_frames, species, rng):
    frame = distorted(qe_frames[18], rng, amplitude=0.15)
    z = _z(born, [frame], species)
    antisym = 0.5 * (z - z.transpose(-1, -2))
    assert antisym.abs().max() > 1e-7  # the 1e channel exists (a cross product of two different 1o channels)
    rot = torch.tensor(Rotation.random(random_state=5).as_matrix())
    moved = dict(frame, positions=frame["positions"] @ rot.numpy().T, cell=frame["cell"] @ rot.numpy().T)
    z_rot = _z(born, [moved], species)
    assert torch.allclose(0.5 * (z_rot - z_rot.transpose(-1, -2)), rot @ antisym @ rot.T, atol=1e-9)


def test_antisymmetric_part_at_an_inversion_centre_needs_tensor_pairs(qe_frames, species, monkeypatch):
    """At an inversion centre every polar (1o) feature vanishes, so cross products of 1o channels give no
    antisymmetric Z*; two shells with non-coaxial 2e tensors (rotated octahedra) still define an axial vector,
    which the commutator of 2e channel pairs carries — and it rotates as one. (Per-atom Z* before the ASR
    projection, which would mix in the other atoms' parts.)"""
    import ferronn.models.born as born_module

    monkeypatch.setattr(born_module, "acoustic_sum_rule", lambda born, batch, num_atoms: born)
    a, b = np.array([1.9, 0.4, -0.3]), np.array([-0.5, 2.6, 0.9])
    centre = np.full(3, 6.0)
    frame = dict(qe_frames[0], positions=np.stack([centre, centre + a, centre - a, centre + b, centre - b]),
                 atomic_numbers=np.array([22, 8, 8, 56, 56]), cell=np.eye(3) * 12.0)

    def antisym_at_centre(model, f):
        z = _z(model, [f], species)[0]
        return 0.5 * (z - z.T)

    vectors_only = build_born(qe_frames, num_tensor_pairs=0)
    assert antisym_at_centre(vectors_only, frame).abs().max() < 1e-13
    with_tensors = build_born(qe_frames)
    ref = antisym_at_centre(with_tensors, frame)
    assert ref.abs().max() > 1e-8  # untrained weights: small, but 5 orders above the vectors-only round-off
    rot = Rotation.random(random_state=7).as_matrix()
    moved = dict(frame, positions=(frame["positions"] - centre) @ rot.T + centre)
    r = torch.tensor(rot)
    assert torch.allclose(antisym_at_centre(with_tensors, moved), r @ ref @ r.T, rtol=1e-6, atol=1e-14)


def test_translation_and_permutation(born, qe_frames, species, rng):
    frame = distorted(qe_frames[9], rng)
    ref = _z(born, [frame], species)
    shifted = dict(frame, positions=frame["positions"] + np.array([10.3, -4.1, 2.2]))
    assert torch.allclose(_z(born, [shifted], species), ref, atol=1e-10)
    perm = rng.permutation(5)
    shuffled = dict(frame, positions=frame["positions"][perm], atomic_numbers=frame["atomic_numbers"][perm])
    assert torch.allclose(_z(born, [shuffled], species), ref[perm], atol=1e-10)


def test_acoustic_sum_rule_exact_in_mixed_batches(born, qe_frames, species, rng):
    frames = [distorted(f, rng, 0.2) for f in qe_frames[:3]]
    # A bigger, differently sized structure in the same batch: a 2x1x1 supercell.
    f = qe_frames[20]
    big = dict(f, positions=np.concatenate([f["positions"], f["positions"] + f["cell"][0]]),
               atomic_numbers=np.tile(f["atomic_numbers"], 2), cell=f["cell"] * np.array([[2.0], [1.0], [1.0]]))
    frames.append(distorted(big, rng, 0.2))
    batch = make_batch(frames, species, born.r_max)
    z = born(batch)[K.BORN_CHARGES]
    totals = torch.zeros(4, 3, 3, dtype=z.dtype).index_add(0, batch[K.BATCH], z)
    assert totals.abs().max() <= 1e-10
    # And each structure alone gives what it gets in the batch.
    alone = _z(born, [frames[3]], species)
    assert torch.allclose(alone, z[15:].detach(), atol=1e-10)


def test_asr_projection_is_equivariant():
    z = torch.randn(7, 3, 3, dtype=torch.float64)
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    n = torch.tensor([3, 4])
    r = torch.tensor(Rotation.random(random_state=3).as_matrix())
    assert torch.allclose(acoustic_sum_rule(r @ z @ r.T, batch, n), r @ acoustic_sum_rule(z, batch, n) @ r.T)


def _antisymmetric_target(frames, r_max, rms=0.1):
    """An equivariant Z* target with a pure 1e part: A_κ = [a_κ × b_κ]_× with a, b two different radial
    sums of neighbour vectors (polar vectors; their cross product is a pseudovector, even under inversion)."""
    from ferronn.data.graph import neighbour_list

    out = []
    for f in frames:
        pos = torch.tensor(f["positions"])
        ei, shifts = neighbour_list(pos, torch.tensor(f["cell"]), torch.tensor([True] * 3), r_max)
        vec = pos[ei[1]] - pos[ei[0]] + shifts @ torch.tensor(f["cell"])
        r = vec.norm(dim=1, keepdim=True)
        a = torch.zeros_like(pos).index_add(0, ei[0], torch.exp(-(r / 2.0) ** 2) * vec)
        b = torch.zeros_like(pos).index_add(0, ei[0], torch.exp(-r / 3.0) * (r - 3.0) ** 2 * vec)
        p = torch.linalg.cross(a, b)
        eps = torch.zeros(3, 3, 3, dtype=pos.dtype)
        eps[0, 1, 2] = eps[1, 2, 0] = eps[2, 0, 1] = 1.0
        eps[0, 2, 1] = eps[2, 1, 0] = eps[1, 0, 2] = -1.0
        out.append(torch.einsum("abc,nc->nab", eps, p))
    anti = torch.cat(out)
    return anti * (rms / anti.pow(2).mean().sqrt())


@pytest.mark.slow  # long fit
def test_can_fit_an_antisymmetric_target(qe_frames, species, rng):
    """A target whose only non-isotropic part is antisymmetric (1e) is fitted; without a 1e channel the error
    would stay at the target's antisymmetric RMS (0.1 e)."""
    model = build_born(qe_frames, seed=2, num_vector_pairs=2).train()
    frames = [distorted(f, rng, 0.15) for f in qe_frames[:8]]
    batch = make_batch(frames, species, model.r_max)
    iso = model.born_offsets[batch[K.SPECIES]][:, None, None] * torch.eye(3, dtype=torch.float64)
    target = acoustic_sum_rule(iso + _antisymmetric_target(frames, model.r_max), batch[K.BATCH], batch[K.NUM_ATOMS])
    anti = lambda z: (z - z.transpose(-1, -2)) / 2  # noqa: E731
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(200):
        optimizer.zero_grad()
        loss = ((model(batch)[K.BORN_CHARGES] - target) ** 2).mean()
        loss.backward()
        optimizer.step()
    pred = model(batch)[K.BORN_CHARGES].detach()
    error = float((anti(pred) - anti(target)).pow(2).mean().sqrt())
    assert error < 0.3 * float(anti(target).pow(2).mean().sqrt())


def test_born_checkpoint_round_trip_bitwise(tmp_path, born, qe_frames, species, rng):
    import ferronn
    from ferronn.models import checkpoint

    checkpoint.save(born, tmp_path / "born.ckpt")
    loaded = ferronn.load(tmp_path / "born.ckpt")
    assert loaded.kind == "born"
    frames = [distorted(f, rng) for f in qe_frames[:3]]
    assert torch.equal(_z(loaded, frames, species), _z(born, frames, species))
    with pytest.raises(Exception, match="expected 'energy'"):
        ferronn.load(tmp_path / "born.ckpt", kind="energy")


def test_masked_born_labels_do_not_enter_the_loss(born, qe_frames, species):
    from ferronn.train.metrics import weighted_loss

    frames = [dict(f) for f in qe_frames[:3]]
    del frames[1]["born_charges"]
    batch = make_batch(frames, species, born.r_max)
    assert batch["born_charges_mask"].tolist() == [True, False, True]
    pred = born(batch)
    _, terms = weighted_loss(pred, batch, {K.BORN_CHARGES: 1.0})
    keep = torch.tensor([True] * 5 + [False] * 5 + [True] * 5)
    expected = ((pred[K.BORN_CHARGES][keep] - batch[K.BORN_CHARGES][keep]) ** 2).mean()
    assert torch.allclose(terms[K.BORN_CHARGES], expected)


def test_short_training_on_real_frames_lowers_the_loss(qe_frames, species):
    from ferronn.train.metrics import weighted_loss

    model = build_born(qe_frames, seed=1).train()
    batch = make_batch(qe_frames[::3], species, model.r_max)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss, _ = weighted_loss(model(batch), batch, {K.BORN_CHARGES: 1.0})
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.2 * losses[0]
