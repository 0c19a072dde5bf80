"""Cost of the Born-charge model's forward vs the energy model's forward+backward on the same batch.

    python benchmarks/born_cost.py [--recipe recipes/batio3.yaml] [--repeats 7] [--frames 2] [--device cpu]
                                   [--set born_model.num_interactions=3 ...]

In field MD the Born model is called once per step without gradients, beside the energy model's forward and
backward (forces, stress); its cost ratio sets the overhead of field MD over plain MD. Models are built from
the recipe's hyperparameters (weights do not change the cost) on real BaTiO3 frames. Reports the median over
repeats of each timing, interleaved so machine noise hits both alike. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from timing import interleaved_medians  # benchmarks/timing.py, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=os.path.join(ROOT, "recipes", "batio3.yaml"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--frames", type=int, default=2, help="structures per batch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile both models (ferronn.models.compile, as `compile: true` in MD)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    args = parser.parse_args()

    from ferronn.data.datamodule import FrameDataModule
    from ferronn.models.born import BornModel
    from ferronn.models.energy import EnergyModel
    from ferronn.config import parse_overrides
    from ferronn.train.config import load_recipe

    cfg = load_recipe(args.recipe, parse_overrides(args.set))
    dtype = getattr(torch, cfg.train.dtype)
    device = torch.device(args.device)
    r_max = max(cfg.model.r_max, cfg.born_model.r_max)
    dm = FrameDataModule(cfg.data, r_max, cfg.train.seed, dtype, labels_needed=()).prepare()
    energy = EnergyModel.from_stats(cfg.model, dm.stats, dtype).to(device).eval()
    born = BornModel.from_stats(cfg.born_model, dm.stats, dtype).to(device).eval()
    if args.compile:
        from ferronn.models.compile import compiled

        energy, born = compiled(energy), compiled(born)
    from ferronn.data.graph import batch_to, collate

    batch = batch_to(collate(dm.graphs["train"][: args.frames], dtype), device)
    # MD gives the Born model its own list within its cutoff (ferronn/md/forces.py): measure that too.
    from ferronn.data.verlet import pair_lengths

    lengths = pair_lengths(batch["positions"], batch["cell"], batch["batch"], batch["edge_index"],
                           batch["unit_shifts"])

    def within(r_cut):
        keep = lengths < r_cut
        return {**batch, "edge_index": batch["edge_index"][:, keep], "unit_shifts": batch["unit_shifts"][keep]}

    own, energy_batch = within(cfg.born_model.r_max), within(cfg.model.r_max)
    keep = lengths < cfg.born_model.r_max

    def energy_step():  # on its own cutoff's list, also when the Born model's reaches further
        energy(energy_batch, compute_forces=True, compute_stress=True)

    def born_step():
        with torch.no_grad():
            born(batch)

    def born_own_list():
        with torch.no_grad():
            born(own)

    medians = interleaved_medians({"energy": energy_step, "born": born_step, "born_own": born_own_list},
                                  args.repeats, device)
    e, b, bo = medians["energy"], medians["born"], medians["born_own"]
    n_atoms = int(batch["num_atoms"].sum())
    print(f"{args.frames} structures, {n_atoms} atoms, {batch['edge_index'].shape[1]} edges, {cfg.train.dtype}, "
          f"{device}: energy forward+backward {e * 1e3:.1f} ms, Born forward {b * 1e3:.1f} ms on the same list, "
          f"{bo * 1e3:.1f} ms on its own {cfg.born_model.r_max} Å list ({int(keep.sum())} edges)")
    print(json.dumps({"benchmark": "born_cost", "recipe": os.path.relpath(args.recipe, ROOT), "device": str(device),
                      "atoms": n_atoms, "energy_forward_backward_ms": e * 1e3, "born_forward_ms": b * 1e3,
                      "born_to_energy_ratio": b / e, "born_own_list_ms": bo * 1e3,
                      "born_to_energy_ratio_own_list": bo / e, "energy_params": sum(p.numel() for p in energy.parameters()),
                      "born_params": sum(p.numel() for p in born.parameters()), "repeats": args.repeats, "compiled": args.compile,
                      "overrides": args.set}))


if __name__ == "__main__":
    main()
