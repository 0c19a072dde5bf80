"""Cost of one FerroCalculator call vs the raw models (energy forward+backward with stress, plus Born forward).

    python benchmarks/calculator_overhead.py [--energy E.ckpt] [--born B.ckpt] [--repeats 7] [--device cpu]

On a 135-atom BaTiO3 frame from ../shared, each call moves every atom by ~0.005 Å (as an MD step would), so the
calculator reuses its neighbour list; the raw-model timing uses a prebuilt exact-cutoff batch. Interleaved,
median over repeats. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch

from timing import interleaved_medians  # benchmarks/timing.py, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--energy", default=os.path.join(ROOT, "checkpoints/batio3-qe-small/energy.ckpt"))
    p.add_argument("--born", default=os.path.join(ROOT, "checkpoints/batio3-qe-small/born.ckpt"))
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared/data/batio3-allegro-pol/BaTiO3.xyz"))
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    import ase.io

    from ferronn import FerroCalculator, keys as K
    from ferronn.data.graph import SpeciesTable, atoms_to_batch, neighbour_list

    atoms = ase.io.read(args.data, index=0)
    calc = FerroCalculator(args.energy, born=args.born, device=args.device, field=(0, 0, 0.01))
    device = torch.device(args.device)
    batch = atoms_to_batch([atoms], SpeciesTable(calc.energy_model.atomic_numbers), calc.dtype, device)
    edges, shifts = neighbour_list(batch[K.POSITIONS], batch[K.CELL][0], batch[K.PBC][0], calc.energy_model.r_max)
    batch[K.EDGE_INDEX], batch[K.UNIT_SHIFTS] = edges, shifts
    rng = np.random.default_rng(0)

    def raw():
        calc.energy_model(batch, compute_forces=True, compute_stress=True)
        with torch.no_grad():
            calc.born_model(batch)

    def call():
        atoms.positions += 0.005 * rng.standard_normal(atoms.positions.shape)
        atoms.calc = calc
        atoms.get_forces(), atoms.get_stress()

    medians = interleaved_medians({"raw": raw, "calculator": call}, args.repeats, device)
    raw_s, calc_s = medians["raw"], medians["calculator"]
    print(f"{len(atoms)} atoms, {args.device}: raw models {raw_s * 1e3:.1f} ms, calculator {calc_s * 1e3:.1f} ms, "
          f"neighbour builds {calc.neighbours.builds}")
    print(json.dumps({"benchmark": "calculator_overhead", "atoms": len(atoms), "device": args.device,
                      "raw_models_ms": raw_s * 1e3, "calculator_ms": calc_s * 1e3, "overhead_ratio": calc_s / raw_s,
                      "neighbour_builds": calc.neighbours.builds, "repeats": args.repeats}))


if __name__ == "__main__":
    main()
