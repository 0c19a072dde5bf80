"""Bad input gets a one-line error naming the file, frame and key, and what was expected."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase.io import read, write

from ferronn.data.datamodule import default_data_path
from ferronn import keys as K
from ferronn.data.frames import KeyMap, frame_from_atoms, read_frames
from ferronn.data.graph import SpeciesTable, frame_to_graph
from ferronn.errors import ConfigError, DataError
from ferronn.train.config import load_recipe
from helpers import ROOT


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


@pytest.mark.slow  # subprocess
def test_cli_reports_one_line_and_exits_nonzero(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ferronn.train", "--data", str(tmp_path / "missing.xyz"),
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: file '") and "missing.xyz': no such file" in last
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_born_charges_accepted_as_n9_and_n33(images):
    """(N, 9) row-major and (N, 3, 3) hold the same tensor; (N, 6) is refused (test_born_charges_wrong_shape)."""
    flat = frame_from_atoms(images[0], KeyMap())[K.BORN_CHARGES]
    atoms = images[0].copy()
    atoms.arrays["born_charge"] = images[0].arrays["born_charge"].reshape(-1, 3, 3)
    np.testing.assert_array_equal(frame_from_atoms(atoms, KeyMap())[K.BORN_CHARGES], flat)


# --- the command-line matrix: every case exits 2 with one line naming file/frame/key and leaves no output ----------

QE_SMALL = ROOT / "checkpoints" / "batio3-qe-small"
MD_MODELS = ["--set", f"energy={QE_SMALL / 'energy.ckpt'}", "--set", f"born={QE_SMALL / 'born.ckpt'}"]


def _edit(images, how):
    images = [a.copy() for a in images]
    for a, b in zip(images, read(default_data_path(), ":8")):
        a.calc = b.calc
    how(images)
    return images


def _nan_forces(images):
    forces = images[1].get_forces().copy()
    forces[3, 1] = np.nan
    images[1].calc.results["forces"] = forces


def _born6(images):
    for a in images:
        a.arrays["born_charge"] = a.arrays["born_charge"][:, :6].copy()


def _close(images):
    images[0].positions[1] = images[0].positions[0] + [0.2, 0.0, 0.0]


def _sr(images):
    images[1][0].symbol = "Sr"


def _singular(images):
    images[2].set_cell(np.diag([4.0, 4.0, 0.0]))


def _left_handed(images):
    images[0].set_cell(-images[0].cell.array, scale_atoms=False)


def _no_forces(images):
    images[2].calc.results.pop("forces")


# (name, CLI, edit of the 8 data frames or None, argv after the data/out options, expected text in the error line)
MATRIX = [
    ("empty file", "train", "empty", [], r"file '[^']*data.xyz': is empty"),
    ("truncated extxyz", "train", "truncated", [], r"file '[^']*data.xyz': could not be read"),
    ("frame missing a required label", "train", _no_forces, ["--set", "data.keys.required=[forces]"],
     r"frame 2, key 'forces': required label 'forces' is missing"),
    ("NaN label", "train", _nan_forces, [], r"frame 1, key 'forces': label 'forces' contains NaN or inf"),
    ("Born charges N x 6", "train", _born6, [], r"frame 0, key 'born_charge': expected Born charges of shape \(5, 9\)"),
    ("atoms 0.2 A apart", "train", _close, [], r"frame 0: atoms 0 and 1 are 0.200 Å apart"),
    ("singular cell", "train", _singular, [], r"frame 2, key 'Lattice': singular cell"),
    ("empty split", "train", None, ["--set", "data.split.val_count=0"], r"data split of '[^']*': the val split is empty"),
    ("recipe unknown key", "train", None, ["--set", "train.lrr=0.1"], r"unknown key 'train.lrr'"),
    ("recipe wrong type", "train", None, ["--set", "model.num_channels=sixteen"],
     r"key 'model.num_channels' must be int, got 'sixteen'"),
    ("element the model does not know", "eval", _sr, [], r"frame 1: element\(s\) \['Sr'\] not known to the model"),
    ("not a checkpoint", "eval-junk", None, [], r"junk.ckpt.*not a ferronn checkpoint"),
    ("checkpoint of another kind", "md", None, ["--set", f"energy={QE_SMALL / 'born.ckpt'}"],
     r"born.ckpt': holds a 'born' model, expected 'energy'"),
    ("field of the wrong shape", "md", None, ["--set", "fields=[[0, 0]]"], r"key 'fields' must be .*\[Ex, Ey, Ez\]"),
    ("field not a list of vectors", "md", None, ["--set", "fields=[0, 0, 0.1]"],
     r"key 'fields' must be list of list of float"),
    ("frame index past the end", "md", None, ["--set", "index=9"], r"frame 9 \(key 'index'\): no such frame; the file holds 8"),
    ("MD structure with an unknown element", "md", _sr, ["--set", "index=1"], r"data.xyz', frame 1: element\(s\) \['Sr'\]"),
    ("MD structure with a left-handed cell", "md", _left_handed, [], r"frame 0, key 'Lattice': left-handed cell"),
    ("negative temperature", "md", None, ["--set", "temperatures=[300, -5]"], r"key 'temperatures' must be .*>= 0 K"),
]


@pytest.mark.parametrize("name,cli,edit,argv,expected", MATRIX, ids=[m[0] for m in MATRIX])
def test_cli_bad_input_matrix(tmp_path, name, cli, edit, argv, expected, capsys):
    from ferronn.eval import main as eval_main
    from ferronn.md.__main__ import main as md_main
    from ferronn.train.__main__ import main as train_main

    data, out = tmp_path / "data.xyz", tmp_path / "out"
    frames = read(default_data_path(), ":8")
    if edit == "empty":
        data.write_text("")
    elif edit == "truncated":
        write(data, frames)
        text = data.read_text()
        data.write_text(text[: len(text) // 2 + 7])
    else:
        write(data, _edit(frames, edit) if edit else frames)
    if cli == "train":
        code = train_main(["--data", str(data), "--out", str(out), "--epochs", "1", *argv])
    elif cli == "eval":
        code = eval_main(["--checkpoint", str(QE_SMALL / "energy.ckpt"), "--data", str(data), "--json", str(out)])
    elif cli == "eval-junk":
        junk = tmp_path / "junk.ckpt"
        torch.save({"weights": torch.zeros(3)}, junk)
        code = eval_main(["--checkpoint", str(junk), "--data", str(data), "--json", str(out)])
    else:
        code = md_main([*MD_MODELS, "--set", f"structure={data}", "--out", str(out), "--steps", "5", "--no-progress",
                        *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, f"{name}: exit code {code}"
    assert len(err) >= 1 and err[-1].startswith("error: ") and re.search(expected, err[-1]), (name, err[-1:])
    assert not out.exists(), f"{name}: left a partial output at {out}"
