"""χ(ω) from the dipole autocorrelation, classical (docs/conventions.md), e^{−iωt} time dependence:

    χ_ab(ω) = [C_ab(0) + iω ∫₀^∞ C_ab(t) e^{iωt} dt] / (ε0 Ω k_B T),   C_ab(t) = ⟨δM_a(0) δM_b(t)⟩,

C from M(t) sampled every ``sample_every`` steps of one MD run (use NVE or a weak thermostat: friction damps
the peaks), averaged over time origins and replicas, and Hann-windowed over ``max_lag_fs``. χ(0) is the static
fluctuation ε − ε∞. Outputs: spectrum.csv (cm⁻¹, THz, Re/Im χ_aa), spectrum.png, study.json.
"""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np

from ..errors import ConfigError
from ..md.engine import load_inputs
from ..units import EPSILON0_E_PER_V_A, KB_EV_PER_K, RAD_PER_FS_PER_WAVENUMBER, WAVENUMBER_PER_THZ
from .config import StudyConfig
from .outputs import Ledger, figure, read_csv, run_unit, save_figure, write_csv


def dipole_series(folder: str, first_step: int):
    """Times (fs), M (B, n, 3) in e·Å and volumes (B,) Å³ of the MD log rows after ``first_step``."""
    rows = {}
    with open(os.path.join(folder, "log.csv"), newline="") as handle:
        for row in csv.DictReader(handle):
            if int(row["step"]) > first_step:
                rows.setdefault(int(row["replica"]), []).append(
                    (float(row["time_fs"]), float(row["Mx"]), float(row["My"]), float(row["Mz"]), float(row["volume_A3"])))
    data = np.array([rows[b] for b in sorted(rows)])  # (B, n, 5)
    return data[0, :, 0], data[:, :, 1:4], data[:, :, 4].mean(axis=1)


def autocorrelation(m: np.ndarray, max_lag: int) -> np.ndarray:
    """C_ab(k) = ⟨δM_a(t) δM_b(t + k)⟩ (k = 0..max_lag, (k, 3, 3)) over time origins (FFT, unbiased) and replicas."""
    b, n, _ = m.shape
    dm = m - m.mean(axis=1, keepdims=True)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(dm, n=size, axis=1)
    corr = np.fft.irfft(np.einsum("bka,bkc->bkac", np.conj(f), f), n=size, axis=1)[:, : max_lag + 1]
    return corr.mean(axis=0) / (n - np.arange(max_lag + 1))[:, None, None]


def susceptibility(c: np.ndarray, dt_fs: float, wavenumbers: np.ndarray, volume: float, temperature: float):
    """χ_ab(ω) (n_ω, 3, 3) complex from C_ab(t) (n_lag, 3, 3), Hann-windowed, trapezoid in t."""
    lags = np.arange(len(c)) * dt_fs
    window = 0.5 * (1 + np.cos(np.pi * lags / lags[-1])) if len(c) > 1 else np.ones(1)
    weights = np.full(len(c), dt_fs)
    weights[[0, -1]] *= 0.5
    omega = wavenumbers * RAD_PER_FS_PER_WAVENUMBER
    phase = np.exp(1j * np.outer(omega, lags)) * (window * weights)[None, :]
    integral = np.einsum("wt,tab->wab", phase, c)
    chi = c[0][None] + 1j * omega[:, None, None] * integral
    return chi / (EPSILON0_E_PER_V_A * volume * KB_EV_PER_K * temperature)


def run(config: StudyConfig) -> dict:
    st, md, out = config.spectrum, config.md, config.out
    if len(md.temperatures) != 1:
        raise ConfigError(f"spectrum: key 'md.temperatures' must hold one temperature, got {md.temperatures}")
    if any(any(f) for f in md.fields) or md.dielectric.finite_field:
        raise ConfigError("spectrum: χ(ω) needs zero-field replicas only (md.fields all zero, "
                          "md.dielectric.finite_field false)")
    ledger = Ledger(out, "spectrum", md)
    md = dataclasses.replace(md, log_every=st.sample_every)
    folder = os.path.join(out, "md")
    if ledger.get("md") is None:
        energy, born, atoms = load_inputs(md)
        run_unit(md, (energy, born), atoms, folder)
        ledger.record("md", {"steps": md.steps + md.equilibration_steps})
    times, m, volumes = dipole_series(folder, md.equilibration_steps)
    dt = float(times[1] - times[0])
    max_lag = min(int(round(st.max_lag_fs / dt)), len(times) // 2)
    if max_lag < 8:
        raise ConfigError(f"spectrum: {len(times)} dipole samples give {max_lag} lags; run longer (md.steps) or "
                          "sample more often (spectrum.sample_every)")
    c = autocorrelation(m, max_lag)
    # The window resolves Δω ≈ 2π/(max_lag·dt); the grid samples it 4× finer up to the requested wavenumber.
    step = 2 * np.pi / (max_lag * dt) / RAD_PER_FS_PER_WAVENUMBER / 4
    wavenumbers = np.arange(0.0, st.max_wavenumber + step, step)
    chi = susceptibility(c, dt, wavenumbers, float(volumes.mean()), float(md.temperatures[0]))
    rows = [[w, w / WAVENUMBER_PER_THZ, *[v for a in range(3) for v in (chi[k, a, a].real, chi[k, a, a].imag)]]
            for k, w in enumerate(wavenumbers)]
    header = ["wavenumber_cm", "frequency_THz"] + [f"chi_{a}{a}_{part}" for a in "xyz" for part in ("re", "im")]
    write_csv(os.path.join(out, "spectrum.csv"), header, rows)
    result = {"csv": os.path.join(out, "spectrum.csv"), "png": os.path.join(out, "spectrum.png"),
              "chi_static_diag": [float(chi[0, a, a].real) for a in range(3)], "lags": int(max_lag),
              "sample_dt_fs": dt, "samples": int(len(times)), "replicas": int(m.shape[0])}
    save_figure(plot(result["csv"]), result["png"])
    ledger.record("results", result)
    return result


def plot(csv_path: str):
    """Im χ_aa (absorption) above and Re χ_aa below against cm⁻¹, THz on the top axis."""
    columns = read_csv(csv_path)
    fig, axes = figure(2, 1)
    w = np.array(columns["wavenumber_cm"])
    for row, part, label in ((0, "im", "Im χ (absorption)"), (1, "re", "Re χ")):
        ax = axes[row][0]
        for i, a in enumerate("xyz"):
            ax.plot(w, columns[f"chi_{a}{a}_{part}"], color=f"C{i}", lw=1, label=f"χ_{a}{a}")
        ax.set_ylabel(label)
        ax.axhline(0, color="0.7", lw=0.5)
        top = ax.secondary_xaxis("top", functions=(lambda x: x / WAVENUMBER_PER_THZ, lambda x: x * WAVENUMBER_PER_THZ))
        top.set_xlabel("frequency (THz)")
    axes[1][0].set_xlabel("wavenumber (cm⁻¹)")
    axes[0][0].legend(fontsize=7)
    return fig
