"""The active-learning loop, one round at a time, resumable after a kill without redoing finished work.

Round 0 trains a committee on the seed data. Round r ≥ 1: the committee of round r−1 drives MD over the
temperature (× field) ladder, every ``check_every`` steps each replica's snapshot becomes a candidate with the
committee's spread there; the candidates above threshold (``select.select_frames``) are labelled with DFT and
appended to ``labelled.xyz``; the committee is retrained on seed + labelled frames, warm-started from round r−1;
its test errors on the fixed held-out set are recorded. The loop stops when a round selects nothing, the DFT
budget is spent, or ``max_rounds`` is reached.

Folder: ``active.json`` (the ledger), ``rounds.csv`` and ``active.png`` (per-round table and plot),
``labelled.xyz`` (+ ``.failures.json``), ``round<r>/`` (candidates.csv and .xyz, md/, train.xyz, committee/).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable, Optional

import numpy as np

from ..atomic import atomic_path, write_json
from ..errors import SimulationError
from ..outputs import figure, save_figure, write_csv
from .config import ActiveConfig
from .select import Candidate, select_frames

COLUMNS = ["round", "train_frames", "candidates", "selected", "labelled", "failed", "dft_used",
           "force_std_max_eV_A", "force_std_median_eV_A", "born_std_max_e", "born_std_median_e",
           "test_forces_rmse_meV_A", "test_born_mae_e", "test_energy_mae_meV_atom", "wall_s"]
TEST_COLUMNS = {"test_forces_rmse_meV_A": "forces_rmse", "test_born_mae_e": "born_mae",  # column: metrics key
                "test_energy_mae_meV_atom": "energy_mae"}


class ActiveLearning:
    """State and steps of one active-learning run in ``config.out`` (see the module docstring)."""

    def __init__(self, config: ActiveConfig, labeller: Optional[Callable] = None, log: Callable = print):
        self.config = config.validate()
        self.out, self.labeller, self.log = config.out, labeller, log
        self.ledger_path = os.path.join(self.out, "active.json")
        self.committees = {}  # round → {kind: committee} trained in this process (saves rebuilding them)
        self.ledger = {"rounds": [], "dft_used": 0, "stopped": None}
        if os.path.exists(self.ledger_path):
            with open(self.ledger_path) as handle:
                self.ledger = json.load(handle)

    # --- paths --------------------------------------------------------------------------------------------------
    def round_dir(self, r: int) -> str:
        return os.path.join(self.out, f"round{r}")

    def committee_dir(self, r: int) -> str:
        return os.path.join(self.round_dir(r), "committee")

    @property
    def labelled_path(self) -> str:
        return os.path.join(self.out, "labelled.xyz")

    # --- the loop -----------------------------------------------------------------------------------------------
    def run(self) -> dict:
        os.makedirs(self.out, exist_ok=True)
        cfg = self.config
        if not self.ledger["rounds"]:
            self._train_round(0, cfg.seed_data, candidates=[], selected=0, labelled=0, failed=0, start=time.time())
        while True:  # the stop is decided from the ledger, so a rerun with a larger budget or more rounds goes on
            r = len(self.ledger["rounds"])
            last = self.ledger["rounds"][-1]
            if r > 1 and last["selected"] == 0:
                reason = f"round {r - 1} selected no frame: the committee agrees everywhere the MD went"
            elif r > cfg.max_rounds:
                reason = f"max_rounds ({cfg.max_rounds}) reached"
            elif self.ledger["dft_used"] >= cfg.dft_budget:
                reason = f"DFT budget ({cfg.dft_budget}) spent"
            else:
                self._round(r)
                continue
            break
        self.ledger["stopped"] = reason
        write_json(self.ledger_path, self.ledger)
        self.log(f"active learning stopped: {reason}")
        return self.ledger

    def _round(self, r: int) -> None:
        cfg, start = self.config, time.time()
        folder = self.round_dir(r)
        os.makedirs(folder, exist_ok=True)
        candidates = self.explore(r)
        remaining = cfg.dft_budget - self.ledger["dft_used"]
        sel = cfg.select
        chosen = select_frames(candidates, sel.force_std, sel.born_std, sel.min_spacing_steps,
                               min(sel.max_per_round, remaining), sel.force_std_max, sel.born_std_max,
                               sel.min_distance)
        self.log(f"round {r}: {len(candidates)} candidates, {len(chosen)} above threshold selected")
        if not chosen:  # converged: recorded without retraining (the next pass of run() stops)
            self._record(r, None, candidates, 0, 0, 0, start)
            return
        selected = [candidates[i].atoms for i in chosen]
        summary = self.label(selected)
        self.ledger["dft_used"] = self.dft_calls()
        write_json(self.ledger_path, self.ledger)
        train_file = os.path.join(folder, "train.xyz")
        self._write_training_set(train_file)
        failed = len(summary["failed"])  # frames skipped as finished on a resumed pass count as labelled
        self._train_round(r, train_file, candidates, len(chosen), len(chosen) - failed, failed, start)

    # --- steps --------------------------------------------------------------------------------------------------
    def explore(self, r: int) -> list:
        """Candidates of round ``r`` from MD with round r−1's committee (read back from round<r>/ on a rerun)."""
        import ase.io

        from ..data.frames import read_structure
        from ..md.engine import Simulation, replica_atoms
        from ..models.committee import load_committee

        folder = self.round_dir(r)
        table = os.path.join(folder, "candidates.csv")
        frames = os.path.join(folder, "candidates.xyz")
        if os.path.exists(table) and os.path.exists(frames):  # explored before a kill: same candidates
            atoms = ase.io.read(frames, ":")
            return [Candidate(int(a.info["replica"]), int(a.info["step"]), float(a.info["force_std"]),
                              float(a.info["born_std"]), a) for a in atoms]
        e = self.config.explore
        md = dataclasses.replace(self.config.md, log_every=e.check_every, seed=self.config.md.seed + r,
                                 out=os.path.join(folder, "md"))
        trained = self.committees.get(r - 1, {})
        models = [trained[kind] if kind in trained else load_committee(self.committee_dir(r - 1), kind)
                  for kind in ("energy", "born")]
        sim = Simulation(md, *models, read_structure(md.structure, md.index).repeat(md.supercell), out=md.out)
        candidates = []
        try:
            for _ in range(md.steps // e.check_every):
                sim.run(e.check_every, progress=False)
                spread = {k: v.cpu().numpy() for k, v in sim.forces.spread.items()}
                for b, atoms in enumerate(replica_atoms(sim.state, sim.steps_done)):
                    candidates.append(Candidate(b, sim.steps_done, float(spread["forces"][b]),
                                                float(spread["born"][b]), atoms))
        except SimulationError as exc:  # the committee drove atoms apart or together: its last frames are kept
            self.log(f"round {r}: exploration stopped early ({str(exc).splitlines()[0]})")
        for c in candidates:
            c.atoms.info.update(force_std=c.force_std, born_std=c.born_std)
        with atomic_path(frames, ".xyz") as tmp:
            ase.io.write(tmp, [c.atoms for c in candidates], format="extxyz")
        write_csv(table, ["replica", "step", "temperature_K", "force_std_eV_A", "born_std_e"],
                  [[c.replica, c.step, c.atoms.info["temperature_target"], c.force_std, c.born_std]
                   for c in candidates])
        return candidates

    def label(self, frames) -> dict:
        from ..label.store import label_frames

        for atoms in frames:  # DFT gets the structure only: no MD momenta, no model spreads
            atoms.calc = None
            atoms.arrays.pop("momenta", None)
        return label_frames(frames, self.labelled_path, self.config.label, log=self.log, labeller=self.labeller)

    def dft_calls(self) -> int:
        """DFT calculations spent so far: labelled frames plus recorded failures (counted from the files, so a
        kill in the middle of a labelling batch loses no count)."""
        from ..label.store import read_failures, read_labelled

        return len(read_labelled(self.labelled_path)) + len(read_failures(self.labelled_path))

    def _write_training_set(self, path: str) -> None:
        import ase.io

        from ..label.store import read_labelled

        frames = ase.io.read(self.config.seed_data, ":") + read_labelled(self.labelled_path)
        with atomic_path(path, ".xyz") as tmp:
            ase.io.write(tmp, frames, format="extxyz")

    def _train_round(self, r: int, data: str, candidates, selected, labelled, failed, start) -> None:
        metrics, self.committees[r] = self._fit(r, data, self.committee_dir(r),
                                                self.committee_dir(r - 1) if r > 0 else None)
        self._record(r, metrics, candidates, selected, labelled, failed, start, data)

    def _fit(self, r: int, data: str, out: str, init_from: Optional[str]):
        """Round r's committee on ``data``: from scratch (round 0) or warm-started from ``init_from``."""
        from ..train.config import load_recipe
        from ..train.run import fit_committee

        cfg = self.config
        overrides = dict(cfg.train_set)
        overrides.update({"data.path": data, "data.test_path": cfg.test_data, "out": out,
                          "train.epochs": cfg.epochs if r == 0 else cfg.retrain_epochs,
                          "init_from": init_from, "train.progress_bar": False, "name": f"active-round{r}"})
        return fit_committee(load_recipe(cfg.train_recipe, overrides), cfg.committee, resume=os.path.isdir(out))

    # --- the control: the same retraining without the DFT frames ------------------------------------------------
    @property
    def control_dir(self) -> str:
        return os.path.join(self.out, "control")

    def control(self) -> list:
        """Round 0's committee retrained round after round on the seed data alone, with the loop's schedule
        (``retrain_epochs`` per round, warm starts), tested on the same held-out set: what a round gains beyond
        this comes from its DFT frames, not from the extra epochs. Resumable; ``control/control.csv``."""
        if not self.ledger["rounds"] or not os.path.exists(os.path.join(self.committee_dir(0), "committee.json")):
            raise SimulationError(f"active control: {self.out} has no trained round 0 (run the loop first)")
        rows, previous = [], self.committee_dir(0)
        for row in self.ledger["rounds"][1:]:
            if not row["labelled"]:  # a round that trained nothing has no control either
                continue
            r = row["round"]
            out = os.path.join(self.control_dir, f"round{r}")
            metrics, _ = self._fit(r, self.config.seed_data, out, previous)
            rows.append({"round": r, **{column: metrics.get(key, np.nan) for column, key in TEST_COLUMNS.items()}})
            previous = out
            self.log(f"control round {r} (seed data only): " + ", ".join(f"{k} {v:.4g}" for k, v in rows[-1].items()
                                                                           if k != "round"))
        write_csv(os.path.join(self.control_dir, "control.csv"), ["round", *TEST_COLUMNS],
                  [[row[c] for c in ["round", *TEST_COLUMNS]] for row in rows])
        self.write_outputs()
        return rows

    def _record(self, r, metrics, candidates, selected, labelled, failed, start, data=None) -> None:
        import ase.io

        forces = np.array([c.force_std for c in candidates]) if candidates else np.array([np.nan])
        born = np.array([c.born_std for c in candidates]) if candidates else np.array([np.nan])
        metrics = metrics or {}
        row = {"round": r, "train_frames": len(ase.io.read(data, ":")) if data else 0,
               "candidates": len(candidates), "selected": selected, "labelled": labelled, "failed": failed,
               "dft_used": self.ledger["dft_used"],
               "force_std_max_eV_A": float(np.max(forces)), "force_std_median_eV_A": float(np.median(forces)),
               "born_std_max_e": float(np.max(born)), "born_std_median_e": float(np.median(born)),
               **{column: metrics.get(key, np.nan) for column, key in TEST_COLUMNS.items()},
               "wall_s": round(time.time() - start, 1)}
        self.ledger["rounds"].append(row)
        write_json(self.ledger_path, self.ledger)
        self.write_outputs()
        self.log(f"round {r}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in row.items() if k != "round"))

    def write_outputs(self) -> None:
        """rounds.csv and active.png from the ledger (the plot shows exactly the CSV's numbers)."""
        rows = self.ledger["rounds"]
        write_csv(os.path.join(self.out, "rounds.csv"), COLUMNS, [[row[c] for c in COLUMNS] for row in rows])
        plot_rounds(rows, os.path.join(self.out, "active.png"), self._control_rows())

    def _control_rows(self) -> list:
        path = os.path.join(self.control_dir, "control.csv")
        if not os.path.exists(path):
            return []
        import csv

        with open(path) as handle:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def plot_rounds(rows, path: str, control=()) -> None:
    fig, axes = figure(1, 3, size=(4.6, 3.6))
    rounds = [row["round"] for row in rows]
    ax = axes[0][0]
    ax.bar(rounds, [row["selected"] for row in rows], color="tab:blue", label="selected")
    ax.plot(rounds, [row["dft_used"] for row in rows], "k.-", label="DFT calls (cumulative)")
    ax.set(xlabel="round", ylabel="frames", title="frames sent to DFT")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    ax.plot(rounds, [row["force_std_max_eV_A"] for row in rows], "o-", label="max σ_F (eV/Å)")
    ax.plot(rounds, [row["force_std_median_eV_A"] for row in rows], "o--", label="median σ_F (eV/Å)")
    ax.plot(rounds, [row["born_std_max_e"] for row in rows], "s-", label="max σ_Z* (e)")
    ax.plot(rounds, [row["born_std_median_e"] for row in rows], "s--", label="median σ_Z* (e)")
    ax.set(xlabel="round", ylabel="spread", title="committee spread met while exploring")
    ax.legend(fontsize=8)
    ax = axes[0][2]
    ax.plot(rounds, [row["test_forces_rmse_meV_A"] for row in rows], "o-", color="tab:red")
    ax.set(xlabel="round", title="fixed held-out set")
    ax.set_ylabel("force RMSE (meV/Å)", color="tab:red")
    twin = ax.twinx()
    twin.plot(rounds, [row["test_born_mae_e"] for row in rows], "s-", color="tab:green")
    twin.set_ylabel("Z* MAE (e)", color="tab:green")
    if control:  # the same retraining on the seed data alone, from round 0's committee
        start = [rows[0]["round"]] + [row["round"] for row in control]
        ax.plot(start, [rows[0]["test_forces_rmse_meV_A"]] + [row["test_forces_rmse_meV_A"] for row in control],
                "o:", color="tab:red", alpha=0.6, label="no new frames (control)")
        twin.plot(start, [rows[0]["test_born_mae_e"]] + [row["test_born_mae_e"] for row in control], "s:",
                  color="tab:green", alpha=0.6)
        ax.legend(fontsize=8)
    for a in (axes[0][0], axes[0][1], axes[0][2]):
        a.set_xticks(rounds)
    save_figure(fig, path)


def run(config: ActiveConfig, labeller: Optional[Callable] = None) -> dict:
    return ActiveLearning(config, labeller).run()


def run_control(config: ActiveConfig) -> list:
    return ActiveLearning(config).control()
