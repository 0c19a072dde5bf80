"""Exported models (torch.export .pt2): same numbers as the checkpoints, any batch size, no pickle, MD-ready."""

from __future__ import annotations

import pickle
import zipfile

import ase.io
import pytest
import torch

from ferronn import keys as K
from ferronn.data.datamodule import default_data_path
from ferronn.data.graph import SpeciesTable
from ferronn.data.verlet import atoms_batch
from ferronn.errors import CheckpointError
from ferronn.export import main as export_main
from ferronn.md.engine import Simulation
from ferronn.models.loading import load
from ferronn.models.export import load_exported
from helpers import ROOT
from helpers import md_config as _config

SHIPPED = ROOT / "checkpoints" / "batio3-qe-small"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    assert export_main(["--checkpoint", str(SHIPPED / "energy.ckpt"), str(SHIPPED / "born.ckpt"),
                        "--out-dir", str(out)]) == 0
    return out


def test_exported_models_give_the_checkpoints_numbers_for_any_batch(exported):
    energy, born = load(SHIPPED / "energy.ckpt"), load(SHIPPED / "born.ckpt")
    e_x, b_x = load(exported / "energy.pt2", kind="energy"), load(exported / "born.pt2", kind="born")
    frames = ase.io.read(default_data_path(), ":")
    species = SpeciesTable(energy.atomic_numbers)
    # Batches of other sizes than the export example: 1 structure, 3 of different sizes, a 20-atom supercell.
    for structures in ([frames[3]], [frames[5].repeat((2, 2, 2)), frames[13], frames[20].repeat((1, 2, 1))],
                       [frames[12].repeat((2, 2, 1))]):
        batch = atoms_batch(structures, species, energy.r_max, torch.float64, "cpu")
        a, b = e_x(batch, compute_stress=True), energy(batch, compute_stress=True)
        for key in (K.ENERGY, K.FORCES, K.STRESS):
            torch.testing.assert_close(a[key], b[key].detach(), rtol=0, atol=1e-10)
        torch.testing.assert_close(b_x(batch)[K.BORN_CHARGES], born(batch)[K.BORN_CHARGES], rtol=0, atol=1e-12)


def test_loading_an_export_unpickles_nothing(exported, monkeypatch):
    with zipfile.ZipFile(exported / "energy.pt2") as archive:
        sizes = {info.filename: info.file_size for info in archive.infolist()}
    assert all(name.startswith("energy/") for name in sizes) and not [n for n in sizes if n.endswith(".pkl")]
    assert [size for name, size in sizes.items() if "sample_inputs" in name] == [0]  # no example inputs kept

    def refuse(*args, **kwargs):
        raise AssertionError("an export load reached pickle/torch.load")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    model = load_exported(exported / "born.pt2")
    assert model.kind == "born" and model.atomic_numbers == [8, 22, 56]


def test_md_with_exported_models_follows_the_checkpoints_trajectory(exported, tmp_path):
    atoms = ase.io.read(default_data_path(), 1).repeat((2, 1, 1))
    runs = []
    for name, paths in (("ckpt", (SHIPPED / "energy.ckpt", SHIPPED / "born.ckpt")),
                        ("pt2", (exported / "energy.pt2", exported / "born.pt2"))):
        models = [load(p, kind=k) for p, k in zip(paths, ("energy", "born"))]
        cfg = _config(steps=6, fields=[[0.0, 0.0, 0.02]], seed=4, out=str(tmp_path / name))
        sim = Simulation(cfg, *models, atoms)
        sim.run(progress=False)
        runs.append(sim.state)
    torch.testing.assert_close(runs[0].positions, runs[1].positions, rtol=0, atol=1e-10)
    torch.testing.assert_close(runs[0].dipole, runs[1].dipole, rtol=0, atol=1e-10)


def test_export_errors_name_the_file(exported, tmp_path):
    with pytest.raises(CheckpointError, match="holds a 'energy' model, expected 'born'"):
        load(exported / "energy.pt2", kind="born")
    with pytest.raises(CheckpointError, match="runs in torch.float64 only"):
        load(exported / "energy.pt2", dtype=torch.float32)
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a .pt2 archive"):
        load(bad)

