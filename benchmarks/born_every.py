"""What ``born_every: k`` (Z* refreshed every k MD steps, stale in between) costs in accuracy and gains in speed.

    python benchmarks/born_every.py [--recipe recipes/batio3_dielectric.yaml] [--steps 500] [--warmup 100]
                                    [--k 2 4 8] [--speed-steps 6] [--repeats 5]

Accuracy, along one trajectory: the recipe's replicas (zero-field copies and ±E along x, y, z; Langevin, its dt
and T; ``--copies`` per field) run with Z* every step (k = 1), in float64 so rounding does not hide the
differences, and Z*(t) and r(t) are recorded. Along that same path the cell dipole is re-integrated as the
engine would with k > 1 (trapezoid rule on the stale Z*, ``ferronn.field.dipole_increment``), so the difference
is the integration error alone, not a chaotic divergence of two trajectories. Figures per k:

- ``dM_rms`` / ``dM_final`` (e·Å): RMS over steps, replicas and axes of M_k − M_1, and its value at the end;
  ``dM_drift_per_ps``: mean |slope| of a linear fit of M_k − M_1 against time. A stale Z* misses the
  displacement-dependence of Z* inside each block, a second-order error of one sign on average, so it drifts.
- ``sigma_M`` (e·Å): the thermal fluctuation of M_1 (std over time), what the fluctuation formula measures.
- ``response_shift_eA``: the largest change, over the ±E pairs, of the finite-field response
  R = (⟨M_a⟩₊ − ⟨M_a⟩₋)/2 along the field axis (ε's ionic part is proportional to it);
  ``response_shift``: that ÷ the mean |R|; ``response_shift_recipe``: the same extrapolated linearly (a drift)
  to the recipe's run length.
- ``variance_shift``: largest relative change of Var(M_a) over the zero-field replicas (the fluctuation
  formula's input) over the recorded run.
- ``field_force_error``: RMS |(Z*_k − Z*)ᵀE| ÷ RMS |Z*ᵀE| over the field replicas (the stale field force), and
  ``field_force_error_eV_A`` in eV/Å.

Speed: the same batch in the recipe's dtype, ms per MD step for k = 1 and each k (interleaved medians);
``speedup`` = t(k=1)/t(k). Last line: JSON.
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
from timing import interleaved_medians  # noqa: E402  (benchmarks/timing.py, beside this script)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=os.path.join(ROOT, "recipes", "batio3_dielectric.yaml"))
    p.add_argument("--steps", type=int, default=500, help="recorded MD steps (k = 1, float64)")
    p.add_argument("--warmup", type=int, default=100, help="Langevin steps before recording")
    p.add_argument("--k", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--speed-steps", type=int, default=6, help="steps per timed call (0: no speed part)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--copies", type=int, default=1, help="replicas per field (the recipe has 2)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    warnings.filterwarnings("ignore")

    from ferronn.field import dipole_increment
    from ferronn.md.config import load_md_config
    from ferronn.md.engine import Simulation, load_inputs
    from ferronn.md.observables import field_pairs

    os.chdir(ROOT)  # the recipe's paths are relative to the checkout
    out = tempfile.mkdtemp(prefix="ferronn-born-every-")
    quiet = dict(log_every=10 ** 9, trajectory_every=0, restart_every=0, device=args.device, copies=args.copies)
    cfg = load_md_config(args.recipe, {**quiet, "dtype": "float64", "born_every": 1})
    sim = Simulation(cfg, *load_inputs(cfg), out=out)
    for _ in range(args.warmup):
        sim.state = sim.step_fn(sim.state, sim.forces)
    s = sim.state
    positions, borns, dipoles = [s.positions.clone()], [s.born.clone()], [s.dipole.clone()]
    for _ in range(args.steps):
        sim.state = sim.step_fn(sim.state, sim.forces)
        positions.append(sim.state.positions.clone())
        borns.append(sim.state.born.clone())
        dipoles.append(sim.state.dipole.clone())
    r, z, m_engine = torch.stack(positions), torch.stack(borns), torch.stack(dipoles)
    field = s.field.to(torch.float64)[s.batch]  # constant fields in this recipe
    b = s.num_replicas

    def integrate(z_used):
        m = [m_engine[0]]
        for t in range(args.steps):
            m.append(m[-1] + dipole_increment(z_used[t], z_used[t + 1], r[t + 1] - r[t], s.batch, b))
        return torch.stack(m)

    m1 = integrate(z)
    # The re-integration with k = 1 must reproduce the engine's own dipole: the harness is the engine's rule.
    harness_error = float((m1 - m_engine).abs().max())
    time_ps = torch.arange(args.steps + 1, dtype=torch.float64) * cfg.dt_fs / 1000.0
    pairs = field_pairs(s.field.to(torch.float64), s.temperature_target.to(torch.float64))
    field_atoms = s.field[s.batch].abs().sum(-1) > 0
    f_field = torch.einsum("na,tnab->tnb", field, z)[:, field_atoms]
    zero_field = s.field.abs().sum(-1) == 0  # the fluctuation formula's replicas
    recipe_ps = cfg.steps * cfg.dt_fs / 1000.0
    sigma_m = float(m1.std(dim=0).mean())

    def response(m):
        # (⟨M_a⟩₊ − ⟨M_a⟩₋)/2 for each ±E pair along its axis
        return torch.stack([(m[:, plus, axis].mean() - m[:, minus, axis].mean()) / 2 for plus, minus, axis in pairs])

    r1 = response(m1)
    results = {}
    for k in args.k:
        zk = z[(torch.arange(args.steps + 1) // k) * k]
        dm = integrate(zk) - m1
        slope = np.polyfit(time_ps.numpy(), dm.reshape(args.steps + 1, -1).numpy(), 1)[0]
        shift = (response(m1 + dm) - r1).abs().max() if len(pairs) else torch.tensor(float("nan"))
        grow = recipe_ps / float(time_ps[-1])  # dM grows ~linearly, so its mean over a run does too
        dforce = torch.einsum("na,tnab->tnb", field, zk - z)[:, field_atoms]
        rms_dforce = dforce.norm(dim=-1).pow(2).mean().sqrt()
        var1, vark = m1[:, zero_field].var(dim=0), (m1 + dm)[:, zero_field].var(dim=0)
        results[k] = {
            "variance_shift": float(((vark - var1).abs() / var1).max()) if bool(zero_field.any()) else None,
            "dM_rms": float(dm.pow(2).mean().sqrt()), "dM_final": float(dm[-1].abs().max()),
            "dM_drift_per_ps": float(np.abs(slope).mean()),
            "response_shift_eA": float(shift), "response_shift": float(shift / r1.abs().mean()),
            "response_shift_recipe": float(shift / r1.abs().mean()) * grow,
            "field_force_error": float(rms_dforce / f_field.norm(dim=-1).pow(2).mean().sqrt()),
            "field_force_error_eV_A": float(rms_dforce),
        }

    speed = {}
    if args.speed_steps:
        runs = {}
        inputs = load_inputs(load_md_config(args.recipe, quiet))  # one load: every k runs in the same dtype
        for k in [1] + list(args.k):
            kcfg = load_md_config(args.recipe, {**quiet, "born_every": k})
            ksim = Simulation(kcfg, *inputs, out=out)
            runs[k] = (lambda ksim=ksim: ksim.run(args.speed_steps, progress=False))
        t = interleaved_medians(runs, args.repeats, args.device)
        speed = {k: {"ms_per_step": 1e3 * v / args.speed_steps, "speedup": t[1] / v} for k, v in t.items()}

    summary = {"benchmark": "born_every", "recipe": os.path.relpath(args.recipe, ROOT), "replicas": b,
               "atoms_per_replica": int(s.num_atoms[0]), "dt_fs": cfg.dt_fs, "recorded_ps": float(time_ps[-1]),
               "recipe_ps": recipe_ps, "harness_error": harness_error, "sigma_M": sigma_m,
               "response": [float(x) for x in r1], "accuracy": results, "speed": speed}
    print(f"replicas {b} × {int(s.num_atoms[0])} atoms, {float(time_ps[-1]):.2f} ps recorded (dt {cfg.dt_fs} fs), "
          f"σ_M {sigma_m:.3f} e·Å, ±E response {', '.join(f'{float(x):.3f}' for x in r1)} e·Å")
    for k, v in results.items():
        line = (f"k={k}: dM rms {v['dM_rms']:.2e} e·Å, drift {v['dM_drift_per_ps']:.2e} e·Å/ps, "
                f"response shift {v['response_shift']:.2e} (at the recipe's {recipe_ps:g} ps: "
                f"{v['response_shift_recipe']:.2e}), Var(M) shift {v['variance_shift']:.1e}, "
                f"field force {v['field_force_error']:.2e} ({v['field_force_error_eV_A']:.1e} eV/Å)")
        if k in speed:
            line += f", {speed[k]['ms_per_step']:.0f} ms/step, speed-up {speed[k]['speedup']:.2f}"
        print(line)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
