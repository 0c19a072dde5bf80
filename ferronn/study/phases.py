"""Phases on heating or cooling: a temperature ramp (each temperature continues from the last frame of the one
before, NPT with a flexible cell recommended), the mean polarization vector and the pseudo-cubic lattice at each
temperature, a classification R / O / T / C and the transition temperatures where it changes.

The polarization of a perovskite ABO3 frame is absolute (not integrated in time): P = (1/Ω) Σ_κ Z*_κ u_κ with
u_κ the displacement of atom κ from its site in the ideal centrosymmetric perovskite of the same cell, Z* from the
Born model at that frame.
Classification: components with |P_i| >= max(threshold, (1 − tolerance)·max|P|) are the polar ones; none → C
(cubic), one → T (along 001), two → O (011), three → R (111). Outputs: phases.csv, phases.png, study.json.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from .. import keys as K
from ..errors import ConfigError
from ..md.engine import load_inputs
from ..units import E_PER_A2_TO_UC_PER_CM2
from .config import StudyConfig
from .outputs import Ledger, figure, read_csv, run_unit, save_figure, write_csv

PHASES = {0: "C", 1: "T", 2: "O", 3: "R"}


def classify(p: np.ndarray, threshold: float, tolerance: float) -> str:
    """R / O / T / C from a polarization vector (μC/cm²), see the module docstring."""
    mag = np.abs(np.asarray(p, dtype=float))
    if mag.max() < threshold:
        return "C"
    return PHASES[int((mag >= max(threshold, (1.0 - tolerance) * mag.max())).sum())]


def pseudo_cubic(cell: np.ndarray, counts) -> dict:
    """Pseudo-cubic a, b, c (Å) = lattice vector lengths / cells along them, and the angles α, β, γ (degrees)."""
    cell = np.asarray(cell, dtype=float)
    lengths = np.linalg.norm(cell, axis=1)
    angle = lambda i, j: float(np.degrees(np.arccos(cell[i] @ cell[j] / (lengths[i] * lengths[j]))))  # noqa: E731
    a, b, c = (lengths / np.asarray(counts, dtype=float)).tolist()
    return {"a": a, "b": b, "c": c, "alpha": angle(1, 2), "beta": angle(0, 2), "gamma": angle(0, 1)}


def site_displacements(atoms, counts, oxygen: int = 8) -> np.ndarray:
    """u_κ (N, 3) Å: each atom's displacement from its site of the ideal (centrosymmetric) perovskite ABO3 in the
    current cell, ``counts`` perovskite cells along each lattice vector. The A sublattice fixes the origin (a rigid
    shift of all sites changes nothing: Σ_κ Z*_κ = 0); B is the cation closest to oxygen."""
    z, cell = atoms.numbers, atoms.cell.array
    cations = sorted(set(z.tolist()) - {oxygen})
    if not (z == oxygen).any() or len(cations) != 2:
        raise ConfigError(f"phases: the polarization needs an ABO3 perovskite (two cations and O), got elements "
                          f"{sorted(set(z.tolist()))}")
    n = np.asarray(counts, dtype=float)
    f = atoms.get_scaled_positions(wrap=False) * n  # in perovskite cells
    o = f[z == oxygen]

    def nearest_o(c):
        d = o[None, :, :] - f[z == c][:, None, :]
        d = d - np.round(d / n) * n  # minimum image
        return np.linalg.norm((d / n) @ cell, axis=-1).min(axis=1).mean()

    b_site = min(cations, key=nearest_o)
    a_site = cations[0] if cations[1] == b_site else cations[1]
    frac_a = f[z == a_site]
    origin = np.median(frac_a - np.round(frac_a), axis=0)
    bases = {a_site: [np.zeros(3)], b_site: [np.full(3, 0.5)],
             oxygen: [np.array([0.5, 0.5, 0.0]), np.array([0.5, 0.0, 0.5]), np.array([0.0, 0.5, 0.5])]}
    u = np.zeros_like(f)
    for species, basis in bases.items():
        rows = z == species
        options = [f[rows] - (np.round(f[rows] - origin - b) + origin + b) for b in basis]
        lengths = np.stack([np.linalg.norm((d / n) @ cell, axis=-1) for d in options])
        best = np.argmin(lengths, axis=0)
        u[rows] = np.stack(options)[best, np.arange(rows.sum())]
    return (u / n) @ cell


def local_polarization(atoms, born: np.ndarray, counts) -> np.ndarray:
    """P (3,) in μC/cm² = Σ_κ Z*_κ u_κ / Ω, u from the ideal perovskite sites, Z*[a][b] = ∂M_a/∂u_b (e)."""
    u = site_displacements(atoms, counts)
    return np.einsum("nab,nb->a", born, u) / atoms.get_volume() * E_PER_A2_TO_UC_PER_CM2


def _born_charges(born_model, atoms) -> np.ndarray:
    from ..data.graph import SpeciesTable
    from ..data.verlet import atoms_batch

    import itertools

    tensor = next(itertools.chain(born_model.parameters(), born_model.buffers()))
    batch = atoms_batch([atoms], SpeciesTable(born_model.atomic_numbers), born_model.r_max, born_model.dtype,
                        tensor.device)
    with torch.no_grad():
        return born_model(batch)[K.BORN_CHARGES].double().cpu().numpy()


def run(config: StudyConfig, inputs=None) -> dict:
    """The ramp; ``inputs`` (energy model, Born model, structure) replace the recipe's md.energy/born/structure
    (analytic models from Python)."""
    import ase.io

    st, out = config.phases, config.out
    ledger = Ledger(out, "phases", config.md)
    energy, born, atoms = inputs or load_inputs(config.md)
    if born is None:
        raise ConfigError("phases: the polarization needs Born charges; set md.born to a born.ckpt")
    every = config.md.trajectory_every
    if not every or every > config.md.steps:
        raise ConfigError("phases: key 'md.trajectory_every' must be > 0 and <= md.steps (frames are averaged)")
    start = atoms
    for t in st.temperatures:
        key = f"{t:g}"
        folder = os.path.join(out, f"T{key}K")
        trajectory = os.path.join(folder, "trajectory_r0.extxyz")
        if ledger.get(key) is None:
            md = dataclasses.replace(config.md, temperatures=[float(t)])
            run_unit(md, (energy, born), start, folder)
            everything = ase.io.read(trajectory, ":")
            frames = [f for f in everything if int(f.info["step"]) > md.equilibration_steps]
            pols = np.array([local_polarization(f, _born_charges(born, f), st.pseudo_cubic) for f in frames])
            lattice = [pseudo_cubic(f.cell.array, st.pseudo_cubic) for f in frames]
            err = pols.std(axis=0, ddof=1) / np.sqrt(len(pols)) if len(pols) > 1 else np.full(3, np.nan)
            ledger.record(key, {"temperature_K": float(t), "P": pols.mean(axis=0).tolist(), "P_err": err.tolist(),
                                "lattice": {k: float(np.mean([x[k] for x in lattice])) for k in lattice[0]},
                                "frames": len(frames)})
            start = everything[-1]
        else:  # finished before a kill: the ramp goes on from its last frame
            start = ase.io.read(trajectory, -1)
    return _report(config, ledger)


def _report(config: StudyConfig, ledger: Ledger) -> dict:
    st, out = config.phases, config.out
    rows, phases = [], []
    for t in st.temperatures:
        unit = ledger.get(f"{t:g}")
        phase = classify(np.array(unit["P"]), st.polar_threshold, st.equal_tolerance)
        phases.append(phase)
        lat = unit["lattice"]
        rows.append([t, *unit["P"], *unit["P_err"], float(np.linalg.norm(unit["P"])),
                     *[lat[k] for k in ("a", "b", "c", "alpha", "beta", "gamma")], phase])
    write_csv(os.path.join(out, "phases.csv"), ["T_K", "Px_uC_cm2", "Py_uC_cm2", "Pz_uC_cm2", "Px_err", "Py_err",
                                                "Pz_err", "P_abs_uC_cm2", "a_A", "b_A", "c_A", "alpha_deg",
                                                "beta_deg", "gamma_deg", "phase"], rows)
    transitions = [{"from": phases[k], "to": phases[k + 1],
                    "T_K": 0.5 * (st.temperatures[k] + st.temperatures[k + 1])}
                   for k in range(len(phases) - 1) if phases[k] != phases[k + 1]]
    result = {"phases": dict(zip([f"{t:g}" for t in st.temperatures], phases)), "transitions": transitions,
              "csv": os.path.join(out, "phases.csv"), "png": os.path.join(out, "phases.png")}
    save_figure(plot(result["csv"], transitions), result["png"])
    ledger.record("results", result)
    return result


def plot(csv_path: str, transitions=()):
    """P components (top) and pseudo-cubic lattice parameters (bottom) against T, phases and transitions marked."""
    columns = read_csv(csv_path)
    fig, axes = figure(2, 1)
    t = np.array(columns["T_K"])
    for i, a in enumerate("xyz"):
        axes[0][0].errorbar(t, columns[f"P{a}_uC_cm2"], yerr=columns[f"P{a}_err"], marker="o", color=f"C{i}",
                            capsize=3, lw=1, label=f"P_{a}")
    for i, a in enumerate("abc"):
        axes[1][0].plot(t, columns[f"{a}_A"], marker="s", color=f"C{i}", lw=1, label=a)
    for x, phase in zip(t, columns["phase"]):
        axes[0][0].annotate(phase, (x, 0), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    for tr in transitions:
        for row in axes:
            row[0].axvline(tr["T_K"], color="0.5", ls="--", lw=0.8)
    axes[0][0].set_ylabel("P (μC/cm²)")
    axes[1][0].set_ylabel("pseudo-cubic lattice (Å)")
    axes[1][0].set_xlabel("T (K)")
    axes[0][0].legend(fontsize=7)
    axes[1][0].legend(fontsize=7)
    return fig
