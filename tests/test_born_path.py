"""The Born-path loss: Z* integrated between two nearby frames against their Berry-phase dipole change, folded by
the polarization quantum; pairs only among training frames; a recipe that cannot use it says so."""

from __future__ import annotations

import ase
import ase.io
import numpy as np
import pytest
import torch

from ferronn import keys as K
from ferronn.data.datamodule import DataConfig, FrameDataModule, SplitConfig
from ferronn.data.frames import KeyMap
from ferronn.data.graph import SpeciesTable, collate, frame_to_graph
from ferronn.errors import ConfigError
from ferronn.models.analytic import ConstantBornModel
from ferronn.train.born_path import BornPath, check_recipe, path_residual, training_pairs, validation_pairs
from ferronn.train.config import load_recipe
from helpers import build_born

A = 4.0  # Å, cubic perovskite cell
REFERENCE = np.array([[0, 0, 0], [2, 2, 2], [2, 2, 0], [2, 0, 2], [0, 2, 2]], dtype=float)  # Ba Ti O O O
NUMBERS = np.array([56, 22, 8, 8, 8])


def constant_born():
    """Z* (5, 3, 3) in e with Σ_κ Z*_κ = 0 and off-diagonal parts, so the trapezoid is tested on a full tensor."""
    z = np.zeros((5, 3, 3))
    z[0], z[1] = 2.7 * np.eye(3), 7.2 * np.eye(3)
    z[1, 0, 2], z[1, 2, 1] = 0.3, -0.2
    z[2:] = -3.3 * np.eye(3)
    z[2, 0, 2], z[3, 2, 1] = -0.3, 0.2
    assert abs(z.sum(0)).max() < 1e-12
    return z


def frames_consistent_with(z, count=4, seed=0):
    """Frames displaced by ≤ 0.1 Å whose dipoles M = M₀ + Σ Z*·Δu are exact for the constant ``z``; frame 2's
    dipole sits one quantum e·a along x higher, frame 3 has an atom wrapped into the next cell."""
    rng = np.random.default_rng(seed)
    cell = A * np.eye(3)
    frames = []
    for k in range(count):
        du = rng.uniform(-0.05, 0.05, REFERENCE.shape)
        dipole = np.array([1.0, 2.0, 3.0]) + np.einsum("kab,kb->a", z, du) + (cell[0] if k == 2 else 0.0)
        positions = REFERENCE + du + (np.outer(np.arange(5) == 4, cell[1]) if k == 3 else 0.0)
        frames.append({"index": k, K.POSITIONS: positions, K.ATOMIC_NUMBERS: NUMBERS, K.CELL: cell,
                       K.PBC: np.ones(3, bool), K.BORN_CHARGES: z, K.POLARIZATION: dipole})
    return frames


def graphs_of(frames):
    species = SpeciesTable([8, 22, 56])
    return [frame_to_graph(f, species, 4.5) for f in frames]


def path_losses(model, graphs, path):
    """The step loss with each graph alone in a batch, every partner visited (one epoch per partner)."""
    out = []
    for graph in graphs:
        batch = collate([graph], torch.float64)
        born = model(batch)[K.BORN_CHARGES]
        out += [path.step_loss(model, batch, born, epoch) for epoch in range(3)]
    return out


def test_a_constant_born_model_integrates_consistent_dipoles_exactly():
    z = constant_born()
    graphs = graphs_of(frames_consistent_with(z))
    path = BornPath(graphs, max_du=0.25)
    assert len(path) == 6  # every pair, including the wrapped atom (minimum image) and the shifted branch
    model = ConstantBornModel(torch.tensor(z), NUMBERS.tolist())
    losses = path_losses(model, graphs, path)
    assert max(float(x) for x in losses) < 1e-10


def test_a_born_model_off_the_dipoles_is_penalised_with_a_gradient():
    frames = frames_consistent_with(constant_born())
    graphs = graphs_of(frames)
    path = BornPath(graphs, max_du=0.25)
    model = build_born(frames).train()
    batch = collate([graphs[0]], torch.float64)
    loss = path.step_loss(model, batch, model(batch)[K.BORN_CHARGES], epoch=1)
    assert float(loss.detach()) > 1e-6
    loss.backward()
    grad = sum(float(p.grad.abs().sum()) for p in model.parameters() if p.grad is not None)
    assert grad > 0
    # a frame with no partner in the batch adds nothing (and costs no extra evaluation)
    lone = graphs_of(frames_consistent_with(constant_born(), seed=7))[:1]
    assert path.step_loss(model, collate(lone, torch.float64), None, 0) is None


def test_the_fold_counts_one_polarization_quantum_as_zero_but_not_a_fraction():
    cell = torch.tensor([[4.0, 0, 0], [0.5, 4.2, 0], [0, 0, 4.3]], dtype=torch.float64)
    born = torch.tensor(constant_born())
    du = torch.full((5, 3), 0.01, dtype=torch.float64)
    exact = torch.einsum("kab,kb->a", born, du)
    folded = path_residual(born, born, du, exact + cell[1] - 2 * cell[2], cell)
    assert float(folded.abs().max()) < 1e-12
    part = path_residual(born, born, du, exact + 0.3 * cell[0], cell)
    assert torch.allclose(part, 0.3 * cell[0], atol=1e-12)


def write_frames(path, frames):
    images = []
    for f in frames:
        atoms = ase.Atoms(numbers=f[K.ATOMIC_NUMBERS], positions=f[K.POSITIONS], cell=f[K.CELL], pbc=True)
        atoms.info["dipole_eA"] = f[K.POLARIZATION]
        atoms.arrays["born_charge"] = f[K.BORN_CHARGES].reshape(-1, 9)
        images.append(atoms)
    ase.io.write(path, images, format="extxyz")


def datamodule(path, dipole_key="dipole_eA", **split):
    keys = KeyMap(energy=None, forces=None, stress=None, born_charges="born_charge", polarization=dipole_key)
    config = DataConfig(path=str(path), keys=keys, split=SplitConfig(**split))
    return FrameDataModule(config, 4.5, labels_needed=(K.BORN_CHARGES,)).prepare()


def test_validation_and_test_frames_are_never_paired_for_training(tmp_path):
    write_frames(tmp_path / "f.xyz", frames_consistent_with(constant_born(), count=8))
    dm = datamodule(tmp_path / "f.xyz", train_indices="0-3", val_indices="4,5", test_indices="6,7")
    loss = load_recipe(overrides={"train.loss.born_path_weight": 1.0}).train.loss
    path = training_pairs(dm, loss)
    members = {int(path.graphs[k][K.FRAME_INDEX]) for p in path.pairs for k in (p.i, p.j)}
    assert len(path) == 6 and members == {0, 1, 2, 3}
    val = validation_pairs(dm, loss)  # reported only: the one pair within the validation split
    assert [(int(val.graphs[p.i][K.FRAME_INDEX]), int(val.graphs[p.j][K.FRAME_INDEX])) for p in val.pairs] == [(4, 5)]


def test_a_recipe_that_cannot_use_the_term_is_one_clear_error(tmp_path):
    config = load_recipe(overrides={"task": "born", "train.loss.born_path_weight": 1.0})
    with pytest.raises(ConfigError, match=r"train.loss.born_path_weight > 0 needs data.keys.polarization"):
        check_recipe(config)
    ddp = load_recipe(overrides={"task": "born", "train.loss.born_path_weight": 1.0, "train.devices": 2,
                                 "data.keys.polarization": "polarization"})
    with pytest.raises(ConfigError, match=r"born_path_weight > 0 with DDP"):
        check_recipe(ddp)
    write_frames(tmp_path / "f.xyz", frames_consistent_with(constant_born(), count=4))
    dm = datamodule(tmp_path / "f.xyz", train_indices="0-1", val_indices="2", test_indices="3")
    loss = load_recipe(overrides={"train.loss.born_path_weight": 1.0, "train.loss.born_path_max_du": 0.01}).train.loss
    with pytest.raises(ConfigError, match=r"no two of the 2 training frames .*train.loss.born_path_max_du = 0.01"):
        training_pairs(dm, loss)
    misnamed = datamodule(tmp_path / "f.xyz", "dipole", train_indices="0-1", val_indices="2", test_indices="3")
    with pytest.raises(ConfigError, match=r"no training frame .* under data.keys.polarization = 'dipole'"):
        training_pairs(misnamed, loss)


def test_the_training_cli_refuses_the_term_without_a_dipole_key(tmp_path, capsys):
    from ferronn.train.__main__ import main

    code = main(["--out", str(tmp_path / "run"), "--set", "task=born", "--set", "train.loss.born_path_weight=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "data.keys.polarization" in err[-1] and not (tmp_path / "run").exists()


def test_a_training_run_logs_the_term_for_training_and_validation_pairs(tmp_path, capsys):
    import csv

    from ferronn.train.__main__ import main
    from helpers import SMALL_BORN

    write_frames(tmp_path / "f.xyz", frames_consistent_with(constant_born(), count=8))
    born = [f"born_model.{k}={v}" for k, v in SMALL_BORN.items() if k != "radial_MLP"] + ["born_model.radial_MLP=[16]"]
    sets = ["task=born", "data.keys.energy=null", "data.keys.forces=null", "data.keys.stress=null",
            "data.keys.polarization=dipole_eA", "data.split.train_indices=0-3", "data.split.val_indices=4-5",
            "data.split.test_indices=6-7", "train.loss.born_path_weight=1", "train.progress_bar=false"] + born
    args = ["--data", str(tmp_path / "f.xyz"), "--out", str(tmp_path / "run"), "--epochs", "2"]
    assert main(args + [item for s in sets for item in ("--set", s)]) == 0
    assert "Born path loss: 6 pair(s) of training frames" in capsys.readouterr().out
    rows = list(csv.DictReader(open(next((tmp_path / "run" / "logs").glob("*/metrics.csv")))))
    train = [float(r["train_born_path_loss"]) for r in rows if r.get("train_born_path_loss")]
    val = [float(r["val_born_path_loss"]) for r in rows if r.get("val_born_path_loss")]
    assert len(train) == 2 and len(val) == 2 and all(x > 0 for x in train + val)
