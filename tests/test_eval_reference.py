"""`ferronn.eval --reference`: a peer's prediction file scored against the same labels as ours, side by side."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.io import read, write

from ferronn.data.datamodule import default_data_path
from ferronn.eval import main as eval_main
from conftest import ALLEGRO, ROOT, require_shared

FAST = ROOT / "checkpoints" / "batio3-allegro-pol"
QE_SMALL = ROOT / "checkpoints" / "batio3-qe-small"


@pytest.mark.slow
def test_peer_predictions_scored_like_an_independent_numpy_count(tmp_path, capsys):
    """On held-out frames 47-58 the reference column equals Z* MAE and force RMSE counted here with numpy from the
    two files (the SOURCE.md figures: 0.0142 e, 22.4 meV/Å), and our column equals the shipped pair's record."""
    labels_path = require_shared(ALLEGRO)
    peer_path = labels_path.parent / "allegro_pol_predictions.xyz"
    out = tmp_path / "cmp.json"
    code = eval_main(["--checkpoint", str(FAST / "energy.ckpt"), str(FAST / "born.ckpt"), "--data", str(labels_path),
                      "--keys", "energy=total_energy", "--index", "47:", "--reference", str(peer_path),
                      "--reference-name", "allegro-pol", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    theirs, ours = result["reference_metrics"], result["metrics"]
    labels, peer = read(labels_path, "47:"), read(peer_path, "47:")
    z_err = np.concatenate([p.arrays["born_charge"] - a.arrays["born_charge"] for a, p in zip(labels, peer)])
    f_err = np.concatenate([p.get_forces() - a.calc.results["forces"] for a, p in zip(labels, peer)])
    e_err = [(p.get_potential_energy() - a.info["total_energy"]) / len(a) for a, p in zip(labels, peer)]
    assert theirs["born_mae"] == pytest.approx(np.abs(z_err).mean(), rel=1e-6)
    assert theirs["forces_rmse"] == pytest.approx(1e3 * np.sqrt((f_err**2).mean()), rel=1e-6)
    assert theirs["energy_mae"] == pytest.approx(1e3 * np.abs(e_err).mean(), rel=1e-6)
    assert theirs["born_mae"] == pytest.approx(0.0142, abs=5e-5) and theirs["forces_rmse"] == pytest.approx(22.4, abs=0.05)
    recorded = json.loads((FAST / "metrics.json").read_text())["test"]
    assert ours["born_mae"] == pytest.approx(recorded["born_mae"], rel=1e-6)
    assert ours["forces_rmse"] == pytest.approx(recorded["forces_rmse"], rel=1e-6)
    table = capsys.readouterr().out
    assert "allegro-pol MAE" in table and "MAE ratio" in table


def test_reference_equal_to_the_labels_scores_zero(tmp_path):
    data = default_data_path()
    out = tmp_path / "cmp.json"
    code = eval_main(["--checkpoint", str(QE_SMALL / "energy.ckpt"), str(QE_SMALL / "born.ckpt"), "--data", str(data),
                      "--index", "0:6", "--reference", str(data), "--json", str(out)])
    assert code == 0
    theirs = json.loads(out.read_text())["reference_metrics"]
    assert {"energy_mae", "forces_rmse", "stress_mae", "born_mae"} <= theirs.keys()
    assert max(theirs.values()) == 0.0


def _mismatch(images, kind):
    if kind == "count":
        return images[:-1]
    bad = [a.copy() for a in images]
    if kind == "positions":
        bad[3].positions[2, 0] += 1e-3
    else:
        numbers = bad[3].numbers.copy()
        bad[3].numbers = numbers[::-1]
    return bad


@pytest.mark.parametrize("kind, message", [
    ("count", r"5 frame\(s\) against 6"),
    ("positions", r"frame 3 .*positions 0.001 Å apart"),
    ("species", r"frame 3 .*other species"),
])
def test_misaligned_reference_exits_2_with_one_line_naming_both_files(tmp_path, capsys, kind, message):
    import re

    data = default_data_path()
    images = read(data, "0:6")
    ref = tmp_path / "peer.extxyz"
    write(ref, _mismatch(images, kind))
    code = eval_main(["--checkpoint", str(QE_SMALL / "energy.ckpt"), "--data", str(data), "--index", "0:6",
                      "--reference", str(ref)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert str(ref) in err and str(data) in err and re.search(message, err), err
