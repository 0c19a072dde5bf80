"""The price of a model pair in field MD: the accurate pair against the fast one, same cells, same run.

    python benchmarks/pair_cost.py [--pairs checkpoints/batio3-allegro-pol checkpoints/batio3-accurate]
                                   [--steps 5] [--repeats 3] [--device cpu] [--dtype float32]

For each pair: field-MD steps/s (NVE, dt 1 fs, E = 0.005 V/Å along z, Z* every step) on the 135-atom BaTiO3 cell
and its 2×2×2 supercell (1080 atoms), and the Born forward ÷ energy forward+backward cost ratio on two 135-atom
frames. Timings of all pairs are interleaved (benchmarks/timing.py) so machine noise hits them alike; medians over
repeats. The ratios of the second pair to the first are the price of its accuracy. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "benchmarks"), ROOT]
from timing import FIELD, STRUCTURE, interleaved_medians, quiet_threads  # noqa: E402  (benchmarks/timing.py, beside this script)



def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", nargs="+", default=[os.path.join(ROOT, "checkpoints", "batio3-allegro-pol"),
                                                  os.path.join(ROOT, "checkpoints", "batio3-accurate")])
    p.add_argument("--steps", type=int, default=5, help="MD steps per timed call")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args()
    quiet_threads(args.threads)

    import ase.io

    from ferronn import keys as K
    from ferronn.data.graph import SpeciesTable, batch_to, collate, frame_to_graph
    from ferronn.data.frames import NO_LABELS, frame_from_atoms
    from ferronn.md.config import MDConfig
    from ferronn.md.engine import Simulation
    from ferronn.models import predict
    from ferronn.models.loading import load

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    base = ase.io.read(STRUCTURE, index=0)
    cells = {135: base, 1080: base.repeat(2)}
    out = tempfile.mkdtemp()
    names = [os.path.basename(os.path.normpath(path)) for path in args.pairs]
    md, model_calls = {}, {}
    for name, path in zip(names, args.pairs):
        energy = load(os.path.join(path, "energy.ckpt")).to(device=device, dtype=dtype)
        born = load(os.path.join(path, "born.ckpt")).to(device=device, dtype=dtype)
        for n, atoms in cells.items():
            cfg = MDConfig(ensemble="nve", steps=0, equilibration_steps=0, log_every=10 ** 9, trajectory_every=0,
                           restart_every=0, device=str(device), dtype=args.dtype, fields=[[0.0, 0.0, FIELD]],
                           dt_fs=1.0, seed=0)
            sim = Simulation(cfg, energy, born, atoms, out=os.path.join(out, f"{name}_{n}"))
            md[f"{name}_{n}"] = (lambda sim=sim: sim.run(args.steps, progress=False))
        # The two model calls of a field-MD step, on two 135-atom frames: energy forward+backward (forces,
        # stress) and the Born forward without gradients.
        species = SpeciesTable(energy.atomic_numbers)
        r_max = max(energy.r_max, born.r_max)
        graphs = [frame_to_graph(frame_from_atoms(a, NO_LABELS), species, r_max)
                  for a in ase.io.read(STRUCTURE, index="0:2")]
        batch = batch_to(collate(graphs, dtype=dtype), device)

        def energy_call(energy=energy, batch=batch):
            predict({"energy": energy}, dict(batch), compute_stress=True, training=False)[K.FORCES].sum().item()

        def born_call(born=born, batch=batch):
            with torch.no_grad():
                predict({"born": born}, dict(batch), compute_stress=False, training=False)[K.BORN_CHARGES].sum().item()

        model_calls[f"{name}_energy"], model_calls[f"{name}_born"] = energy_call, born_call
    t_md = interleaved_medians(md, args.repeats, device)
    t_calls = interleaved_medians(model_calls, max(args.repeats, 5), device)

    result = {"benchmark": "pair_cost", "device": str(device), "dtype": args.dtype, "threads": torch.get_num_threads(),
              "steps": args.steps, "repeats": args.repeats, "pairs": [os.path.relpath(p, ROOT) for p in args.pairs],
              "field_md_steps_per_s": {key: args.steps / seconds for key, seconds in t_md.items()},
              "born_over_energy": {name: t_calls[f"{name}_born"] / t_calls[f"{name}_energy"] for name in names}}
    first, *others = names
    for name in others:
        for n in cells:
            result[f"{name}_vs_{first}_steps_{n}"] = t_md[f"{first}_{n}"] / t_md[f"{name}_{n}"]
    for key, value in result["field_md_steps_per_s"].items():
        print(f"{key:>32}: {value:8.2f} field-MD steps/s")
    for key, value in result["born_over_energy"].items():
        print(f"{key:>32}: Born forward / energy forward+backward = {value:.3f}")
    for key in (k for k in result if "_vs_" in k):
        print(f"{key:>32}: {result[key]:.3f} (speed relative to {first}; below 1 is slower)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
