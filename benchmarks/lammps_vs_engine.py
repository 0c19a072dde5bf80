"""Atom-steps/s of field MD in LAMMPS (the ferronn plugin, 1 and 2 MPI ranks) against ferronn.md's engine.

Same models (checkpoints/batio3-allegro-pol, exported with ``python -m ferronn.export --lammps``), same start
(the engine's 300 K Maxwell–Boltzmann state), NVE with a constant field along z, CPU, one dtype for both.
Cells: the 135-atom BaTiO3 frame 0 repeated 2×2×2 (1080 atoms) and 4×4×4 (8640). Threads: the engine and
1-rank LAMMPS get ``--threads`` torch threads, 2 ranks ``max(1, threads // 2)`` each. The default, 1, is MPI
strong scaling as LAMMPS measures it (one core per rank: 2 ranks use twice the cores of 1); ``--threads 2``
compares on equal cores (1 rank × 2 threads against 2 ranks × 1 thread).
Each timing is the median over ``--repeats`` runs of ``--steps`` steps after one warm-up step (LAMMPS:
its "Loop time" of the timed run; engine: Simulation.wall_s). Peak RSS per run (the largest process) gives a
linear per-atom memory estimate (``--no-engine --ranks 2``: LAMMPS alone, from frame 0 at rest, for cells the
engine cannot hold). Last line: one JSON object with ``lammps1_vs_engine`` and
``lammps2_vs_lammps1`` (8640 atoms) among its keys.

    bash lammps/build.sh && python benchmarks/lammps_vs_engine.py [--steps 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "benchmarks"), ROOT]

from ferronn import lammps as L  # noqa: E402
from timing import STRUCTURE  # noqa: E402  (benchmarks/timing.py, beside this script)

CKPT = os.path.join(ROOT, "checkpoints", "batio3-allegro-pol")
FIELD = 0.01  # V/Å along z
# Runs the command and reports the largest resident set of its processes (mpiexec's ranks included).
PEAK = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
        "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)")


def config(supercell: int, steps: int, dtype: str, folder: str):
    from ferronn.md.config import MDConfig

    return MDConfig(energy=os.path.join(CKPT, "energy.ckpt"), born=os.path.join(CKPT, "born.ckpt"),
                    structure=STRUCTURE, ensemble="nve", temperatures=[300.0], fields=[[0.0, 0.0, FIELD]],
                    supercell=[supercell] * 3, steps=steps, equilibration_steps=0, log_every=10 ** 6,
                    trajectory_every=0, restart_every=0, guard_every=0, device="cpu", dtype=dtype,
                    out=os.path.join(folder, "engine"))


def engine_rate(supercell, steps, dtype, folder, threads):
    import torch

    from ferronn.md.engine import Simulation

    torch.set_num_threads(threads)
    sim = Simulation.from_config(config(supercell, steps, dtype, folder))
    sim.run(1, progress=False)  # warm-up: allocator, first neighbour list
    before = sim.wall_s
    sim.run(steps, progress=False)
    s = sim.state
    start = {"positions": s.positions.numpy().copy(), "cell": s.cell[0].numpy().copy(),
             "numbers": s.atomic_numbers.numpy().copy(), "velocities": (s.momenta / s.masses[:, None]).numpy()}
    # The simulation holds ~1.2 MB/atom (float64, 8640 atoms: 10 GB): free it before LAMMPS runs beside it
    # (an earlier version kept it and was OOM-killed on a 24 GB machine).
    return len(start["positions"]) * steps / (sim.wall_s - before), start


def at_rest(supercell: int) -> dict:
    """Frame 0 repeated ``supercell``³, at rest: a start for cells the engine's memory cannot hold."""
    import ase.io
    import numpy as np

    atoms = ase.io.read(STRUCTURE, 0).repeat((supercell,) * 3)
    return {"positions": atoms.positions, "cell": atoms.cell.array, "numbers": atoms.numbers,
            "velocities": np.zeros_like(atoms.positions)}


def lammps_rate(start, models, steps, ranks, threads, folder, pair_args=""):
    os.makedirs(folder, exist_ok=True)
    elements = L.write_data(os.path.join(folder, "data.lmp"), start["positions"], start["cell"], start["numbers"],
                            start["velocities"])
    script = L.input_script("data.lmp", models["energy"], elements, steps, born=models["born"],
                            field=f"constant 0 0 {FIELD}", extra="run 1", pair_args=pair_args)  # run 1: warm-up
    done = L.run_lammps(script, folder, ranks=ranks, threads=threads, timeout=3600, prefix=[sys.executable, "-c", PEAK])
    peak = re.findall(r"PEAK_RSS_KIB (\d+)", done.stderr)
    log = open(os.path.join(folder, "in.ferronn.log")).read()
    if done.returncode:
        raise RuntimeError(f"lmp failed in {folder}: {log[-2000:]}")
    loops = re.findall(r"Loop time of ([0-9.eE+-]+) on \d+ procs for (\d+) steps with (\d+) atoms", log)
    seconds, timed_steps, atoms = loops[-1]
    return int(atoms) * int(timed_steps) / float(seconds), (int(peak[-1]) if peak else None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the engine and of 1 rank")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--supercells", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="LAMMPS rank counts to run")
    parser.add_argument("--pair-args", default="", help="after 'pair_style ferronn', e.g. 'heap no' or 'graph ghost'")
    parser.add_argument("--no-engine", action="store_true",
                        help="LAMMPS only, from frame 0 at rest (cells too large for the engine: peak RSS per rank)")
    args = parser.parse_args(argv)
    if L.executables() is None or L.plugin_path() is None:
        sys.exit("needs lmp and mpiexec (pip install lammps mpich) and the plugin (bash lammps/build.sh)")
    from ferronn.models.lammps import export_lammps

    folder = tempfile.mkdtemp(prefix="lammps_vs_engine_")
    models = {kind: export_lammps(os.path.join(CKPT, f"{kind}.ckpt"), os.path.join(folder, f"{kind}.lammps.pt"),
                                  dtype=args.dtype) for kind in ("energy", "born")}
    out = {"steps": args.steps, "repeats": args.repeats, "threads": args.threads, "dtype": args.dtype,
           "device": "cpu", "field_V_per_A": FIELD, "pair_args": args.pair_args}
    for supercell in args.supercells:
        rates = {"engine": []} if not args.no_engine else {}
        rates.update({f"lammps{ranks}": [] for ranks in args.ranks})
        rss = {f"lammps{ranks}": [] for ranks in args.ranks}
        for repeat in range(args.repeats):
            if args.no_engine:
                start = at_rest(supercell)
            else:
                rate, start = engine_rate(supercell, args.steps, args.dtype, folder, args.threads)
                gc.collect()
                rates["engine"].append(rate)
                print(f"{len(start['positions'])} atoms, repeat {repeat}: engine {rate:.1f} atom-steps/s", flush=True)
            for ranks in args.ranks:
                key = f"lammps{ranks}"
                rate, peak = lammps_rate(start, models, args.steps, ranks, max(1, args.threads // ranks),
                                         os.path.join(folder, f"{supercell}_{ranks}_{repeat}"), args.pair_args)
                rates[key].append(rate)
                if peak:
                    rss[key].append(peak)
            print(f"{len(start['positions'])} atoms, repeat {repeat}: "
                  + ", ".join(f"{k} {v[-1]:.1f} atom-steps/s" for k, v in rates.items())
                  + "".join(f", {k} peak RSS {v[-1] / 1024:.0f} MiB/rank" for k, v in rss.items() if v), flush=True)
        atoms = len(start["positions"])
        med = {k: statistics.median(v) for k, v in rates.items()}
        for k, v in med.items():
            out[f"{k}_atom_steps_per_s_{atoms}"] = round(v, 2)
        for k, v in rss.items():
            if v:
                out[f"{k}_peak_rss_MiB_per_rank_{atoms}"] = round(max(v) / 1024, 1)
        if "engine" in med and "lammps1" in med:
            out[f"lammps1_vs_engine_{atoms}"] = round(med["lammps1"] / med["engine"], 3)
        if "lammps1" in med and "lammps2" in med:
            out[f"lammps2_vs_lammps1_{atoms}"] = round(med["lammps2"] / med["lammps1"], 3)
    for ratio in ("lammps1_vs_engine", "lammps2_vs_lammps1"):
        sizes = sorted(int(k.rsplit("_", 1)[1]) for k in out if k.startswith(ratio + "_"))
        if sizes:
            out[ratio] = out[f"{ratio}_{sizes[-1]}"]
            out["ratios_at_atoms"] = sizes[-1]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
