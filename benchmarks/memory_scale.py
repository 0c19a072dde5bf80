"""Largest BaTiO3 supercell a field-MD step fits in: peak memory of one step versus the number of atoms.

    python benchmarks/memory_scale.py [--sizes 2 4 6] [--limit-gb 24] [--device cpu] [--dtype float32]

Each size runs in a fresh process: the 5-atom cubic cell of ../shared/data/batio3-qe repeated n×n×n, the MD
recipe's models (checkpoints/batio3-allegro-pol), Langevin with a field (energy forward+backward with stress,
Born forward, dipole update), 2 steps. Peak memory: the process's max RSS on CPU, torch's peak allocation on
CUDA. Memory grows linearly with atoms; the fit gives the largest cell within ``--limit-gb`` (default 24 GB:
CI's machines), and that size is then run to check it. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STEP = r"""
import json, resource, sys, time, torch
import ase.io
from ferronn.md.config import MDConfig
from ferronn.md.engine import Simulation
from ferronn.models.loading import load
n, device, dtype, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
atoms = ase.io.read("../shared/data/batio3-qe/BaTiO3_qe_pbe.xyz", 1).repeat((n, n, n))
energy = load("checkpoints/batio3-allegro-pol/energy.ckpt")
born = load("checkpoints/batio3-allegro-pol/born.ckpt")
cfg = MDConfig(steps=0, equilibration_steps=0, log_every=10**9, trajectory_every=0, restart_every=0, device=device,
               dtype=dtype, fields=[[0.0, 0.0, 0.005]], temperatures=[300.0])
sim = Simulation(cfg, energy, born, atoms, out=out)
start = time.perf_counter()
sim.run(2, progress=False)
seconds = (time.perf_counter() - start) / 2
if device.startswith("cuda"):
    peak = torch.cuda.max_memory_allocated() / 2**30
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
print(json.dumps({"atoms": len(atoms), "peak_gib": peak, "s_per_step": seconds}))
"""


def measure(n: int, device: str, dtype: str) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run([sys.executable, "-c", STEP, str(n), device, dtype, out], cwd=ROOT,
                              capture_output=True, text=True)
    if proc.returncode != 0:
        return {"n": n, "atoms": 5 * n ** 3, "error": (proc.stderr.strip().splitlines() or ["killed"])[-1]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["n"] = n
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 12], help="n of the n×n×n supercells")
    parser.add_argument("--limit-gb", type=float, default=24.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--no-check", action="store_true", help="do not run the predicted largest size")
    args = parser.parse_args()

    rows = []
    for n in args.sizes:
        row = measure(n, args.device, args.dtype)
        rows.append(row)
        print(row, flush=True)
    good = [r for r in rows if "error" not in r]
    slope, intercept = np.polyfit([r["atoms"] for r in good], [r["peak_gib"] for r in good], 1)
    budget = args.limit_gb * 1e9 / 2**30  # GB → GiB
    largest_atoms = (0.9 * budget - intercept) / slope  # 10% headroom for the allocator and the OS
    n_max = int(np.floor((largest_atoms / 5) ** (1 / 3)))
    figures = {"device": args.device, "dtype": args.dtype, "rows": rows, "kib_per_atom": slope * 2**20,
               "base_gib": intercept, "limit_gb": args.limit_gb, "predicted_largest_n": n_max,
               "predicted_largest_atoms": 5 * n_max ** 3}
    if not args.no_check:
        check = measure(n_max, args.device, args.dtype)
        figures["check"] = check
        print(check, flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
