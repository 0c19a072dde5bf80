"""Distillation of a Born committee: teacher labels (mean Z*, exact sum rule) and extra training frames."""

from __future__ import annotations

import ase
import ase.io
import numpy as np
import pytest
import torch

from ferronn import keys as K
from ferronn.data.datamodule import DataConfig, FrameDataModule, SplitConfig, default_data_path
from ferronn.data.graph import collate
from ferronn.errors import DataError
from ferronn.label.teacher import STD_KEY, label_with_teacher, main as teacher_main
from ferronn.models.checkpoint import save
from ferronn.models.committee import BornCommittee
from helpers import build_born, distorted, make_batch


def _atoms(frames, rng, picks=(2, 7, 11)):
    out = []
    for i in picks:
        f = distorted(frames[i], rng)
        out.append(ase.Atoms(numbers=f[K.ATOMIC_NUMBERS], positions=f[K.POSITIONS], cell=f[K.CELL], pbc=True))
    return out


def test_teacher_labels_are_the_committee_mean_with_the_sum_rule(qe_frames, species, rng):
    members = [build_born(qe_frames, seed=s) for s in (0, 1, 2)]
    teacher = BornCommittee(members)
    atoms = _atoms(qe_frames, rng)
    labelled = label_with_teacher(teacher, atoms)
    batch = make_batch([dict(qe_frames[0], positions=a.positions, cell=a.cell.array) for a in atoms], species,
                       members[0].r_max)
    stacked = torch.stack([m(batch)[K.BORN_CHARGES] for m in members]).detach().numpy()
    got = np.concatenate([a.arrays["born_charge"] for a in labelled]).reshape(-1, 3, 3)
    np.testing.assert_allclose(got, stacked.mean(0), rtol=0, atol=1e-12)
    spread = np.concatenate([a.arrays[STD_KEY] for a in labelled]).reshape(-1, 3, 3)
    np.testing.assert_allclose(spread, stacked.std(0, ddof=1), rtol=0, atol=1e-12)
    assert spread.max() > 1e-4  # different weights disagree: the mean is not one member's answer
    for a in labelled:  # the mean of sum-rule-exact tensors is sum-rule exact
        assert np.abs(a.arrays["born_charge"].sum(0)).max() < 1e-10
        assert not a.calc and K.ENERGY not in a.info  # nothing but the teacher's Z* is a label


def test_teacher_cli_writes_frames_the_trainer_reads_only_into_train(qe_frames, rng, tmp_path, capsys):
    paths = []
    for s in (0, 1):
        paths.append(str(tmp_path / f"born{s}.ckpt"))
        save(build_born(qe_frames, seed=s), paths[-1])
    snapshots = tmp_path / "md.xyz"
    ase.io.write(snapshots, _atoms(qe_frames, rng, picks=(1, 3, 5, 9)), format="extxyz")
    out = tmp_path / "teacher.xyz"
    assert teacher_main(["--teacher", *paths, "--in", str(snapshots), "--index", "1:", "--out", str(out)]) == 0
    assert "wrote 3 frames with the mean Z* of 2 Born models" in capsys.readouterr().out
    assert len(ase.io.read(out, ":")) == 3

    def split(extra):
        config = DataConfig(path=default_data_path(), extra_train_paths=extra,
                            split=SplitConfig(val_indices="0-4", test_indices="5-9"))
        return FrameDataModule(config, 4.0, labels_needed=(K.BORN_CHARGES,)).prepare()

    plain, mixed = split([]), split([str(out)])
    assert len(mixed.graphs["train"]) == len(plain.graphs["train"]) + 3
    for name in ("val", "test"):  # teacher frames never reach val or test
        assert len(mixed.graphs[name]) == len(plain.graphs[name])
    assert mixed.stats.num_frames == plain.stats.num_frames + 3
    batch = collate(mixed.graphs["train"][-3:])
    assert bool(batch[K.mask_key(K.BORN_CHARGES)].all())
    assert K.ENERGY not in mixed.graphs["train"][-1]  # no DFT energy: the label is absent, never a zero


def test_teacher_and_extra_frames_reject_bad_input(qe_frames, rng, tmp_path, capsys):
    one = str(tmp_path / "born.ckpt")
    save(build_born(qe_frames), one)
    snapshots = tmp_path / "md.xyz"
    ase.io.write(snapshots, _atoms(qe_frames, rng), format="extxyz")
    assert teacher_main(["--teacher", one, "--in", str(snapshots), "--out", str(tmp_path / "t.xyz")]) != 0
    assert "single Born model, not a committee" in capsys.readouterr().err
    assert not (tmp_path / "t.xyz").exists()
    config = DataConfig(path=default_data_path(), extra_train_paths=[str(snapshots)],
                        split=SplitConfig(val_indices="0-4", test_indices="5-9"))
    with pytest.raises(DataError, match=r"md\.xyz' \(data\.extra_train_paths\): no frame carries any of the labels"):
        FrameDataModule(config, 4.0, labels_needed=(K.BORN_CHARGES,)).prepare()
