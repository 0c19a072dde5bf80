"""ferronn's MD engine against its peers, same MACE weights, float32, NVE at dt = 1 fs, all in one run.

    python benchmarks/md_vs_peers.py [--device cpu] [--steps 10] [--repeats 3] [--sizes 1 2 4] [--compile] [--threads N]
                                     [--checkpoints checkpoints/batio3-allegro-pol]

Structures: the 135-atom BaTiO3 cell of ../shared (allegro-pol frame 0) repeated n×n×n (135, 1080, 8640 atoms).
Peers: ASE's VelocityVerlet with mace-torch's MACECalculator (the energy model's own mace module) and TorchSim
(torch-sim-atomistic 0.3.0, `ts.nve` with its MaceModel), both handed the weights in mace's own code as it ships
(``ferronn.models.messages.stock_copy``: without ferronn's faster message gather and tensor-product slicing,
which a plain deep copy would carry along). Every contender computes energy, forces and stress,
and all run in one process, so the CPU allocator setting the engine makes (``cpu_heap_allocations``) applies
to the peers too.
Figures (medians of --repeats interleaved rounds):

- vs_ase, vs_torchsim: ferronn steps/s ÷ the peer's, one 2×2×2 (1080-atom) cell, plain MD (no field).
- batched_vs_ase: six 135-atom replicas at ±E along x, y, z (field MD with the Born model) in one ferronn batch
  ÷ the same six run one after another by ASE with ferronn's FerroCalculator (MACECalculator has no field) on the
  same (eager) models a user hands it.
- batched_vs_ferronn_sequential: the same batch ÷ the six run one after another by ferronn's own engine, what
  batching alone gains (the rest of batched_vs_ase is ASE's and the calculator's per-call cost). On a CPU most of
  it comes from threads: 135 atoms keep two cores less busy than 810 do (``--threads 1``: about 1.06).
- field_overhead: ferronn field-MD step (energy forward+backward + Born forward + field terms) ÷ plain step,
  1080 atoms.
- loop_overhead: fraction of a ferronn field-MD step spent outside the two model calls (1080 atoms; timers
  around the calls during real steps).
- per_atom_step_spread: max/min over the sizes of ferronn's time per atom-step (plain MD).

``--compile``: ferronn's models are torch.compile'd once (inductor, ferronn.models.compile, as ``compile: true``
in an MD recipe; ~6 min per dtype on this 2-core CPU, cached on disk after that) and every ferronn figure above
uses them; the peers stay as they ship (eager); ``vs_ase_eager``/``vs_torchsim_eager`` add ferronn's eager path
from the same run, and ``batched_vs_ase_compiled_calculator`` the six ASE runs given the same compiled models
(what batching alone gains over them).

The last line is one JSON object with these keys and the raw atom-steps/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "benchmarks"), ROOT]
from timing import FIELD, STRUCTURE, interleaved_medians, quiet_threads  # noqa: E402  (benchmarks/timing.py, beside this script)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", default=os.path.join(ROOT, "checkpoints", "batio3-allegro-pol"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=10, help="MD steps per timed call")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4], help="n of the n×n×n repeats")
    p.add_argument("--batched-replicas", type=int, default=6, help="the ±E x,y,z replicas (6) or a multiple")
    p.add_argument("--compile", action="store_true", help="ferronn's models torch.compile'd (inductor)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads for every contender (0: torch's default)")
    args = p.parse_args()
    quiet_threads(args.threads)

    import ase.io
    from ase.md.verlet import VelocityVerlet
    from mace.calculators import MACECalculator

    from ferronn import FerroCalculator
    from ferronn.md.config import MDConfig
    from ferronn.md.engine import Simulation
    from ferronn.models.loading import load
    from ferronn.models.messages import stock_copy
    from ferronn.units import ASE_TIME_UNIT_FS

    device, dtype = torch.device(args.device), torch.float32
    energy = load(os.path.join(args.checkpoints, "energy.ckpt")).to(device=device, dtype=dtype)
    born = load(os.path.join(args.checkpoints, "born.ckpt")).to(device=device, dtype=dtype)
    eager_energy, eager_born = energy, born
    if args.compile:
        from ferronn.models.compile import compiled

        energy, born = compiled(energy), compiled(born)
    base = ase.io.read(STRUCTURE, index=0)
    big = base.repeat(2)
    out = tempfile.mkdtemp()

    def ferronn_md(atoms, fields, with_born, energy=energy):
        cfg = MDConfig(ensemble="nve", steps=0, equilibration_steps=0, log_every=10 ** 9, trajectory_every=0,
                       restart_every=0, device=str(device), dtype="float32", fields=fields, dt_fs=1.0, seed=0)
        sim = Simulation(cfg, energy, born if with_born else None, atoms, out=out)
        return sim, (lambda: sim.run(args.steps, progress=False))

    def ase_md(atoms, calc):
        a = atoms.copy()
        a.calc = calc
        a.set_momenta(_maxwell(a, 300.0))
        dyn = VelocityVerlet(a, timestep=1.0 / ASE_TIME_UNIT_FS)
        return lambda: dyn.run(args.steps)

    def torchsim_md(atoms):
        import torch_sim as ts
        from torch_sim.models.mace import MaceModel

        model = MaceModel(stock_copy(eager_energy.mace), device=device, dtype=dtype, compute_stress=True)
        state = ts.initialize_state(atoms, device=device, dtype=dtype)
        kT = torch.tensor(300.0 * ts.units.MetalUnits.temperature, device=device, dtype=dtype)
        dt = torch.tensor(1.0 / ASE_TIME_UNIT_FS, device=device, dtype=dtype)  # TorchSim's metal time = ASE's
        init, update = ts.nve(model, dt=dt, kT=kT, seed=0)
        holder = [init(state)]

        def run():
            for _ in range(args.steps):
                holder[0] = update(holder[0], dt=dt)
        return run

    mace_calc = MACECalculator(models=stock_copy(eager_energy.mace), device=str(device), default_dtype="float32")

    # 1. One 1080-atom cell: ferronn vs ASE+MACECalculator vs TorchSim; ferronn with a field and Born charges.
    plain_sim, plain = ferronn_md(big, [[0.0, 0.0, 0.0]], False)
    field_sim, field = ferronn_md(big, [[0.0, 0.0, FIELD]], True)
    contenders = {"ferronn": plain, "ferronn_field": field, "ase": ase_md(big, mace_calc),
                  "torchsim": torchsim_md(big)}
    if args.compile:
        contenders["ferronn_eager"] = ferronn_md(big, [[0.0, 0.0, 0.0]], False, energy=eager_energy)[1]
    t = interleaved_medians(contenders, args.repeats, device)
    n_big = len(big)
    # Time inside the two model calls during real field-MD steps (timers synchronise CUDA, so a separate run).
    field_sim.forces.timed, field_sim.forces.model_seconds = True, 0.0
    start = time.perf_counter()
    for _ in range(args.repeats):
        field()
    in_models = field_sim.forces.model_seconds / (time.perf_counter() - start)
    field_sim.forces.timed = False

    # 2. Six field replicas ±E along x, y, z: one ferronn batch vs six ASE runs one after another.
    fields = [[s * FIELD if i == axis else 0.0 for i in range(3)] for axis in range(3) for s in (1, -1)]
    fields = (fields * (args.batched_replicas // 6 + 1))[: args.batched_replicas]
    _, batched = ferronn_md(base, fields, True)

    def ase_sequential(energy, born):
        singles = [ase_md(base, FerroCalculator(energy, born=born, device=str(device), dtype=dtype, field=f))
                   for f in fields]
        return lambda: [r() for r in singles]

    singles = [ferronn_md(base, [f], True)[1] for f in fields]
    batch_contenders = {"ferronn_batched": batched, "ase_sequential": ase_sequential(eager_energy, eager_born),
                        "ferronn_sequential": lambda: [r() for r in singles]}
    if args.compile:  # ASE handed ferronn's compiled models too: what batching alone gains
        batch_contenders["ase_sequential_compiled"] = ase_sequential(energy, born)
    tb = interleaved_medians(batch_contenders, args.repeats, device)

    # 3. Time per atom-step over sizes (plain ferronn MD).
    per_atom = {}
    for n in args.sizes:
        atoms = base.repeat(n)
        _, run = ferronn_md(atoms, [[0.0, 0.0, 0.0]], False)
        per_atom[len(atoms)] = interleaved_medians({"x": run}, args.repeats, device)["x"] / (args.steps * len(atoms))

    rate = lambda seconds, atoms: args.steps * atoms / seconds  # noqa: E731  (atom-steps/s)
    result = {
        "benchmark": "md_vs_peers", "device": str(device), "dtype": "float32", "steps": args.steps,
        "compiled": args.compile,
        "repeats": args.repeats, "checkpoints": os.path.relpath(args.checkpoints, ROOT),
        "vs_ase": t["ase"] / t["ferronn"], "vs_torchsim": t["torchsim"] / t["ferronn"],
        "batched_vs_ase": tb["ase_sequential"] / tb["ferronn_batched"],
        "batched_vs_ferronn_sequential": tb["ferronn_sequential"] / tb["ferronn_batched"],
        "threads": torch.get_num_threads(),
        "field_overhead": t["ferronn_field"] / t["ferronn"],
        "loop_overhead": 1.0 - in_models,
        "per_atom_step_spread": max(per_atom.values()) / min(per_atom.values()),
        "atom_steps_per_s": {"ferronn_1080": rate(t["ferronn"], n_big), "ferronn_field_1080": rate(t["ferronn_field"], n_big),
                             "ase_mace_1080": rate(t["ase"], n_big), "torchsim_1080": rate(t["torchsim"], n_big),
                             f"ferronn_batched_{len(fields)}x135": rate(tb["ferronn_batched"], len(base) * len(fields)),
                             f"ase_sequential_{len(fields)}x135": rate(tb["ase_sequential"], len(base) * len(fields)),
                             **{f"ferronn_sizes_{n}": 1.0 / s for n, s in per_atom.items()}},
        "steps_per_s_135": 1.0 / (per_atom.get(len(base), float("nan")) * len(base)),
        "neighbour_rebuilds_1080": plain_sim.forces.rebuilds,
    }
    if args.compile:
        result["batched_vs_ase_compiled_calculator"] = tb["ase_sequential_compiled"] / tb["ferronn_batched"]
        result["atom_steps_per_s"][f"ase_sequential_compiled_{len(fields)}x135"] = rate(tb["ase_sequential_compiled"],
                                                                          len(base) * len(fields))
        result["vs_ase_eager"] = t["ase"] / t["ferronn_eager"]
        result["vs_torchsim_eager"] = t["torchsim"] / t["ferronn_eager"]
        result["atom_steps_per_s"]["ferronn_eager_1080"] = rate(t["ferronn_eager"], n_big)
    for key in ("vs_ase", "vs_torchsim", "batched_vs_ase", "batched_vs_ferronn_sequential", "field_overhead",
                "loop_overhead", "per_atom_step_spread"):
        print(f"{key:>22}: {result[key]:.3f}")
    for key, value in result["atom_steps_per_s"].items():
        print(f"{key:>22}: {value:10.1f} atom-steps/s")
    print(json.dumps(result))


def _maxwell(atoms, temperature_k):
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    a = atoms.copy()
    MaxwellBoltzmannDistribution(a, temperature_K=temperature_k, rng=np.random.default_rng(0))
    return a.get_momenta()


if __name__ == "__main__":
    main()
