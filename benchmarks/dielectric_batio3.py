"""ε of BaTiO3 from the trained models, both estimators, with the checks docs/conventions.md asks for.

    python benchmarks/dielectric_batio3.py [--steps 2000] [--equilibration 500] [--device auto] [--dtype float32]
                                           [--copies 1] [--compile]

Runs recipes/batio3_dielectric.yaml (zero-field replicas for the fluctuation formula, ±E along x, y, z for the
finite-field estimator, NVT at 300 K, clamped cell) and the same ±E replicas at |E|/2, all in one batch, then
reports:
- ε from both estimators with block-averaging error bars, and whether they agree (|Δ| ≤ 2σ combined);
- linearity: the finite-field ε at |E| and |E|/2 (agree within error bars when the response is linear);
- the plateau of ⟨M⟩ in the ±E replicas: the slope of M(t) over the production run (e·Å/ps) against its error;
- integrability of the Born model: ∮Z*·dr around small loops at the starting structure, and the drift of
  M(t) − [M(0) + Σ½(Z*(0)+Z*(t))·(r(t)−r(0))] in the zero-field replicas.
Long runs belong here, not in tests: on 2 CPU cores 1000 steps of the 13 replicas take tens of minutes.
Last line: JSON.
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
    p.add_argument("--recipe", default=os.path.join(ROOT, "recipes", "batio3_dielectric.yaml"))
    p.add_argument("--steps", type=int, default=None, help="production steps (default: the recipe's)")
    p.add_argument("--equilibration", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default=None)
    p.add_argument("--copies", type=int, default=None, help="zero-field replicas (default: the recipe's)")
    p.add_argument("--compile", action="store_true", help="torch.compile the models (compile: true)")
    args = p.parse_args()
    os.chdir(ROOT)  # the recipe's paths are relative to the checkout

    from ferronn.md.config import load_md_config
    from ferronn.md.engine import Simulation
    from ferronn.md.integrability import loop_integral, path_discrepancy

    overrides = {"device": args.device, "log_every": 50, "trajectory_every": 0, "restart_every": 0}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.equilibration is not None:
        overrides["equilibration_steps"] = args.equilibration
    if args.dtype:
        overrides["dtype"] = args.dtype
    if args.copies is not None:
        overrides["copies"] = args.copies
    if args.compile:
        overrides["compile"] = True
    cfg = load_md_config(args.recipe, overrides)
    cfg.dielectric.finite_field = cfg.dielectric.linearity_check = True  # ±E and ±E/2 replicas, one batch
    sim = Simulation.from_config(cfg)
    sim.out = tempfile.mkdtemp(prefix="ferronn-dielectric-")
    s0 = sim.state
    start = {"dipole": s0.dipole.clone(), "born": s0.born.clone(), "positions": s0.positions.clone()}
    table = sim.state.field.cpu().numpy()
    zero = [b for b in range(len(table)) if not np.abs(table[b]).max()]
    biased = [b for b in range(len(table)) if np.abs(table[b]).max()]

    # Record M(t) of every replica during production for the plateau check (one host read per sample block).
    series, times = [], []
    t_wall = time.perf_counter()
    sim.run(cfg.equilibration_steps, progress=True)
    chunk = 10
    for _ in range(cfg.steps // chunk):
        sim.run(chunk, progress=False)
        series.append(sim.state.dipole.cpu().numpy().copy())
        times.append(float(sim.state.time) / 1000.0)
    wall = time.perf_counter() - t_wall
    summary = sim.summary()
    series, times = np.array(series), np.array(times)

    def estimate(key):
        if key not in summary:
            return None, None
        return np.array(summary[key]["mean"]), np.array(summary[key]["error"])

    fl, fl_err = estimate("epsilon_fluctuation")
    ff, ff_err = estimate("epsilon_finite_field")
    ff_half, ff_half_err = estimate("epsilon_finite_field_half")
    diag = np.diag_indices(3)

    slopes = {}
    for b in biased:
        m = series[:, b, :]
        fit = [np.polyfit(times, m[:, a], 1) for a in range(3)]
        resid = [m[:, a] - np.polyval(fit[a], times) for a in range(3)]
        slope_err = [np.std(r) / (np.std(times) * np.sqrt(max(len(times) / 10, 1))) for r in resid]
        slopes[b] = {"field": table[b].tolist(), "slope_eA_per_ps": [float(f[0]) for f in fit],
                     "error": [float(e) for e in slope_err]}

    end = sim.state
    discrepancy = path_discrepancy(start["dipole"], start["born"], start["positions"], end.dipole, end.born,
                                   end.positions, end.batch).cpu().numpy()
    import ase.io

    atoms = ase.io.read(cfg.structure, index=cfg.index)
    loops = loop_integral(sim.born_model, atoms, amplitude=0.05, points=64, loops=8)

    def within(x, x_err, y, y_err):
        return (np.abs(x - y) <= 2 * np.sqrt(x_err ** 2 + y_err ** 2))[diag].tolist()

    agree = within(fl, fl_err, ff, ff_err) if fl is not None and ff is not None else None
    linear = within(ff, ff_err, ff_half, ff_half_err) if ff is not None and ff_half is not None else None
    result = {
        "benchmark": "dielectric_batio3", "recipe": os.path.relpath(args.recipe, ROOT), "device": str(sim.device),
        "dtype": cfg.dtype, "compiled": cfg.compile, "eps_inf": summary["eps_inf"], "replicas": sim.state.num_replicas, "atoms_per_replica": int(sim.state.num_atoms[0]),
        "production_ps": float(times[-1] - times[0]) if len(times) > 1 else 0.0, "wall_s": wall,
        "temperature_K": summary["temperature"]["mean"][0] if "temperature" in summary else None,
        **{f"eps_{name}_{part}": (value[diag].tolist() if value is not None else None)
           for name, pair in (("fluctuation", (fl, fl_err)), ("finite_field", (ff, ff_err)),
                              ("finite_field_half", (ff_half, ff_half_err)))
           for part, value in zip(("diag", "err"), pair)},
        "estimators_agree_2sigma": agree,
        "linear_at_half_field_2sigma": linear,
        "dipole_slopes_pm_E": slopes,
        "zero_field_path_discrepancy_eA": [discrepancy[b].tolist() for b in zero],
        "loop_integral": loops,
    }
    print(f"ε fluctuation (diag): {result['eps_fluctuation_diag']} ± {result['eps_fluctuation_err']}")
    print(f"ε finite field |E| : {result['eps_finite_field_diag']} ± {result['eps_finite_field_err']}")
    print(f"ε finite field |E|/2: {result['eps_finite_field_half_diag']} ± {result['eps_finite_field_half_err']}")
    print(f"estimators agree (2σ): {result['estimators_agree_2sigma']}, linear: {result['linear_at_half_field_2sigma']}")
    print(f"loop integral: {loops}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
