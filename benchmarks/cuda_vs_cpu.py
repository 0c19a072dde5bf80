"""The same models and MD on CUDA and on the CPU, float64: energies, forces, stress, Z* and a field-MD trajectory.

    python benchmarks/cuda_vs_cpu.py [--steps 20] [--checkpoints checkpoints/batio3-allegro-pol]

The shipped BaTiO3 models on the 135-atom cell: FerroCalculator (E, F, σ, Z*, P under a field) on both devices,
then 20 steps of NVE field MD (two replicas, ±0.005 V/Å along z) from the same CPU-drawn momenta at 300 K (NVE:
no thermostat noise, whose device RNG differs). Goals: calculator results within
1e-8 relative, MD positions within 1e-8 Å and dipoles within 1e-8 e·Å (float64 reductions run in a different
order on the two devices, nothing more). Exits non-zero when a goal is missed or no GPU is there. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "benchmarks"), ROOT]
from timing import STRUCTURE  # noqa: E402  (benchmarks/timing.py, beside this script)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", default=os.path.join(ROOT, "checkpoints", "batio3-allegro-pol"))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cuda", help="the device compared with the CPU (cpu: a dry run of the script)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("cuda_vs_cpu: no CUDA device here")
    import ase.io

    from ferronn import FerroCalculator
    from ferronn.md.config import MDConfig
    from ferronn.md.engine import Simulation
    from ferronn.models.loading import load

    energy, born = (os.path.join(args.checkpoints, f"{k}.ckpt") for k in ("energy", "born"))
    atoms = ase.io.read(STRUCTURE, index=0)
    atoms.positions += np.random.default_rng(0).normal(scale=0.03, size=atoms.positions.shape)
    field = (0.0, 0.0, 0.005)
    results = {}
    for device in ("cpu", args.device):
        a = atoms.copy()
        a.calc = FerroCalculator(energy, born=born, device=device, dtype=torch.float64, field=field)
        results[device] = {"energy": np.array([a.get_potential_energy()]), "forces": a.get_forces(),
                           "stress": a.get_stress(), "born_charges": a.calc.get_born_charges(),
                           "polarization": a.calc.get_polarization()}
    calc_error = {k: float(np.abs(results[args.device][k] - v).max() / max(np.abs(v).max(), 1e-30))
                  for k, v in results["cpu"].items()}

    sims = []
    for device in ("cpu", args.device):
        models = [load(energy), load(born)]  # one pair per device: Simulation moves the modules it is given
        cfg = MDConfig(ensemble="nve", steps=0, equilibration_steps=0, log_every=10 ** 9, trajectory_every=0,
                       restart_every=0, device=device, dtype="float64", fields=[[0, 0, 0.005], [0, 0, -0.005]],
                       temperatures=[300.0], dt_fs=1.0, seed=0)
        sims.append(Simulation(cfg, *models, atoms, out=tempfile.mkdtemp(prefix="ferronn-cuda-")))
    cpu, gpu = sims
    gpu.state = gpu.forces(gpu.state.replace(momenta=cpu.state.momenta.to(args.device)))  # same start, CPU-drawn
    for sim in (cpu, gpu):
        sim.run(args.steps, progress=False)
    md_error = {"positions_A": float((gpu.state.positions.cpu() - cpu.state.positions).abs().max()),
                "dipole_eA": float((gpu.state.dipole.cpu() - cpu.state.dipole).abs().max()),
                "enthalpy_eV": float((gpu.enthalpy().cpu() - cpu.enthalpy()).abs().max())}
    moved = float((cpu.state.positions - torch.as_tensor(atoms.positions).repeat(2, 1)).abs().max())
    ok = max(calc_error.values()) < 1e-8 and md_error["positions_A"] < 1e-8 and md_error["dipole_eA"] < 1e-8
    gpu_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    summary = {"benchmark": "cuda_vs_cpu", "device": gpu_name, "torch": torch.__version__,
               "calculator_relative_error": calc_error, "md_error": md_error, "md_steps": args.steps,
               "md_max_displacement_A": moved, "passed": ok}
    for k, v in calc_error.items():
        print(f"calculator {k:>13}: {v:.1e} relative")
    for k, v in md_error.items():
        print(f"MD after {args.steps} steps {k:>12}: {v:.1e} (atoms moved up to {moved:.3f} Å)")
    print(json.dumps(summary))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
