"""Fault injection (kill -9 in subprocesses) and determinism: nothing written is ever half a file, and a killed MD
run resumed from its restart file lands on the very trajectory of an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from ase.io import read, write

import ferronn
from ferronn.data.datamodule import default_data_path
from ferronn.md.config import MDConfig
from ferronn.md.engine import Simulation
from ferronn.models import checkpoint
from helpers import ROOT

QE_SMALL = ROOT / "checkpoints" / "batio3-qe-small"

WRITER = """
import sys
from ferronn.models import checkpoint
payload = checkpoint.read(sys.argv[1])  # only torch: no mace import, so each writer starts in ~2 s
first = "mace.node_embedding.linear.weight"  # a weight, not a buffer such as the element list
print("ready", flush=True)
version = 0
while True:  # rewrite the same path forever, each version with different weights, by the writer save() uses
    version += 1
    payload["state_dict"][first].fill_(float(version))
    payload["metadata"] = {"version": version}
    checkpoint.atomic_torch_save(payload, sys.argv[2])
"""


@pytest.mark.slow  # subprocesses killed and resumed
def test_kill_during_checkpoint_write_leaves_the_previous_checkpoint_loadable(tmp_path):
    """kill -9 a process that rewrites a checkpoint in a loop, at random moments, until several kills landed in the
    middle of a write (a temporary file left behind proves it); the checkpoint always loads, whole."""
    target = tmp_path / "energy.ckpt"
    rng = np.random.default_rng(0)
    mid_write, kills, versions = 0, 0, []
    while mid_write < 3 and kills < 20:
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(QE_SMALL / "energy.ckpt"), str(target)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for line in proc.stdout:
                if line.strip() == "ready":
                    break
            deadline = time.time() + 60
            while not target.exists() and time.time() < deadline and proc.poll() is None:
                time.sleep(0.01)
            assert proc.poll() is None, "writer died: " + proc.stderr.read()[-2000:]
            time.sleep(float(rng.uniform(0.05, 0.5)))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        kills += 1
        leftovers = list(tmp_path.glob(".tmp-*"))
        mid_write += bool(leftovers)
        for stale in leftovers:  # a killed writer cannot clean up; the next writer uses a fresh name anyway
            stale.unlink()
        payload = checkpoint.read(target)  # never a partial file: the rename is atomic
        version = payload["metadata"]["version"]
        assert torch.all(payload["state_dict"]["mace.node_embedding.linear.weight"] == float(version))
        versions.append(version)
    model = ferronn.load(target)  # the last survivor still rebuilds into a model
    assert torch.all(model.state_dict()["mace.node_embedding.linear.weight"] == float(versions[-1]))
    assert mid_write >= 3, f"only {mid_write} of {kills} kills landed inside a write"
    assert len(set(versions)) > 1


def md_args(out, *extra):
    args = ["--out", str(out), "--no-progress", "--steps", "40",
            "--set", f"energy={QE_SMALL / 'energy.ckpt'}", "--set", f"born={QE_SMALL / 'born.ckpt'}",
            "--set", f"structure={out.parent / 'start.xyz'}", "--set", "supercell=[2,2,1]",
            "--set", "ensemble=nvt_langevin", "--set", "dtype=float64", "--set", "fields=[[0,0,0.05]]",
            "--set", "copies=2", "--set", "equilibration_steps=10", "--set", "seed=11", "--set", "restart_every=10",
            "--set", "log_every=5", "--set", "trajectory_every=10", "--set", "dt_fs=1.0"]
    return args + list(extra)


@pytest.mark.slow  # subprocesses killed and resumed
def test_md_killed_and_resumed_continues_the_same_trajectory(tmp_path):
    """kill -9 `python -m ferronn.md` mid-run, `--resume`: the same positions, momenta, dipole and log as a run
    that was never interrupted (CPU, float64, seeded Langevin: the RNG state is in the restart file)."""
    from ferronn.md.__main__ import main

    write(tmp_path / "start.xyz", read(default_data_path(), 6))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(md_args(straight)) == 0  # the uninterrupted run: the CLI's own code, in this process
    command = [sys.executable, "-m", "ferronn.md"]
    proc = subprocess.Popen(command + md_args(killed), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = killed / "log.csv"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) > 1 + 2 * 3:  # past step 15: restart at 10 kept
            break
        time.sleep(0.05)
    assert proc.poll() is None, "MD ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step = int(torch.load(killed / "restart.pt", weights_only=True)["steps_done"])
    assert 0 < step < 40
    resumed = subprocess.run(command + md_args(killed, "--resume"), cwd=ROOT, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = torch.load(straight / "restart.pt", weights_only=True)
    b = torch.load(killed / "restart.pt", weights_only=True)
    assert int(a["steps_done"]) == int(b["steps_done"]) > step
    for key in ("positions", "momenta", "dipole", "cell"):
        torch.testing.assert_close(b["state"][key], a["state"][key], rtol=0, atol=1e-12, msg=key)
    assert (killed / "log.csv").read_text() == (straight / "log.csv").read_text()
    for replica in (0, 1):
        frames = [read(path / f"trajectory_r{replica}.extxyz", ":") for path in (straight, killed)]
        assert [f.info["step"] for f in frames[1]] == [f.info["step"] for f in frames[0]]
        for x, y in zip(*frames):
            np.testing.assert_allclose(y.positions, x.positions, rtol=0, atol=1e-10)


def test_same_seed_same_md_trajectory_and_another_seed_differs(qe_frames, tmp_path):
    """Determinism on CPU: Langevin MD with one seed twice gives bit-identical trajectories; another seed does not."""
    from ase import Atoms

    frame = qe_frames[6]
    atoms = Atoms(numbers=frame["atomic_numbers"], positions=frame["positions"], cell=frame["cell"], pbc=True)
    models = ferronn.load(QE_SMALL / "energy.ckpt"), ferronn.load(QE_SMALL / "born.ckpt")

    def final(seed):
        cfg = MDConfig(ensemble="nvt_langevin", dtype="float64", device="cpu", temperatures=[300.0], copies=2,
                       fields=[[0.0, 0.0, 0.05]], seed=seed, steps=20, equilibration_steps=0, log_every=10 ** 6,
                       trajectory_every=0, restart_every=0)
        sim = Simulation(cfg, *models, atoms, out=str(tmp_path / f"seed{seed}"))
        sim.run(20, progress=False)
        return sim.state.positions.clone()

    first = final(3)
    assert torch.equal(final(3), first)
    assert not torch.allclose(final(4), first)

