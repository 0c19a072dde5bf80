"""P–E hysteresis: a periodic field along one axis for several cycles, the loop, the remanent polarization P_r
and the coercive field E_c with error bars over cycles (and replicas). With ``amplitude: 0`` a preliminary ramp
against the polarization finds the switching field first and E_max = ramp_factor × it.

Per cycle (time order): P_r± = P where E crosses 0 going down/up, E_c± = E where P crosses 0 going up/down;
P_r = (P_r+ − P_r−)/2, E_c = (E_c+ − E_c−)/2. The loop closes when, near ±E_max (|E| ≥ 0.9 E_max), the rising
and falling branches agree within 2σ. P is the cell polarization change M(t)/Ω integrated from Z*·dr (only
changes of P are defined): E_c is read where P crosses the loop's centre, the mean of its values at ±E_max, and
P_r is a difference across the loop. Outputs: hysteresis.csv (the loop), hysteresis_cycles.csv, hysteresis.png,
study.json.
"""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np

from ..errors import ConfigError, SimulationError
from ..md.engine import load_inputs
from ..units import V_PER_A_TO_KV_PER_CM
from .config import StudyConfig
from .outputs import Ledger, figure, read_csv, resumed_simulation, save_figure, write_csv

AXES = {"x": 0, "y": 1, "z": 2}


def _log_rows(folder: str, axis: int, first_step: int, last_step: int):
    """(step, time, replica, E_axis, P_axis μC/cm²) of the MD log rows in (first_step, last_step]."""
    out = []
    with open(os.path.join(folder, "log.csv"), newline="") as handle:
        for row in csv.DictReader(handle):
            step = int(row["step"])
            if first_step < step <= last_step:
                out.append((step, float(row["time_fs"]), int(row["replica"]), float(row["E" + "xyz"[axis]]),
                            float(row["P" + "xyz"[axis] + "_uC_cm2"])))
    return out


def find_switching_field(config: StudyConfig, models, atoms, folder: str) -> dict:
    """Ramp E against +axis until P along the axis has dropped by ``switch_drop`` beyond linear response; the
    switching field is where that drop passes half of it (``switching_field``). Raises ConfigError if nothing
    switches below ``ramp_max``."""
    st, axis = config.hysteresis, AXES[config.hysteresis.axis]
    period = 1000.0  # fs: the ramp reaches ramp_rate × 1000 fs per period and goes on
    field = [0.0, 0.0, 0.0]
    field[axis] = -st.ramp_rate * period
    max_steps = int(np.ceil(st.ramp_max / st.ramp_rate / config.md.dt_fs))
    md = dataclasses.replace(config.md, fields=[field], field_kind="ramp", field_period_fs=period, steps=max_steps,
                             equilibration_steps=0, log_every=st.sample_every,
                             dielectric=dataclasses.replace(config.md.dielectric, finite_field=False))
    sim = resumed_simulation(md, models, atoms, folder)
    chunk = 20 * st.sample_every
    while sim.steps_done < max_steps:
        sim.run(min(chunk, max_steps - sim.steps_done), progress=False)
        e, p = _ramp_samples(folder, axis, sim.steps_done)
        if _excess_drop(e, p).max(initial=0.0) >= st.switch_drop:
            break
    e, p = _ramp_samples(folder, axis, sim.steps_done)
    excess = _excess_drop(e, p)
    if excess.max(initial=0.0) < st.switch_drop:
        raise ConfigError(f"hysteresis: no switching along −{st.axis} up to ramp_max {st.ramp_max} V/Å (P fell by "
                          f"{excess.max(initial=0.0):.1f} μC/cm² beyond linear response, switch_drop "
                          f"{st.switch_drop}); raise ramp_max or give hysteresis.amplitude")
    e_switch = switching_field(e, excess, st.switch_drop)
    return {"E_switch_V_per_A": e_switch, "E_max_V_per_A": st.ramp_factor * e_switch,
            "ramp_steps": int(sim.steps_done)}


def _ramp_samples(folder: str, axis: int, last_step: int):
    """|E| (V/Å) and P (μC/cm²) along the axis of the ramp so far, averaged over replicas, in time order."""
    rows = _log_rows(folder, axis, 0, last_step)
    steps = sorted({r[0] for r in rows})
    e = np.array([np.mean([abs(r[3]) for r in rows if r[0] == s]) for s in steps])
    p = np.array([np.mean([r[4] for r in rows if r[0] == s]) for s in steps])
    return e, p


def _excess_drop(e: np.ndarray, p: np.ndarray) -> np.ndarray:
    """How far P has fallen below its linear response, extrapolated from the first fifth of the ramp (μC/cm²)."""
    if len(p) < 10:
        return np.zeros(len(p))
    early = slice(0, max(3, len(p) // 5))
    slope = np.polyfit(e[early], p[early], 1)[0]
    return (p[0] + slope * (e - e[0])) - p


def switching_field(e: np.ndarray, excess: np.ndarray, switch_drop: float) -> float:
    """|E| (V/Å) where P's drop beyond linear response (running mean) first passes ``switch_drop``/2: where the
    switch is under way. A threshold on the drop, not the steepest point of P(E): thermal noise between samples
    ~1e-3 V/Å apart puts the raw slope's minimum anywhere on the ramp."""
    window = max(1, len(excess) // 40)  # a running mean over 2.5% of the ramp halves the noise at 5 samples
    excess = np.convolve(excess, np.ones(window) / window, mode="same")
    k = int(np.argmax(excess >= 0.5 * switch_drop))
    if k == 0:
        return float(e[0])
    w = (0.5 * switch_drop - excess[k - 1]) / (excess[k] - excess[k - 1])
    return float(e[k - 1] + w * (e[k] - e[k - 1]))


def _crossings(x, y, rising: bool):
    """Values of y where x crosses 0 upwards (rising) or downwards, linearly interpolated."""
    out = []
    for k in range(len(x) - 1):
        a, b = x[k], x[k + 1]
        if (rising and a < 0 <= b) or (not rising and a > 0 >= b):
            w = a / (a - b)
            out.append(y[k] + w * (y[k + 1] - y[k]))
    return out


def analyse_cycle(e: np.ndarray, p: np.ndarray, e_max: float) -> dict:
    """P_r±, E_c± and the branches' P near ±E_max of one replica's cycle (E in V/Å, P in μC/cm², time order)."""
    de = np.gradient(e)
    tips = {}
    for sign, name in ((1, "top"), (-1, "bottom")):
        near = sign * e >= 0.9 * e_max
        tips[f"P_{name}_rising"] = float(p[near & (de > 0)].mean()) if (near & (de > 0)).any() else float("nan")
        tips[f"P_{name}_falling"] = float(p[near & (de < 0)].mean()) if (near & (de < 0)).any() else float("nan")
    centre = np.nanmean(list(tips.values())) if np.isfinite(list(tips.values())).any() else 0.5 * (p.max() + p.min())
    pr_down, pr_up = _crossings(e, p, rising=False), _crossings(e, p, rising=True)
    ec_up, ec_down = _crossings(p - centre, e, rising=True), _crossings(p - centre, e, rising=False)
    first = lambda v: float(v[0]) if v else float("nan")  # noqa: E731
    return {"P_r_plus": first(pr_down), "P_r_minus": first(pr_up), "E_c_plus": first(ec_up),
            "E_c_minus": first(ec_down), "switched": bool(ec_up and ec_down),
            "loss_uC_cm2_V_per_A": float(np.trapezoid(e, p)) if len(e) > 1 else 0.0, **tips}


def _mean_err(values):
    v = np.array([x for x in values if np.isfinite(x)])
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


def run(config: StudyConfig) -> dict:
    st, out = config.hysteresis, config.out
    ledger = Ledger(out, "hysteresis", config.md)
    energy, born, atoms = load_inputs(config.md)
    if born is None:
        raise ConfigError("hysteresis: needs Born charges; set md.born to a born.ckpt")
    axis = AXES[st.axis]
    e_max = st.amplitude
    if e_max == 0:
        ramp = ledger.get("ramp") or find_switching_field(config, (energy, born), atoms, os.path.join(out, "ramp"))
        ledger.record("ramp", ramp)
        e_max = ramp["E_max_V_per_A"]
    field = [0.0, 0.0, 0.0]
    field[axis] = e_max
    per_cycle = int(round(st.period_fs / config.md.dt_fs))
    md = dataclasses.replace(config.md, fields=[field], field_kind=st.shape, field_period_fs=st.period_fs,
                             steps=st.cycles * per_cycle, equilibration_steps=0, log_every=st.sample_every,
                             dielectric=dataclasses.replace(config.md.dielectric, finite_field=False))
    folder = os.path.join(out, "loop")
    sim = resumed_simulation(md, (energy, born), atoms, folder)
    for k in range(st.cycles):
        if ledger.get(f"cycle{k}") is not None:
            continue
        if sim.steps_done < (k + 1) * per_cycle:
            try:
                sim.run((k + 1) * per_cycle - sim.steps_done, progress=False)
            except SimulationError as exc:
                raise SimulationError(f"hysteresis cycle {k}: {exc}") from None
        rows = _log_rows(folder, axis, k * per_cycle, (k + 1) * per_cycle)
        replicas = sorted({r[2] for r in rows})
        ledger.record(f"cycle{k}", {"replicas": [analyse_cycle(np.array([r[3] for r in rows if r[2] == b]),
                                                                np.array([r[4] for r in rows if r[2] == b]), e_max)
                                                 for b in replicas]})
    return _report(config, ledger, folder, e_max, per_cycle)


def _report(config: StudyConfig, ledger: Ledger, folder: str, e_max: float, per_cycle: int) -> dict:
    st, out, axis = config.hysteresis, config.out, AXES[config.hysteresis.axis]
    rows = _log_rows(folder, axis, 0, st.cycles * per_cycle)
    write_csv(os.path.join(out, "hysteresis.csv"), ["cycle", "step", "time_fs", "replica", "E_V_per_A", "E_kV_per_cm",
                                                    "P_uC_cm2"],
              [[(s - 1) // per_cycle, s, t, b, e, e * V_PER_A_TO_KV_PER_CM, p] for s, t, b, e, p in rows])
    kept = [c for k in range(st.discard_cycles, st.cycles) for c in ledger.get(f"cycle{k}")["replicas"]]
    pr, pr_err = _mean_err([(c["P_r_plus"] - c["P_r_minus"]) / 2 for c in kept])
    ec, ec_err = _mean_err([(c["E_c_plus"] - c["E_c_minus"]) / 2 for c in kept])
    closes = {}
    for tip in ("top", "bottom"):
        d = [c[f"P_{tip}_rising"] - c[f"P_{tip}_falling"] for c in kept]
        mean, err = _mean_err(d)
        closes[tip] = {"difference_uC_cm2": mean, "error_uC_cm2": err,
                       "closed": bool(np.isfinite(mean) and (abs(mean) <= 2 * err if np.isfinite(err) else False))}
    cycle_rows = [[k, b, *[c[key] for key in ("P_r_plus", "P_r_minus", "E_c_plus", "E_c_minus", "switched")]]
                  for k in range(st.cycles) for b, c in enumerate(ledger.get(f"cycle{k}")["replicas"])]
    write_csv(os.path.join(out, "hysteresis_cycles.csv"),
              ["cycle", "replica", "P_r_plus_uC_cm2", "P_r_minus_uC_cm2", "E_c_plus_V_per_A", "E_c_minus_V_per_A",
               "switched"], cycle_rows)
    result = {"E_max_V_per_A": e_max, "E_max_kV_per_cm": e_max * V_PER_A_TO_KV_PER_CM,
              "P_r_uC_cm2": pr, "P_r_err_uC_cm2": pr_err, "E_c_V_per_A": ec, "E_c_err_V_per_A": ec_err,
              "E_c_kV_per_cm": ec * V_PER_A_TO_KV_PER_CM, "E_c_err_kV_per_cm": ec_err * V_PER_A_TO_KV_PER_CM,
              "cycles_used": st.cycles - st.discard_cycles, "samples_used": len(kept), "closes": closes,
              "loop_closes": all(v["closed"] for v in closes.values()),
              "csv": os.path.join(out, "hysteresis.csv"), "png": os.path.join(out, "hysteresis.png")}
    save_figure(plot(result["csv"], result, st.discard_cycles), result["png"])
    ledger.record("results", result)
    return result


def plot(csv_path: str, result: dict, discard_cycles: int = 0):
    """P(E) per cycle (discarded cycles faded), E in kV/cm below and V/Å above, P_r and E_c in the title."""
    columns = read_csv(csv_path)
    fig, axes = figure()
    ax = axes[0][0]
    cycle, replica = np.array(columns["cycle"]), np.array(columns["replica"])
    e, p = np.array(columns["E_kV_per_cm"]), np.array(columns["P_uC_cm2"])
    for k in np.unique(cycle):
        for b in np.unique(replica):
            sel = (cycle == k) & (replica == b)
            ax.plot(e[sel], p[sel], lw=1, color=f"C{int(k) % 10}", alpha=0.35 if k < discard_cycles else 1.0,
                    label=f"cycle {int(k)}" + (" (discarded)" if k < discard_cycles else "") if b == 0 else None)
    ax.set_xlabel("E (kV/cm)")
    ax.set_ylabel("ΔP (μC/cm²)")
    top = ax.secondary_xaxis("top", functions=(lambda x: x / V_PER_A_TO_KV_PER_CM, lambda x: x * V_PER_A_TO_KV_PER_CM))
    top.set_xlabel("E (V/Å)")
    ax.set_title(f"P_r = {result['P_r_uC_cm2']:.2f} ± {result['P_r_err_uC_cm2']:.2f} μC/cm², E_c = "
                 f"{result['E_c_kV_per_cm']:.0f} ± {result['E_c_err_kV_per_cm']:.0f} kV/cm "
                 f"({result['E_c_V_per_A']:.4f} ± {result['E_c_err_V_per_A']:.4f} V/Å)", fontsize=8)
    ax.axhline(0, color="0.7", lw=0.5)
    ax.axvline(0, color="0.7", lw=0.5)
    ax.legend(fontsize=7)
    return fig
