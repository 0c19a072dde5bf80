"""Committees (mean and spread of energy, forces, stress, Z*) and the active-learning loop around them."""

from __future__ import annotations

import copy
import csv
import json

import ase.io
import numpy as np
import pytest
import torch
import yaml

from ferronn import keys as K
from ferronn.active.config import load_active_config
from ferronn.active.loop import COLUMNS, ActiveLearning
from ferronn.active.select import Candidate, select_frames
from ferronn.data.datamodule import default_data_path
from ferronn.md.engine import Simulation
from ferronn.models.committee import BornCommittee, EnergyCommittee
from helpers import ROOT, TINY_SET, build_born, build_model, distorted, make_batch
from helpers import frame_atoms as _atoms
from helpers import md_config as _config


@pytest.fixture(scope="module")
def members(qe_frames):
    return [build_model(qe_frames, seed=s) for s in (0, 1, 2)], [build_born(qe_frames, seed=s) for s in (0, 1)]


def _batch(qe_frames, species, rng, r_max):
    frames = [distorted(qe_frames[i], rng) for i in (1, 5, 12)]
    return make_batch(frames, species, r_max)


def test_identical_members_have_zero_spread_and_the_single_models_answer(qe_frames, species, members, rng):
    (energy, _, _), (born, _) = members
    batch = _batch(qe_frames, species, rng, energy.r_max)
    single = energy(batch, compute_forces=True, compute_stress=True)
    out = EnergyCommittee([energy, copy.deepcopy(energy)])(batch, compute_forces=True, compute_stress=True)
    for key in (K.ENERGY, K.FORCES, K.STRESS):
        torch.testing.assert_close(out[key], single[key], rtol=0, atol=1e-12)
        assert torch.count_nonzero(out[key + K.STD_SUFFIX]) == 0
    z = BornCommittee([born, copy.deepcopy(born)])(batch)
    torch.testing.assert_close(z[K.BORN_CHARGES], born(batch)[K.BORN_CHARGES], rtol=0, atol=1e-12)
    assert torch.count_nonzero(z[K.BORN_CHARGES_STD]) == 0


def test_committee_members_keep_their_own_forces_and_stress(qe_frames, species, members, rng):
    """One backward pass for all members still gives each member its own −∂U/∂r and stress."""
    energies, borns = members
    batch = _batch(qe_frames, species, rng, energies[0].r_max)
    alone = [m(batch, compute_forces=True, compute_stress=True) for m in energies]
    out = EnergyCommittee(energies)(batch, compute_forces=True, compute_stress=True)
    for key in (K.ENERGY, K.FORCES, K.STRESS):
        stacked = torch.stack([a[key].detach() for a in alone])
        torch.testing.assert_close(out[key], stacked.mean(0), rtol=0, atol=1e-10)
        torch.testing.assert_close(out[key + K.STD_SUFFIX], stacked.std(0), rtol=0, atol=1e-10)
    assert float(out[K.FORCES_STD].detach().max()) > 1e-3  # different weights do disagree
    z = BornCommittee(borns)(batch)
    assert torch.abs(z[K.BORN_CHARGES].reshape(3, 5, 3, 3).sum(1)).max() < 1e-12  # ASR survives the mean
    assert float(z[K.BORN_CHARGES_STD].max()) > 1e-4


def test_selection_picks_exactly_the_frames_above_threshold():
    spreads = [(0, 10, 0.05, 0.01), (0, 20, 0.15, 0.01), (0, 30, 0.30, 0.01), (1, 10, 0.02, 0.25),
               (1, 20, 0.09, 0.19), (1, 30, 0.10, 0.20), (2, 10, 0.50, 0.50)]
    candidates = [Candidate(*s) for s in spreads]
    # Above 0.1 eV/Å or 0.2 e, strictly: (0,20), (0,30), (1,10), (2,10); (1,30) sits on both thresholds.
    assert select_frames(candidates, 0.1, 0.2, min_spacing=0, max_count=99) == [1, 2, 3, 6]
    assert select_frames(candidates, 0.1, 0.0, min_spacing=0, max_count=99) == [1, 2, 6]  # forces only
    assert select_frames(candidates, 0.0, 0.2, min_spacing=0, max_count=99) == [3, 6]  # Z* only
    # Within 20 steps of a more uncertain frame of the same replica a frame is skipped; the most uncertain first.
    assert select_frames(candidates, 0.1, 0.2, min_spacing=20, max_count=99) == [2, 3, 6]
    assert select_frames(candidates, 0.1, 0.2, min_spacing=0, max_count=2) == [2, 6]
    assert select_frames(candidates, 1.0, 1.0, min_spacing=0, max_count=99) == []
    # Past the upper bounds a frame is failed exploration: (2,10) goes, the next most uncertain take its place.
    assert select_frames(candidates, 0.1, 0.2, min_spacing=0, max_count=2, force_std_max=0.4) == [1, 2]
    assert select_frames(candidates, 0.1, 0.2, min_spacing=0, max_count=99, born_std_max=0.3) == [1, 2, 3]


def test_selection_skips_collapsed_frames():
    """A frame with two atoms closer than min_distance is not sent to DFT, however uncertain."""
    good = ase.io.read(default_data_path(), index=1)  # cubic BaTiO3, a = 4.00 Å: Ti–O 2.0 Å
    bad = good.copy()
    bad.positions[1] = bad.positions[0] + [1.0, 0.0, 0.0]  # 1.0 Å: a collapsed Ti–O or Ba–O pair
    across = good.copy()  # the same 1.0 Å pair, seen only through the periodic boundary
    across.positions[1] = across.positions[0] - [1.0, 0.0, 0.0]
    across.wrap()
    candidates = [Candidate(0, 10, 0.2, 0.0, good), Candidate(1, 10, 0.9, 0.0, bad), Candidate(2, 10, 0.5, 0.0, across)]
    assert select_frames(candidates, 0.1, 0.0, min_spacing=0, max_count=3) == [0, 1, 2]
    assert select_frames(candidates, 0.1, 0.0, min_spacing=0, max_count=3, min_distance=1.5) == [0]


def test_committee_md_logs_its_spread_and_the_calculator_returns_it(qe_frames, members, tmp_path):
    from ferronn import FerroCalculator

    energies, borns = members
    energy, born = EnergyCommittee(energies[:2]), BornCommittee(borns)
    cfg = _config(temperatures=[300.0, 600.0], steps=20, log_every=10, out=str(tmp_path))
    sim = Simulation(cfg, energy, born, _atoms(qe_frames[1]))
    sim.run(progress=False)
    with open(tmp_path / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and all(float(r["force_std_max_eV_A"]) > 0 and float(r["born_std_max_e"]) > 0
                                  for r in rows)
    calc = FerroCalculator(energy, born=born, device="cpu")
    atoms = _atoms(qe_frames[5])
    atoms.calc = calc
    atoms.get_forces()
    assert calc.results["forces_std"].shape == (5, 3) and calc.results["energy_std"] >= 0
    assert calc.results["born_charges_std"].shape == (5, 3, 3)


@pytest.mark.slow  # trains committees in rounds
def test_active_learning_loop_runs_resumes_and_reports(tmp_path):
    """Seed 20 real QE frames, test on 9 others; the 'DFT' is the shipped small model (a cheap, deterministic
    stand-in for QE). One round explores, selects, labels, retrains warm-started and writes its table and plot;
    a kill during labelling is resumed without redoing or miscounting DFT calls."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from ferronn import FerroCalculator

    frames = ase.io.read(default_data_path(), ":")
    ase.io.write(tmp_path / "seed.xyz", frames[:20])
    ase.io.write(tmp_path / "test.xyz", frames[20:])
    shipped = ROOT / "checkpoints" / "batio3-qe-small"
    truth = FerroCalculator(str(shipped / "energy.ckpt"), born=str(shipped / "born.ckpt"), device="cpu")
    calls = []

    def labeller(atoms, workdir):
        calls.append(workdir)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while the second frame is in DFT
        out = atoms.copy()
        out.calc = truth
        results = dict(energy=out.get_potential_energy(), forces=out.get_forces(), stress=out.get_stress())
        out.arrays["born_charge"] = truth.get_born_charges(out).reshape(len(out), 9)
        out.calc = SinglePointCalculator(out, **results)
        return out

    train_set = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in TINY_SET)}
    train_set.update({"data.batch_size": 10, "train.ema_decay": 0.0})
    settings = {"out": str(tmp_path / "al"), "seed_data": str(tmp_path / "seed.xyz"),
                "test_data": str(tmp_path / "test.xyz"), "train_set": train_set, "committee": 2, "epochs": 1,
                "retrain_epochs": 1, "max_rounds": 1, "dft_budget": 2, "md.steps": 20,
                "explore.check_every": 10, "md.temperatures": [300.0, 900.0], "md.device": "cpu",
                "select.force_std": 1e-4, "select.born_std": 1e-4, "select.min_spacing_steps": 0,
                "select.max_per_round": 5}

    def loop():
        return ActiveLearning(load_active_config(None, settings), labeller=labeller, log=lambda *_: None)

    with pytest.raises(KeyboardInterrupt):
        loop().run()
    assert len(ase.io.read(tmp_path / "al" / "labelled.xyz", ":")) == 1  # the first frame is safe on disk
    ledger = loop().run()  # the same command again: resumes
    assert len(calls) == 3  # only the interrupted frame was redone
    assert [row["round"] for row in ledger["rounds"]] == [0, 1]
    row = ledger["rounds"][1]
    # 2 replicas × 2 checks = 4 candidates, all above the tiny thresholds; the budget of 2 caps the selection.
    assert (row["candidates"], row["selected"], row["dft_used"]) == (4, 2, 2)
    assert row["train_frames"] == 22 and ledger["stopped"].startswith("max_rounds")
    assert len(ase.io.read(tmp_path / "al" / "round1" / "train.xyz", ":")) == 22
    new = ase.io.read(tmp_path / "al" / "labelled.xyz", ":")
    assert len(new) == 2 and all(a.arrays["born_charge"].shape == (5, 9) for a in new)
    assert all(0 < r["test_forces_rmse_meV_A"] and 0 < r["test_born_mae_e"] for r in ledger["rounds"])
    warm = yaml.safe_load((tmp_path / "al" / "round1" / "committee" / "member0" / "recipe.yaml").read_text())
    assert warm["init_from"].endswith("round0/committee/member0")
    with open(tmp_path / "al" / "rounds.csv") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == COLUMNS
    assert [float(t["test_born_mae_e"]) for t in table] == pytest.approx([r["test_born_mae_e"] for r in ledger["rounds"]])
    assert (tmp_path / "al" / "active.png").stat().st_size > 10_000
    assert loop().run()["rounds"] == ledger["rounds"] and len(calls) == 3  # finished: a rerun does nothing
    saved = json.loads((tmp_path / "al" / "active.json").read_text())
    assert saved["rounds"] == ledger["rounds"] and np.isfinite(saved["rounds"][1]["test_forces_rmse_meV_A"])
    # The control: round 1's retraining from round 0's committee on the seed data alone, no DFT.
    control = loop().control()
    assert [row["round"] for row in control] == [1] and len(calls) == 3
    recipe = yaml.safe_load((tmp_path / "al" / "control" / "round1" / "member0" / "recipe.yaml").read_text())
    assert recipe["init_from"].endswith("round0/committee/member0")
    assert recipe["data"]["path"] == str(tmp_path / "seed.xyz") and recipe["train"]["epochs"] == 1
    assert 0 < control[0]["test_born_mae_e"] != pytest.approx(ledger["rounds"][1]["test_born_mae_e"], rel=1e-9)
    with open(tmp_path / "al" / "control" / "control.csv") as handle:
        assert float(next(csv.DictReader(handle))["test_forces_rmse_meV_A"]) == pytest.approx(
            control[0]["test_forces_rmse_meV_A"])
    member = tmp_path / "al" / "control" / "round1" / "member0" / "born.ckpt"
    stamp = member.stat().st_mtime_ns
    again = loop().control()  # resumed: the members are not retrained
    assert member.stat().st_mtime_ns == stamp and again[0] == pytest.approx(control[0])
