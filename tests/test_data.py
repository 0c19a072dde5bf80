"""Data pipeline on the real sets: key maps, Voigt/3x3 stress, masks, splits, statistics, graphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import read, write

from ferronn import keys as K
from ferronn.data.datamodule import DataConfig, FrameDataModule, SplitConfig, split_indices
from ferronn.data.frames import KeyMap, read_frames
from ferronn.data.graph import collate, frame_to_graph, neighbour_list
from ferronn.data.stats import compute_stats
from ferronn.train.metrics import weighted_loss
from helpers import ALLEGRO, QE, require_shared


def test_allegro_set_reads_total_energy_in_float64():
    require_shared()
    frames = read_frames(ALLEGRO, KeyMap(energy="total_energy"), labels_needed=("energy", "forces", "stress"))
    assert len(frames) == 59 and len(frames[0]["positions"]) == 135
    atoms = read(ALLEGRO, 0)
    assert frames[0]["energy"] == atoms.info["total_energy"]  # bitwise: no float32 on the way
    assert frames[0]["born_charges"].shape == (135, 3, 3)
    assert np.allclose(frames[0]["born_charges"].reshape(135, 9), atoms.arrays["born_charge"])
    # ASE returns Voigt; we store 3x3 with the xy, yz, xz components in their places.
    voigt = atoms.get_stress(voigt=True)
    s = frames[0]["stress"]
    assert np.allclose([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]], voigt)
    batch = collate([frame_to_graph(f, __import__("ferronn.data.graph").data.graph.SpeciesTable([8, 22, 56]), 4.0)
                     for f in frames[:2]], torch.float32)
    assert batch[K.ENERGY].dtype == torch.float64 and batch[K.POSITIONS].dtype == torch.float32
    assert batch[K.ENERGY][0].item() == atoms.info["total_energy"]


def test_stress_as_3x3_and_voigt_agree(tmp_path, qe_frames):
    atoms = read(QE, 7) if QE.exists() else None
    if atoms is None:
        from ferronn.data.datamodule import default_data_path
        atoms = read(default_data_path(), 7)
    full = atoms.get_stress(voigt=False)
    atoms.info["s9"] = full.reshape(9)
    atoms.info["s6"] = atoms.get_stress(voigt=True)
    path = tmp_path / "s.extxyz"
    write(path, atoms)
    f9 = read_frames(path, KeyMap(stress="s9"))[0]["stress"]
    f6 = read_frames(path, KeyMap(stress="s6"))[0]["stress"]
    assert np.allclose(f9, full) and np.allclose(f6, full)


def test_missing_labels_are_masked_not_zero_filled(tmp_path, qe_frames, species, model):
    from ferronn.data.datamodule import default_data_path

    images = read(default_data_path(), ":4")
    del images[1].arrays["born_charge"]
    images[2].calc.results.pop("stress")
    path = tmp_path / "partial.extxyz"
    write(path, images)
    frames = read_frames(path, KeyMap())
    assert "stress" not in frames[2] and "born_charges" not in frames[1]
    batch = collate([frame_to_graph(f, species, model.r_max) for f in frames])
    assert batch["stress_mask"].tolist() == [True, True, False, True]
    assert batch["born_charges_mask"].tolist() == [True, False, True, True]
    assert torch.isnan(batch[K.STRESS][2]).all() and torch.isnan(batch[K.BORN_CHARGES][5:10]).all()
    # The stress loss over the batch equals the loss over the three frames that carry stress.
    pred = model(batch, compute_stress=True, training=True)
    loss, terms = weighted_loss(pred, batch, {K.ENERGY: 1.0, K.FORCES: 10.0, K.STRESS: 1.0})
    keep = [0, 1, 3]
    expected = ((pred[K.STRESS][keep] - batch[K.STRESS][keep]) ** 2).mean()
    assert torch.allclose(terms[K.STRESS], expected)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.zero_grad()


def test_neighbour_list_small_cell_includes_self_images():
    cell = torch.eye(3, dtype=torch.float64) * 3.0
    pos = torch.zeros(1, 3, dtype=torch.float64)
    edge_index, shifts = neighbour_list(pos, cell, torch.tensor([True] * 3), r_max=3.5)
    # One atom in a 3 Å cube within 3.5 Å: its 6 face images (3 Å); edge diagonals are 4.24 Å.
    assert edge_index.shape[1] == 6 and (edge_index == 0).all()
    assert sorted(map(tuple, shifts.long().tolist())) == sorted(
        [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)])


def test_neighbour_list_matches_ase(qe_frames):
    from ase.neighborlist import neighbor_list

    f = qe_frames[12]
    atoms = Atoms(numbers=f["atomic_numbers"], positions=f["positions"], cell=f["cell"], pbc=True)
    i, j, S = neighbor_list("ijS", atoms, 5.0)
    ei, shifts = neighbour_list(torch.tensor(f["positions"]), torch.tensor(f["cell"]), torch.tensor([True] * 3), 5.0)
    ours = sorted(zip(ei[0].tolist(), ei[1].tolist(), map(tuple, shifts.long().tolist())))
    theirs = sorted(zip(i.tolist(), j.tolist(), map(tuple, S.tolist())))
    assert ours == theirs


def test_reference_energies_min_norm_for_one_composition(qe_frames, species):
    graphs = [frame_to_graph(f, species, 4.0) for f in qe_frames]
    stats = compute_stats(qe_frames, graphs, [8, 22, 56])
    e0 = np.array(stats.reference_energies)
    energies = np.array([f["energy"] for f in qe_frames])
    # Singular least squares (one composition): Σ E0 over a cell equals the mean cell energy.
    assert e0 @ np.array([3, 1, 1]) == pytest.approx(energies.mean(), abs=1e-8)
    assert stats.energy_shift == pytest.approx(0.0, abs=1e-9)
    forces = np.concatenate([f["forces"].ravel() for f in qe_frames])
    assert stats.force_rms == pytest.approx(np.sqrt(np.mean(forces**2)))
    assert stats.avg_num_neighbors == pytest.approx(np.mean([g[K.EDGE_INDEX].shape[1] / 5 for g in graphs]))


def test_splits_by_seed_and_by_indices():
    split = SplitConfig(val_fraction=0.1, test_fraction=0.2)
    a = split_indices(50, split, seed=3, has_test_file=False)
    b = split_indices(50, split, seed=3, has_test_file=False)
    c = split_indices(50, split, seed=4, has_test_file=False)
    assert a == b and a != c
    train, val, test = a
    assert (len(train), len(val), len(test)) == (36, 4, 10)
    assert sorted(train + val + test) == list(range(50))
    train, val, test = split_indices(59, SplitConfig(indices="0-46", test_indices="47-58", val_count=5), 0, False)
    assert test == list(range(47, 59)) and len(val) == 5 and len(train) == 42
    assert set(train) | set(val) == set(range(47))


def test_datamodule_recipe_split_on_allegro():
    require_shared()
    config = DataConfig(path=str(ALLEGRO), keys=KeyMap(energy="total_energy"),
                        split=SplitConfig(indices="0-46", test_indices="47-58", val_count=5))
    dm = FrameDataModule(config, r_max=4.0).prepare()
    assert [len(dm.graphs[k]) for k in ("train", "val", "test")] == [42, 5, 12]
    assert {int(g[K.FRAME_INDEX]) for g in dm.graphs["test"]} == set(range(47, 59))


def test_separate_test_file(tmp_path):
    images = read(__import__("ferronn.data.datamodule").data.datamodule.default_data_path(), ":")
    write(tmp_path / "train.extxyz", images[:20])
    write(tmp_path / "test.extxyz", images[20:])
    config = DataConfig(path=str(tmp_path / "train.extxyz"), test_path=str(tmp_path / "test.extxyz"),
                        split=SplitConfig(val_count=3))
    dm = FrameDataModule(config, r_max=4.0).prepare()
    assert [len(dm.graphs[k]) for k in ("train", "val", "test")] == [17, 3, 9]
    assert dm.split["test"] == []
