"""Soak: 10⁵ field-MD steps of a small cell with the process's resident memory (RSS) sampled; it must not grow.

    python benchmarks/soak_md.py [--steps 100000] [--chunk 1000] [--device auto]

The shipped 5-atom BaTiO3 models (checkpoints/batio3-qe-small; --checkpoints for others) on a 5-atom cell
(--supercell to enlarge), two replicas (E = 0 and E = 0.02 V/Å along z), Langevin at 300 K, float64 (--dtype),
everything a long run does: Born charges every step,
neighbour-list rebuilds, guard checks, log rows, trajectory frames and restart files (the run is continued
chunk by chunk, each chunk ending with a restart and a summary). RSS is read from /proc/self/status after every
chunk. Pass: RSS at the end within 2% (and 20 MiB) of RSS after the first tenth of the run (the allocator's
warm-up), and the slope of RSS over the second half below 1 MiB per 10⁴ steps. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", default=os.path.join(ROOT, "checkpoints", "batio3-qe-small"))
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--chunk", type=int, default=1000)
    p.add_argument("--supercell", type=int, nargs=3, default=[1, 1, 1])
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--model", default="checkpoints", choices=["checkpoints", "harmonic"],
                   help="harmonic: analytic springs + constant Z* (the engine alone, ~10x faster per step)")
    p.add_argument("--device", default="auto")
    args = p.parse_args()

    from ase.io import read

    from ferronn.data.datamodule import default_data_path
    from ferronn.md.config import MDConfig
    from ferronn.md.engine import Simulation
    from ferronn.models.loading import load

    atoms = read(default_data_path(), index=6).repeat(tuple(args.supercell))
    if args.model == "harmonic":
        import numpy as np_
        import torch

        from ferronn.models.analytic import ConstantBornModel, HarmonicModel

        nominal = {56: 2.75, 22: 7.25, 8: -10.0 / 3.0}  # e, isotropic, Σ = 0 per BaTiO3
        energy = HarmonicModel(atoms.positions, [3.0] * len(atoms), atoms.numbers)
        born = ConstantBornModel(torch.tensor(np_.array([nominal[int(z)] * np_.eye(3) for z in atoms.numbers])),
                                 atoms.numbers)
    else:
        energy, born = (load(os.path.join(args.checkpoints, f"{k}.ckpt")) for k in ("energy", "born"))
    cfg = MDConfig(ensemble="nvt_langevin", temperatures=[300.0], fields=[[0, 0, 0], [0, 0, 0.02]], dt_fs=1.0,
                   steps=args.chunk, equilibration_steps=0, log_every=100, trajectory_every=5000,
                   restart_every=args.chunk, device=args.device, dtype=args.dtype, seed=0)
    out = tempfile.mkdtemp(prefix="ferronn-soak-")
    sim = Simulation(cfg, energy, born, atoms, out=out)
    steps_at, rss = [0], [rss_mib()]
    start = time.perf_counter()
    for _ in range(args.steps // args.chunk):
        sim.run(args.chunk, progress=False)
        steps_at.append(sim.steps_done)
        rss.append(rss_mib())
        if len(rss) % 10 == 0:
            print(f"step {steps_at[-1]:>7d}  RSS {rss[-1]:8.1f} MiB  {time.perf_counter() - start:7.0f} s",
                  flush=True)
    wall = time.perf_counter() - start
    steps_at, rss = np.array(steps_at), np.array(rss)
    warm = rss[max(1, len(rss) // 10)]
    half = len(rss) // 2
    slope = float(np.polyfit(steps_at[half:], rss[half:], 1)[0]) * 1e4 if len(rss) - half >= 3 else float("nan")
    growth = float(rss[-1] - warm)
    passed = bool(growth <= max(0.02 * warm, 20.0) and slope < 1.0)
    print(f"{sim.steps_done} steps of {len(atoms)} atoms x 2 replicas in {wall:.0f} s ({sim.steps_done / wall:.1f} "
          f"steps/s); RSS start {rss[0]:.1f} MiB, after warm-up {warm:.1f}, end {rss[-1]:.1f} MiB (growth "
          f"{growth:+.1f} MiB, second-half slope {slope:+.3f} MiB per 1e4 steps): {'PASS' if passed else 'FAIL'}")
    print(json.dumps({"model": args.model if args.model == "harmonic" else os.path.basename(args.checkpoints),
                      "dtype": args.dtype, "steps": int(sim.steps_done), "atoms": len(atoms), "replicas": 2, "wall_s": round(wall, 1),
                      "rss_start_mib": round(float(rss[0]), 1), "rss_warm_mib": round(float(warm), 1),
                      "rss_end_mib": round(float(rss[-1]), 1), "rss_max_mib": round(float(rss.max()), 1),
                      "growth_mib": round(growth, 2), "slope_mib_per_1e4_steps": round(slope, 4),
                      "neighbour_builds": int(sum(nl.builds for nl in sim.forces.lists.values())),
                      "passed": passed}))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
