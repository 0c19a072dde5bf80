"""torch.compile or cuEquivariance vs the plain e3nn path: equivalence (goal 1e-5 float64 / 1e-3 relative
float32) and speed.

    python benchmarks/compile_check.py [--device cuda] [--backend inductor|aot_eager|cudagraphs|cueq]
                                       [--dtype float64] [--steps 20] [--soak 0]

``--backend cueq`` converts the energy model to cuEquivariance kernels (ferronn.models.cueq; the Born model stays
on e3nn); the others torch.compile both models.
The MD recipe's models (checkpoints/batio3-allegro-pol) on the 135-atom BaTiO3 frame and a 2×1×1 copy of it
(two shapes: compiled with dynamic shapes, a new size must not break it): energy, forces, stress and Z* of the
compiled copies (ferronn.models.compile) against the plain models, then the time of an energy forward+backward
and a Born forward, median over steps. ``--soak N`` then calls both compiled models N more times on what a long
MD run feeds them — batches of 1 to 13 rattled copies of the frame, so atom and edge counts change every call —
and checks each call against the plain models (run it under ``LD_PRELOAD=libc_malloc_debug.so.0
MALLOC_CHECK_=3`` to catch out-of-bounds writes where they happen). Compiling MACE takes minutes on a GPU node's CPU and far longer on a
2-core machine (there use ``--backend aot_eager`` to check the graph capture without code generation).
Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def relative_error(fast, plain) -> float:
    """Largest deviation of ``fast`` from ``plain``, relative to the largest magnitude of ``plain``."""
    return float(((fast - plain).abs().max() / plain.abs().max()).detach())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="inductor", choices=["inductor", "aot_eager", "cudagraphs", "cueq"])
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--soak", type=int, default=0, help="calls on random batch shapes after the timing")
    parser.add_argument("--checkpoints", default=os.path.join(ROOT, "checkpoints", "batio3-allegro-pol"))
    args = parser.parse_args()

    import ase.io
    import torch

    from ferronn import keys as K
    from ferronn.data.graph import SpeciesTable
    from ferronn.data.verlet import atoms_batch
    from ferronn.models.loading import load
    from ferronn.models.compile import compiled

    dtype = getattr(torch, args.dtype)
    energy = load(os.path.join(args.checkpoints, "energy.ckpt"), device=args.device, dtype=dtype)
    born = load(os.path.join(args.checkpoints, "born.ckpt"), device=args.device, dtype=dtype)
    frame = ase.io.read(os.path.join(ROOT, "..", "shared", "data", "batio3-allegro-pol", "BaTiO3.xyz"), 0)
    species = SpeciesTable(energy.atomic_numbers)
    tol = 1e-5 if args.dtype == "float64" else 1e-3

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    start = time.perf_counter()
    if args.backend == "cueq":
        from ferronn.models.cueq import to_cueq

        fast_energy, fast_born = to_cueq(energy), born
    else:
        fast_energy, fast_born = compiled(energy, args.backend), compiled(born, args.backend)
    figures = {"device": args.device, "backend": args.backend, "dtype": args.dtype, "shapes": []}
    for repeat in ((1, 1, 1), (2, 1, 1)):
        batch = atoms_batch([frame.repeat(repeat)], species, energy.r_max, dtype, args.device)
        t0 = time.perf_counter()
        a = fast_energy(batch, compute_forces=True, compute_stress=True)
        z = fast_born(batch)[K.BORN_CHARGES]
        sync()
        first_call = time.perf_counter() - t0
        b = energy(batch, compute_forces=True, compute_stress=True)
        zr = born(batch)[K.BORN_CHARGES]
        errors = {key: relative_error(a[key], b[key]) for key in (K.ENERGY, K.FORCES, K.STRESS)}
        errors[K.BORN_CHARGES] = relative_error(z, zr)
        times = {}
        for name, fn in (("plain", lambda: (energy(batch, compute_stress=True), born(batch))),
                         ("compiled", lambda: (fast_energy(batch, compute_stress=True), fast_born(batch)))):
            samples = []
            for _ in range(args.steps):
                sync()
                t0 = time.perf_counter()
                fn()
                sync()
                samples.append(time.perf_counter() - t0)
            times[name] = statistics.median(samples)
        row = {"atoms": len(batch[K.POSITIONS]), "first_call_s": round(first_call, 1), "max_rel_error": errors,
               "plain_ms": 1e3 * times["plain"], "compiled_ms": 1e3 * times["compiled"],
               "speedup": times["plain"] / times["compiled"], "pass": max(errors.values()) <= tol}
        print(row, flush=True)
        figures["shapes"].append(row)
    if args.soak:
        import numpy as np

        rng = np.random.default_rng(0)
        worst = 0.0
        for call in range(args.soak):
            copies = []
            for _ in range(int(rng.integers(1, 14))):
                atoms = frame.copy()
                atoms.positions += rng.normal(0.0, 0.1, atoms.positions.shape)
                copies.append(atoms)
            batch = atoms_batch(copies, species, energy.r_max, dtype, args.device)
            a, z = fast_energy(batch, compute_forces=True, compute_stress=True), fast_born(batch)[K.BORN_CHARGES]
            b, zr = energy(batch, compute_forces=True, compute_stress=True), born(batch)[K.BORN_CHARGES]
            error = max(relative_error(a[K.FORCES], b[K.FORCES]), relative_error(a[K.STRESS], b[K.STRESS]),
                        relative_error(z, zr))
            worst = max(worst, error)
            if error > tol:
                print(f"soak call {call}: {len(copies)} copies, relative error {error:.2e}", flush=True)
        figures["soak"] = {"calls": args.soak, "max_rel_error": worst, "pass": worst <= tol}
        print(figures["soak"], flush=True)
    figures["total_s"] = round(time.perf_counter() - start, 1)
    figures["pass"] = all(r["pass"] for r in figures["shapes"]) and figures.get("soak", {}).get("pass", True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
