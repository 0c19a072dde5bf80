"""Bad input gets a one-line error naming the file, frame and key, and what was expected."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from ase.io import read, write

from ferronn.data.datamodule import default_data_path
from ferronn.data.frames import KeyMap, read_frames
from ferronn.data.graph import SpeciesTable, frame_to_graph
from ferronn.errors import ConfigError, DataError
from ferronn.train.config import load_recipe
from conftest import ROOT


@pytest.fixture
def images():
    return read(default_data_path(), ":3")


def _write(tmp_path, images, name="bad.extxyz"):
    path = tmp_path / name
    write(path, images)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"file '.*nope.xyz': no such file"):
        read_frames(tmp_path / "nope.xyz")


def test_truncated_file(tmp_path):
    text = open(default_data_path()).read()
    path = tmp_path / "cut.xyz"
    path.write_text(text[: len(text) // 3 + 17])
    with pytest.raises(DataError, match=r"file '.*cut.xyz'"):
        read_frames(path)


def test_label_key_absent_everywhere(tmp_path, images):
    path = _write(tmp_path, images)
    with pytest.raises(DataError, match=r"frame 0, key 'total_energy'.*no frame carries label 'energy'"):
        read_frames(path, KeyMap(energy="total_energy"), labels_needed=("energy", "forces"))


def test_required_label_missing_in_one_frame(tmp_path, images):
    images[2].calc.results.pop("forces")
    path = _write(tmp_path, images)
    with pytest.raises(DataError, match=r"frame 2, key 'forces': required label"):
        read_frames(path, KeyMap(required=["forces"]))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_label(tmp_path, images, bad):
    forces = images[1].get_forces()
    forces[3, 1] = bad
    images[1].calc.results["forces"] = forces
    path = _write(tmp_path, images)
    with pytest.raises(DataError, match=r"frame 1, key 'forces': label 'forces' contains NaN or inf"):
        read_frames(path)


def test_born_charges_wrong_shape(tmp_path, images):
    for atoms in images:
        atoms.arrays["born_charge"] = atoms.arrays["born_charge"][:, :6].copy()
    path = _write(tmp_path, images)
    with pytest.raises(DataError, match=r"frame 0, key 'born_charge': expected Born charges of shape \(5, 9\)"):
        read_frames(path)


def test_stress_wrong_shape(tmp_path, images):
    images[0].info["stress4"] = np.ones(4)
    path = _write(tmp_path, images)
    with pytest.raises(DataError, match=r"frame 0, key 'stress4': expected stress as 3x3, 9 or Voigt 6"):
        read_frames(path, KeyMap(stress="stress4"))


def test_unknown_element_at_inference(tmp_path, images):
    images[1][0].symbol = "Sr"
    path = _write(tmp_path, images)
    frames = read_frames(path)
    with pytest.raises(DataError, match=r"frame 1: element\(s\) \['Sr'\] not known to the model; it knows"):
        frame_to_graph(frames[1], SpeciesTable([8, 22, 56]), 4.0)


def test_overlapping_atoms(tmp_path, images):
    images[0].positions[1] = images[0].positions[0] + [0.1, 0.0, 0.0]
    path = _write(tmp_path, images)
    frames = read_frames(path)
    with pytest.raises(DataError, match=r"frame 0: atoms 0 and 1 are 0.100 Å apart"):
        frame_to_graph(frames[0], SpeciesTable([8, 22, 56]), 4.0)


@pytest.mark.parametrize("cell,kind", [(np.diag([4.0, 4.0, 0.0]), "singular"), (np.diag([4.0, 4.0, -4.0]), "left-handed")])
def test_bad_cell(tmp_path, images, cell, kind):
    images[2].set_cell(cell)
    path = _write(tmp_path, images)
    with pytest.raises(DataError, match=rf"frame 2, key 'Lattice': {kind} cell"):
        read_frames(path)


def test_recipe_unknown_key_and_wrong_type(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train.lrr'"):
        load_recipe(str(recipe))
    recipe.write_text("model:\n  num_channels: sixteen\n")
    with pytest.raises(ConfigError, match=r"key 'model.num_channels' must be int, got 'sixteen'"):
        load_recipe(str(recipe))
    recipe.write_text("train:\n  dtype: float16\n")
    with pytest.raises(ConfigError, match=r"'train.dtype' must be one of"):
        load_recipe(str(recipe))


def test_cli_reports_one_line_and_exits_nonzero(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ferronn.train", "--data", str(tmp_path / "missing.xyz"),
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: file '") and "missing.xyz': no such file" in last
    assert not (tmp_path / "run").exists()  # nothing half-written
