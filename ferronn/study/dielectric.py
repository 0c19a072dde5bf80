"""ε_ab(T): at each temperature a batch of replicas (zero field for the fluctuation formula, ±E along x, y, z for
the finite-field estimator, ../md/observables.py), ε with block-averaging error bars, and optionally a
Curie–Weiss fit ε = C/(T − T0). Outputs: dielectric.csv, dielectric.png, study.json (+ curie_weiss in it)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from ..md.engine import load_inputs
from .config import StudyConfig
from .outputs import Ledger, figure, read_csv, run_unit, save_figure, write_csv

COMPONENTS = ["xx", "yy", "zz", "xy", "xz", "yx", "yz", "zx", "zy"]
_INDEX = {c: ("xyz".index(c[0]), "xyz".index(c[1])) for c in COMPONENTS}
ESTIMATORS = {"fluct": "epsilon_fluctuation", "field": "epsilon_finite_field"}


def run(config: StudyConfig) -> dict:
    study, out = config.dielectric, config.out
    ledger = Ledger(out, "dielectric", config.md)
    models_and_atoms = load_inputs(config.md)
    for t in study.temperatures:
        key = f"{t:g}"
        if ledger.get(key) is not None:
            continue
        md = dataclasses.replace(config.md, temperatures=[float(t)])
        sim = run_unit(md, models_and_atoms[:2], models_and_atoms[2], os.path.join(out, f"T{key}K"))
        summary = sim.summary()
        ledger.record(key, {"temperature_K": float(t), **{name: summary.get(field) for name, field in
                                                          ESTIMATORS.items()}, "wall_s": summary["wall_s"]})
    rows = table(ledger, study.temperatures)
    header = ["T_K"] + [f"eps_{e}_{c}{err}" for e in ESTIMATORS for c in COMPONENTS for err in ("", "_err")]
    header += ["diag_agree_2sigma"]
    write_csv(os.path.join(out, "dielectric.csv"), header, rows)
    result = {"csv": os.path.join(out, "dielectric.csv"), "png": os.path.join(out, "dielectric.png")}
    if study.curie_weiss:
        result["curie_weiss"] = curie_weiss(read_csv(result["csv"]), study.curie_weiss_component,
                                            study.curie_weiss_min_T)
    save_figure(plot(result["csv"], result.get("curie_weiss")), result["png"])
    ledger.record("results", result)
    return result


def table(ledger: Ledger, temperatures) -> list:
    rows = []
    for t in sorted(float(x) for x in temperatures):
        unit = ledger.get(f"{t:g}")
        row, agree = [t], []
        for name in ESTIMATORS:
            value = unit.get(name)
            mean = np.array(value["mean"]) if value else np.full((3, 3), np.nan)
            err = np.array(value["error"]) if value else np.full((3, 3), np.nan)
            for c in COMPONENTS:
                row += [float(mean[_INDEX[c]]), float(err[_INDEX[c]])]
        for i in range(3):  # both estimators' diagonal components within 2σ combined
            a, b = row[1 + 2 * i], row[1 + 18 + 2 * i]
            sa, sb = row[2 + 2 * i], row[2 + 18 + 2 * i]
            if np.isfinite(a) and np.isfinite(b):
                agree.append(abs(a - b) <= 2 * np.hypot(sa, sb))
        rows.append(row + ["" if not agree else str(all(agree)).lower()])
    return rows


def _best(columns, component):
    """Inverse-variance mean of the two estimators of one component (either alone where the other is missing)."""
    if component == "trace":
        parts = [_best(columns, c) for c in ("xx", "yy", "zz")]
        return sum(p[0] for p in parts) / 3, np.sqrt(sum(p[1] ** 2 for p in parts)) / 3
    values = np.array([columns[f"eps_{e}_{component}"] for e in ESTIMATORS], dtype=float)
    errors = np.array([columns[f"eps_{e}_{component}_err"] for e in ESTIMATORS], dtype=float)
    weights = np.where(np.isfinite(values) & (errors > 0), 1.0 / np.where(errors > 0, errors, 1.0) ** 2, 0.0)
    total = weights.sum(0)
    mean = np.where(total > 0, (weights * np.nan_to_num(values)).sum(0) / np.where(total > 0, total, 1.0), np.nan)
    return mean, np.where(total > 0, 1.0 / np.sqrt(np.where(total > 0, total, 1.0)), np.nan)


def curie_weiss(columns: dict, component: str = "zz", min_t: float = 0.0) -> dict:
    """Weighted linear fit of 1/ε = (T − T0)/C over T >= min_t: C (K) and T0 (K) with standard errors."""
    t = np.array(columns["T_K"], dtype=float)
    eps, err = _best(columns, component)
    use = (t >= min_t) & np.isfinite(eps) & (eps > 0) & np.isfinite(err) & (err > 0)
    if use.sum() < 3:
        return {"component": component, "error": f"needs >= 3 temperatures >= {min_t} K with ε > 0, has {use.sum()}"}
    y, sy = 1.0 / eps[use], err[use] / eps[use] ** 2
    design = np.stack([t[use], np.ones(use.sum())], axis=1) / sy[:, None]
    coef, *_ = np.linalg.lstsq(design, y / sy, rcond=None)
    cov = np.linalg.inv(design.T @ design)
    slope, intercept = coef
    c, t0 = 1.0 / slope, -intercept / slope
    jac = np.array([[-1.0 / slope ** 2, 0.0], [intercept / slope ** 2, -1.0 / slope]])  # d(C, T0)/d(slope, b)
    cov_ct = jac @ cov @ jac.T
    return {"component": component, "C_K": float(c), "C_K_err": float(np.sqrt(cov_ct[0, 0])),
            "T0_K": float(t0), "T0_K_err": float(np.sqrt(cov_ct[1, 1])), "min_T_K": float(min_t),
            "temperatures_used": int(use.sum())}


def plot(csv_path: str, fit=None):
    """ε_aa(T) of both estimators with error bars (and off-diagonal components that are nonzero beyond 2σ)."""
    columns = read_csv(csv_path)
    fig, axes = figure()
    ax = axes[0][0]
    t = np.array(columns["T_K"])
    markers = {"fluct": ("o", "fluctuation"), "field": ("s", "±E finite field")}
    shown = list(COMPONENTS[:3]) + [c for c in COMPONENTS[3:] if any(
        abs(columns[f"eps_{e}_{c}"][k]) > 2 * columns[f"eps_{e}_{c}_err"][k]
        for e in ESTIMATORS for k in range(len(t)) if np.isfinite(columns[f"eps_{e}_{c}"][k]))]
    for i, c in enumerate(shown):
        for e, (marker, label) in markers.items():
            y, yerr = np.array(columns[f"eps_{e}_{c}"]), np.array(columns[f"eps_{e}_{c}_err"])
            if np.isfinite(y).any():
                ax.errorbar(t, y, yerr=yerr, marker=marker, color=f"C{i}", capsize=3, lw=1,
                            ls="-" if e == "fluct" else "--", label=f"ε_{c} {label}")
    if fit and "C_K" in fit:
        grid = np.linspace(max(fit["T0_K"] + 1.0, t.min()), t.max(), 200)
        ax.plot(grid, fit["C_K"] / (grid - fit["T0_K"]), "k:",
                label=f"Curie–Weiss ε_{fit['component']}: C = {fit['C_K']:.3g} K, T0 = {fit['T0_K']:.0f} K")
    ax.set_xlabel("T (K)")
    ax.set_ylabel("ε (relative permittivity)")
    ax.legend(fontsize=7)
    ax.set_title("Dielectric tensor vs temperature")
    return fig
