"""P–E hysteresis: a periodic field along one axis for several cycles, the loop, the remanent polarization P_r
and the coercive field E_c with error bars over cycles (and replicas). With ``amplitude: 0`` a preliminary ramp
against the polarization finds the switching field first and E_max = ramp_factor × it.

Per cycle (time order): P_r± = P where E crosses 0 going down/up, E_c± = E where P crosses 0 going up/down;
P_r = (P_r+ − P_r−)/2, E_c = (E_c+ − E_c−)/2. The loop closes when, near ±E_max (|E| ≥ 0.9 E_max), the rising
and falling branches agree within 2σ. P is the cell polarization change M(t)/Ω integrated from Z*·dr (only
changes of P are defined): E_c is read where P crosses the loop's centre, the mean of its values at ±E_max, and
P_r is a difference across the loop. With a single sample there is no error bar (reported as null, "no error
bar") and closure is undecided (null), not false.

Sweeps: ``hysteresis.temperatures`` × ``hysteresis.periods_fs``, each pair one resumable unit (its own folder and
ledger entries, and its own random stream: ``unit_seed``, so the points of E_c(T) are independent samples rather
than one noise history seen at several temperatures); E_c(T) is plotted beside allegro-pol's 1080-atom points
and E_c(period) per temperature.
Outputs: hysteresis.csv (the loops), hysteresis_cycles.csv, hysteresis_summary.csv (one row per unit),
hysteresis.png, coercive_field_T.png, coercive_field_period.png (fields in MV/cm), study.json.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import zlib

import numpy as np

from ..errors import ConfigError, SimulationError
from ..md.engine import load_inputs
from ..units import V_PER_A_TO_KV_PER_CM, V_PER_A_TO_MV_PER_CM
from .config import StudyConfig
from .outputs import Ledger, figure, read_csv, resumed_simulation, save_figure, write_csv

AXES = {"x": 0, "y": 1, "z": 2}

#: allegro-pol's coercive field of BaTiO3 (1080 atoms, 20 runs per temperature, 280–350 K in 10 K steps), MV/cm:
#: the endpoints quoted in issue 32 from mir-group/allegro-pol scripts/8.CoerciveField (8.CoerciveField.py reads the
#: LAMMPS logs, E_c = field at the first sign change of P_z in each half cycle; the values themselves are in the
#: Materials Cloud archive, not the repository, so only the two endpoints are shown).
ALLEGRO_POL_EC = [(280.0, 11.6, 0.2), (350.0, 10.6, 0.2)]  # (T K, E_c MV/cm, error MV/cm)


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


def _crossings(x, y, rising: bool, where=None):
    """Values of y where x crosses 0 upwards (rising) or downwards, linearly interpolated; with ``where`` (a mask
    per sample), only crossings that start at a sample where it holds."""
    out = []
    for k in range(len(x) - 1):
        a, b = x[k], x[k + 1]
        if where is not None and not where[k]:
            continue
        if (rising and a < 0 <= b) or (not rising and a > 0 >= b):
            w = a / (a - b)
            out.append(y[k] + w * (y[k + 1] - y[k]))
    return out


def analyse_cycle(e: np.ndarray, p: np.ndarray, e_max: float) -> dict:
    """P_r±, E_c± and the branches' P near ±E_max of one replica's cycle (E in V/Å, P in μC/cm², time order)."""
    # sin(2π) in floating point is −2e-16, not 0: snap round-off zeros so the crossing at the cycle's end counts
    e = np.where(np.abs(e) <= 1e-9 * e_max, 0.0, np.asarray(e, dtype=float))
    de = np.gradient(e)
    tips = {}
    for sign, name in ((1, "top"), (-1, "bottom")):
        near = sign * e >= 0.9 * e_max
        tips[f"P_{name}_rising"] = float(p[near & (de > 0)].mean()) if (near & (de > 0)).any() else float("nan")
        tips[f"P_{name}_falling"] = float(p[near & (de < 0)].mean()) if (near & (de < 0)).any() else float("nan")
    centre = np.nanmean(list(tips.values())) if np.isfinite(list(tips.values())).any() else 0.5 * (p.max() + p.min())
    pr_down, pr_up = _crossings(e, p, rising=False), _crossings(e, p, rising=True)
    # An up-switch happens while the field rises and a down-switch while it falls: at 300 K thermal noise makes P
    # recross the centre in the middle of a down-switch, and that upward crossing (at E < 0, on the falling
    # branch) is not an up-switch.
    ec_up = _crossings(p - centre, e, rising=True, where=de > 0)
    ec_down = _crossings(p - centre, e, rising=False, where=de < 0)
    first = lambda v: float(v[0]) if v else float("nan")  # noqa: E731
    return {"P_r_plus": first(pr_down), "P_r_minus": first(pr_up), "E_c_plus": first(ec_up),
            "E_c_minus": first(ec_down), "switched": bool(ec_up and ec_down),
            "loss_uC_cm2_V_per_A": float(np.trapezoid(e, p)) if len(e) > 1 else 0.0, **tips}


def _mean_err(values):
    """(mean, standard error) of the finite values; the error is None with fewer than 2 (no error bar), the mean
    None with none."""
    v = np.array([x for x in values if x is not None and np.isfinite(x)])
    if len(v) == 0:
        return None, None
    return float(v.mean()), (float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None)


def _units(config: StudyConfig):
    """(temperature or None for md.temperatures in one batch, period fs, name) per unit; name '' is the single-loop
    layout of a study without sweeps (folders loop/ and ramp/, ledger keys cycle{k})."""
    st = config.hysteresis
    if not st.temperatures and not st.periods_fs:
        return [(None, st.period_fs, "")]
    temps = [float(t) for t in st.temperatures] or [None]
    periods = [float(p) for p in st.periods_fs] or [st.period_fs]
    return [(t, p, (f"T{t:g}K_" if t is not None else "") + f"P{p:g}fs") for t in temps for p in periods]


def run(config: StudyConfig) -> dict:
    st, out = config.hysteresis, config.out
    ledger = Ledger(out, "hysteresis", config.md)
    energy, born, atoms = load_inputs(config.md)
    if born is None:
        raise ConfigError("hysteresis: needs Born charges; set md.born to a born.ckpt")
    units = []
    for temperature, period, name in _units(config):
        units.append(_run_unit(config, ledger, (energy, born), atoms, temperature, period, name))
    return _report(config, ledger, units)


def unit_seed(seed: int, name: str) -> int:
    """The MD seed of the unit ``name``: ``seed`` itself for a single loop (name ''), else a function of the seed
    and the unit's name only, so adding or reordering units changes no other unit's stream."""
    return seed if not name else (seed + zlib.crc32(name.encode())) % 2 ** 63


def _run_unit(config: StudyConfig, ledger: Ledger, models, atoms, temperature, period: float, name: str) -> dict:
    """The loop of one (temperature, period) unit, resumed where a kill left it; its cycles go to the ledger."""
    st, out, axis = config.hysteresis, config.out, AXES[config.hysteresis.axis]
    md = config.md if temperature is None else dataclasses.replace(config.md, temperatures=[temperature])
    md = dataclasses.replace(md, seed=unit_seed(md.seed, name))
    prefix = f"{name}/" if name else ""
    e_max = st.amplitude
    if e_max == 0:  # the switching field depends on T, not on the period: one ramp per temperature
        key = "ramp" if temperature is None else f"ramp_T{temperature:g}K"
        ramp = ledger.get(key) or find_switching_field(dataclasses.replace(config, md=md), models, atoms,
                                                       os.path.join(out, key))
        ledger.record(key, ramp)
        e_max = ramp["E_max_V_per_A"]
    field = [0.0, 0.0, 0.0]
    field[axis] = e_max
    per_cycle = int(round(period / md.dt_fs))
    md = dataclasses.replace(md, fields=[field], field_kind=st.shape, field_period_fs=period,
                             steps=st.cycles * per_cycle, equilibration_steps=0, log_every=st.sample_every,
                             dielectric=dataclasses.replace(md.dielectric, finite_field=False))
    folder = os.path.join(out, name or "loop")
    sim = None
    for k in range(st.cycles):
        if ledger.get(f"{prefix}cycle{k}") is not None:
            continue
        sim = sim or resumed_simulation(md, models, atoms, folder)
        if sim.steps_done < (k + 1) * per_cycle:
            try:
                sim.run((k + 1) * per_cycle - sim.steps_done, progress=False)
            except SimulationError as exc:
                raise SimulationError(f"hysteresis {name or 'loop'} cycle {k}: {exc}") from None
        rows = _log_rows(folder, axis, k * per_cycle, (k + 1) * per_cycle)
        replicas = sorted({r[2] for r in rows})
        ledger.record(f"{prefix}cycle{k}", {"replicas": [
            analyse_cycle(np.array([r[3] for r in rows if r[2] == b]), np.array([r[4] for r in rows if r[2] == b]),
                          e_max) for b in replicas]})
    if sim is not None:
        ledger.record(f"{prefix}wall", {"wall_s": sim.wall_s, "steps": sim.steps_done,
                                       "atoms": int(sim.state.num_atoms.sum())})
    temps = [float(t) for t in md.temperatures for _ in range(md.copies)]
    return {"name": name, "temperature_K": temperature if temperature is not None else (
        temps[0] if len(set(temps)) == 1 else None), "replica_temperatures_K": temps, "period_fs": period,
        "e_max": e_max, "per_cycle": per_cycle, "folder": folder, "prefix": prefix}


def _summarise(st, ledger: Ledger, unit: dict) -> dict:
    kept = [c for k in range(st.discard_cycles, st.cycles) for c in ledger.get(f"{unit['prefix']}cycle{k}")["replicas"]]
    pr, pr_err = _mean_err([(c["P_r_plus"] - c["P_r_minus"]) / 2 for c in kept])
    ec, ec_err = _mean_err([(c["E_c_plus"] - c["E_c_minus"]) / 2 for c in kept])
    branches = "both"
    if ec is None:  # e.g. one sine cycle from a poled start: it switches down once and back up only next cycle
        for key, which in (("E_c_minus", "down-switch only"), ("E_c_plus", "up-switch only")):
            ec, ec_err = _mean_err([abs(c[key]) for c in kept])
            if ec is not None:
                branches = which
                break
        else:
            branches = "none"
    closes = {}
    for tip in ("top", "bottom"):
        mean, err = _mean_err([c[f"P_{tip}_rising"] - c[f"P_{tip}_falling"] for c in kept])
        closed = None if mean is None or err is None else bool(abs(mean) <= 2 * err)  # one sample: undecided
        closes[tip] = {"difference_uC_cm2": mean, "error_uC_cm2": err, "closed": closed}
    verdicts = [v["closed"] for v in closes.values()]
    scale = lambda x, f: None if x is None else x * f  # noqa: E731
    wall = ledger.get(f"{unit['prefix']}wall") or {}
    ns_per_day = None
    if wall.get("wall_s"):
        ns_per_day = wall["steps"] * _dt(unit) * 1e-6 / wall["wall_s"] * 86400.0
    return {"name": unit["name"] or "loop", "temperature_K": unit["temperature_K"], "period_fs": unit["period_fs"],
            "E_max_V_per_A": unit["e_max"], "E_max_kV_per_cm": unit["e_max"] * V_PER_A_TO_KV_PER_CM,
            "E_max_MV_per_cm": unit["e_max"] * V_PER_A_TO_MV_PER_CM,
            "P_r_uC_cm2": pr, "P_r_err_uC_cm2": pr_err, "E_c_V_per_A": ec, "E_c_err_V_per_A": ec_err,
            "E_c_kV_per_cm": scale(ec, V_PER_A_TO_KV_PER_CM), "E_c_err_kV_per_cm": scale(ec_err, V_PER_A_TO_KV_PER_CM),
            "E_c_MV_per_cm": scale(ec, V_PER_A_TO_MV_PER_CM), "E_c_err_MV_per_cm": scale(ec_err, V_PER_A_TO_MV_PER_CM),
            "E_c_branches": branches,
            "cycles_used": st.cycles - st.discard_cycles, "samples_used": len(kept), "closes": closes,
            "loop_closes": False if False in verdicts else (None if None in verdicts else True),
            "wall_s": wall.get("wall_s"), "atoms": wall.get("atoms"), "ns_per_day": ns_per_day}


def _dt(unit: dict) -> float:
    """dt (fs) of a unit's loop."""
    return unit["period_fs"] / unit["per_cycle"]


def _report(config: StudyConfig, ledger: Ledger, units: list) -> dict:
    st, out, axis = config.hysteresis, config.out, AXES[config.hysteresis.axis]
    loop_rows, cycle_rows = [], []
    for unit in units:
        temps = unit["replica_temperatures_K"]
        for s, t, b, e, p in _log_rows(unit["folder"], axis, 0, st.cycles * unit["per_cycle"]):
            loop_rows.append([temps[b], unit["period_fs"], (s - 1) // unit["per_cycle"], s, t, b, e,
                              e * V_PER_A_TO_KV_PER_CM, e * V_PER_A_TO_MV_PER_CM, p])
        for k in range(st.cycles):
            for b, c in enumerate(ledger.get(f"{unit['prefix']}cycle{k}")["replicas"]):
                cycle_rows.append([temps[b], unit["period_fs"], k, b, *[c[key] for key in (
                    "P_r_plus", "P_r_minus", "E_c_plus", "E_c_minus", "switched")]])
    write_csv(os.path.join(out, "hysteresis.csv"), ["T_K", "period_fs", "cycle", "step", "time_fs", "replica",
                                                    "E_V_per_A", "E_kV_per_cm", "E_MV_per_cm", "P_uC_cm2"], loop_rows)
    write_csv(os.path.join(out, "hysteresis_cycles.csv"),
              ["T_K", "period_fs", "cycle", "replica", "P_r_plus_uC_cm2", "P_r_minus_uC_cm2", "E_c_plus_V_per_A",
               "E_c_minus_V_per_A", "switched"], cycle_rows)
    summaries = [_summarise(st, ledger, unit) for unit in units]
    keys = ["temperature_K", "period_fs", "E_max_MV_per_cm", "P_r_uC_cm2", "P_r_err_uC_cm2", "E_c_MV_per_cm",
            "E_c_err_MV_per_cm", "samples_used", "loop_closes", "wall_s", "ns_per_day"]
    write_csv(os.path.join(out, "hysteresis_summary.csv"), ["T_K", "period_fs", "E_max_MV_per_cm", "P_r_uC_cm2",
                                                            "P_r_err_uC_cm2", "E_c_MV_per_cm", "E_c_err_MV_per_cm",
                                                            "samples", "loop_closes", "wall_s", "ns_per_day"],
              [["" if s[k] is None else s[k] for k in keys] for s in summaries])
    result = dict(summaries[0]) if len(summaries) == 1 else {}
    result.update({"units": summaries, "csv": os.path.join(out, "hysteresis.csv"),
                   "summary_csv": os.path.join(out, "hysteresis_summary.csv"),
                   "png": os.path.join(out, "hysteresis.png"),
                   "png_coercive_T": os.path.join(out, "coercive_field_T.png"),
                   "png_coercive_period": os.path.join(out, "coercive_field_period.png")})
    save_figure(plot(result["csv"], result, st.discard_cycles), result["png"])
    save_figure(plot_coercive_temperature(summaries), result["png_coercive_T"])
    save_figure(plot_coercive_period(summaries), result["png_coercive_period"])
    ledger.record("results", result)
    return result


def with_error(mean, err, unit: str, digits: int = 2) -> str:
    """'52.15 ± 0.20 μC/cm²', '52.15 μC/cm² (no error bar: one sample)' or 'none (no crossing)'."""
    if mean is None:
        return "none (no crossing)"
    if err is None:
        return f"{mean:.{digits}f} {unit} (no error bar: one sample)"
    return f"{mean:.{digits}f} ± {err:.{digits}f} {unit}"


def plot(csv_path: str, result: dict, discard_cycles: int = 0):
    """P(E) per unit, cycle and replica (discarded cycles faded), E in MV/cm below and V/Å above; P_r and E_c of a
    single unit in the title."""
    columns = read_csv(csv_path)
    fig, axes = figure()
    ax = axes[0][0]
    cycle, replica = np.array(columns["cycle"]), np.array(columns["replica"])
    temp, period = np.array(columns["T_K"], dtype=float), np.array(columns["period_fs"], dtype=float)
    e, p = np.array(columns["E_MV_per_cm"]), np.array(columns["P_uC_cm2"])
    units = sorted({(float(t), float(q)) for t, q in zip(temp, period)})
    for u, (t, q) in enumerate(units):
        in_unit = (temp == t) & (period == q)
        for k in np.unique(cycle[in_unit]):
            for b in np.unique(replica[in_unit]):
                sel = in_unit & (cycle == k) & (replica == b)
                colour = f"C{int(k) % 10}" if len(units) == 1 else f"C{u % 10}"
                label = None
                if b == replica[in_unit].min() and (len(units) == 1 or k == discard_cycles):
                    label = (f"cycle {int(k)}" + (" (discarded)" if k < discard_cycles else "") if len(units) == 1
                             else f"{t:g} K, {q / 1000:g} ps")
                ax.plot(e[sel], p[sel], lw=1, color=colour, alpha=0.35 if k < discard_cycles else 1.0, label=label)
    ax.set_xlabel("E (MV/cm)")
    ax.set_ylabel("ΔP (μC/cm²)")
    top = ax.secondary_xaxis("top", functions=(lambda x: x / V_PER_A_TO_MV_PER_CM, lambda x: x * V_PER_A_TO_MV_PER_CM))
    top.set_xlabel("E (V/Å)")
    if "P_r_uC_cm2" in result:
        closes = {True: "loop closes", False: "loop does not close", None: "closure undecided"}[result["loop_closes"]]
        branch = "" if result.get("E_c_branches", "both") in ("both", "none") else f" ({result['E_c_branches']})"
        ax.set_title(f"P_r = {with_error(result['P_r_uC_cm2'], result['P_r_err_uC_cm2'], 'μC/cm²')}, "
                     f"E_c = {with_error(result['E_c_MV_per_cm'], result['E_c_err_MV_per_cm'], 'MV/cm')}{branch}; "
                     f"{closes}", fontsize=8)
    ax.axhline(0, color="0.7", lw=0.5)
    ax.axvline(0, color="0.7", lw=0.5)
    ax.legend(fontsize=7)
    return fig


def _errorbar(ax, x, summaries, **kw):
    y = [s["E_c_MV_per_cm"] for s in summaries]
    err = [s["E_c_err_MV_per_cm"] or 0.0 for s in summaries]
    keep = [k for k, v in enumerate(y) if v is not None]
    ax.errorbar([x[k] for k in keep], [y[k] for k in keep], yerr=[err[k] for k in keep], capsize=3, **kw)


def plot_coercive_temperature(summaries: list):
    """E_c(T) (MV/cm) per period, beside allegro-pol's 1080-atom points (a different cell, period and count)."""
    fig, axes = figure()
    ax = axes[0][0]
    periods = sorted({s["period_fs"] for s in summaries})
    for k, q in enumerate(periods):
        rows = sorted((s for s in summaries if s["period_fs"] == q and s["temperature_K"] is not None),
                      key=lambda s: s["temperature_K"])
        _errorbar(ax, [s["temperature_K"] for s in rows], rows, marker="o", color=f"C{k}", lw=1,
                  label=f"ferronn, period {q / 1000:g} ps")
    t, ec, err = zip(*ALLEGRO_POL_EC)
    ax.errorbar(t, ec, yerr=err, marker="s", color="k", ls="none", capsize=3,
                label="allegro-pol, 1080 atoms, 20 runs/T (scripts/8.CoerciveField)")
    ax.set_xlabel("T (K)")
    ax.set_ylabel("E_c (MV/cm)")
    ax.legend(fontsize=7)
    return fig


def plot_coercive_period(summaries: list):
    """E_c(period) (MV/cm) per temperature, period on a log axis (ps)."""
    fig, axes = figure()
    ax = axes[0][0]
    temps = sorted({s["temperature_K"] for s in summaries if s["temperature_K"] is not None})
    for k, t in enumerate(temps or [None]):
        rows = sorted((s for s in summaries if s["temperature_K"] == t), key=lambda s: s["period_fs"])
        _errorbar(ax, [s["period_fs"] / 1000 for s in rows], rows, marker="o", color=f"C{k}", lw=1,
                  label=f"{t:g} K" if t is not None else "replicas' temperatures")
    ax.set_xscale("log")
    ax.set_xlabel("period (ps)")
    ax.set_ylabel("E_c (MV/cm)")
    ax.legend(fontsize=7)
    return fig
