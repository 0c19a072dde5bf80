"""MD throughput: ferronn's engine (plain, with field + Z*, batched replicas) vs ASE's VelocityVerlet driving the
same models through FerroCalculator.

    python benchmarks/md_speed.py [--steps 20] [--replicas 4] [--repeats 3] [--device cpu]

135-atom BaTiO3 frame from ../shared, shipped checkpoints, NVE, dt 1 fs, float64 (as saved). Reports atom-steps/s,
the field-MD / plain-MD cost ratio and the engine / ASE speed ratio, median over repeats. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    import ase.io
    from ase.md.verlet import VelocityVerlet
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from ferronn import FerroCalculator
    from ferronn.md.config import MDConfig
    from ferronn.md.engine import Simulation
    from ferronn.models.loading import load
    from ferronn.units import ASE_TIME_UNIT_FS

    ckpt = os.path.join(ROOT, "checkpoints/batio3-qe-small")
    atoms = ase.io.read(os.path.join(ROOT, "..", "shared/data/batio3-allegro-pol/BaTiO3.xyz"), index=0)
    energy, born = load(f"{ckpt}/energy.ckpt"), load(f"{ckpt}/born.ckpt")
    n = len(atoms)

    def engine(field, with_born, replicas):
        cfg = MDConfig(ensemble="nve", steps=0, equilibration_steps=0, log_every=10 ** 9, trajectory_every=0,
                       restart_every=0, device=args.device, fields=[field], copies=replicas, dt_fs=1.0)
        with tempfile.TemporaryDirectory() as out:
            sim = Simulation(cfg, energy, born if with_born else None, atoms, out=out)
            sim.run(2, progress=False)  # warm-up
            start = time.perf_counter()
            sim.run(args.steps, progress=False)
            return args.steps * n * replicas / (time.perf_counter() - start)

    def ase_md(field):
        a = atoms.copy()
        MaxwellBoltzmannDistribution(a, temperature_K=300)
        a.calc = FerroCalculator(energy, born=born, device=args.device, field=field)
        dyn = VelocityVerlet(a, timestep=1.0 / ASE_TIME_UNIT_FS)
        dyn.run(2)
        start = time.perf_counter()
        dyn.run(args.steps)
        return args.steps * n / (time.perf_counter() - start)

    runs = {"plain": [], "field": [], "field_batched": [], "ase_field": []}
    for _ in range(args.repeats):
        runs["plain"].append(engine([0, 0, 0], False, 1))
        runs["field"].append(engine([0, 0, 0.01], True, 1))
        runs["field_batched"].append(engine([0, 0, 0.01], True, args.replicas))
        runs["ase_field"].append(ase_md((0, 0, 0.01)))
    med = {k: statistics.median(v) for k, v in runs.items()}
    for k, v in med.items():
        print(f"{k:>14}: {v:10.1f} atom-steps/s")
    out = {"benchmark": "md_speed", "device": args.device, "atoms": n, "steps": args.steps,
           "replicas_batched": args.replicas, "atom_steps_per_s": med,
           "field_md_cost_ratio": med["plain"] / med["field"],
           "engine_vs_ase_speed_ratio": med["field"] / med["ase_field"],
           "batched_vs_single_speed_ratio": med["field_batched"] / med["field"], "repeats": args.repeats}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
