"""NVE drift of the electric enthalpy H = K + U0 − M·E with the trained BaTiO3 models, with and without a field.

    python benchmarks/nve_drift.py [--ps 10] [--dt 1.0] [--temperature 300] [--equilibrate-ps 1.0]
                                   [--field 0.0 0.0 0.01] [--device auto]

135-atom allegro-pol cell, float64 throughout (H summed in float64), two replicas in one batch: E = 0 and E =
--field (V/Å). The drift is the slope of a linear fit of H/atom against time (eV/atom/ps); the goal is
≤ 1e-4 eV/atom/ps at dt = 1 fs and 300 K over ≥ 10 ps, and no larger under the field (M is integrated along the
path with the trapezoid rule, so dH/dt = 0 for any Z*: this checks the integrator, not the model). Velocities
drawn at T alone would leave an NVE run near T/2 (equipartition from a near-equilibrium frame), so a Langevin
run at T (--equilibrate-ps, not fitted) comes first and the NVE run holds about T.
tests/test_md_ensembles.py runs the same check for 0.6 ps on the 5-atom shipped models; the long run lives here. Last line: JSON.
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", default=os.path.join(ROOT, "checkpoints", "batio3-allegro-pol"))
    p.add_argument("--ps", type=float, default=10.0)
    p.add_argument("--dt", type=float, default=1.0, help="fs")
    p.add_argument("--temperature", type=float, default=300.0)
    p.add_argument("--field", type=float, nargs=3, default=[0.0, 0.0, 0.01])
    p.add_argument("--equilibrate-ps", type=float, default=1.0, help="Langevin at --temperature before NVE")
    p.add_argument("--every", type=int, default=20, help="steps between H samples")
    p.add_argument("--device", default="auto")
    args = p.parse_args()

    import ase.io

    from ferronn.md import integrators
    from ferronn.md.config import MDConfig
    from ferronn.md.engine import Simulation
    from ferronn.md.state import temperature, without_centre_of_mass_motion
    from ferronn.models.loading import load

    atoms = ase.io.read(os.path.join(ROOT, "..", "shared", "data", "batio3-allegro-pol", "BaTiO3.xyz"), index=0)
    energy, born = (load(os.path.join(args.checkpoints, f"{k}.ckpt")) for k in ("energy", "born"))
    cfg = MDConfig(ensemble="nve", dt_fs=args.dt, temperatures=[args.temperature], fields=[[0, 0, 0], args.field],
                   steps=0, equilibration_steps=0, log_every=10 ** 9, trajectory_every=0, restart_every=0,
                   device=args.device, dtype="float64", seed=0)
    sim = Simulation(cfg, energy, born, atoms, out=tempfile.mkdtemp(prefix="ferronn-drift-"))
    nve = sim.step_fn
    sim.step_fn = lambda state, forces: integrators.langevin_baoab(state, forces, dt=args.dt,
                                                                   friction=cfg.friction_per_fs,
                                                                   generator=sim.generator)
    start = time.perf_counter()
    equilibration = int(round(args.equilibrate_ps * 1000 / args.dt))
    sim.run(equilibration, progress=False)
    sim.step_fn = nve
    s = sim.state  # Langevin kicks move the centre of mass: NVE starts with it at rest
    sim.state = s.replace(momenta=without_centre_of_mass_motion(s.momenta, s.batch, s.num_atoms))
    steps = int(round(args.ps * 1000 / args.dt))
    times, enthalpy, temperatures = [], [], []
    for _ in range(steps // args.every):
        sim.run(args.every, progress=False)
        times.append(float(sim.state.time) / 1000.0)
        enthalpy.append(sim.enthalpy().cpu().numpy() / len(atoms))
        temperatures.append(temperature(sim.state, momentum_conserved=True).cpu().numpy())
    wall = time.perf_counter() - start
    enthalpy = np.array(enthalpy)
    slopes = [float(np.polyfit(times, enthalpy[:, b], 1)[0]) for b in range(2)]
    work = float((sim.state.dipole[1] * sim.state.field[1]).sum()) / len(atoms)
    result = {"benchmark": "nve_drift", "device": str(sim.device), "atoms": len(atoms), "ps": times[-1] - times[0],
              "dt_fs": args.dt, "temperature_K": args.temperature, "field_V_per_A": args.field,
              "drift_eV_per_atom_ps": {"zero_field": slopes[0], "field": slopes[1]},
              "field_work_eV_per_atom": work, "max_abs_H_change_eV_per_atom":
                  np.abs(enthalpy - enthalpy[0]).max(axis=0).tolist(),
              "equilibrate_ps": args.equilibrate_ps, "mean_temperature_K": np.mean(temperatures, axis=0).tolist(),
              "wall_s": wall,
              "steps_per_s": (equilibration + steps) / wall, "neighbour_rebuilds": sim.forces.rebuilds}
    print(f"drift (eV/atom/ps): zero field {slopes[0]:.2e}, field {slopes[1]:.2e}; field work {work:.2e} eV/atom")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
