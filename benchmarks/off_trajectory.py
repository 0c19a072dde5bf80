"""Configurations of the 135-atom BaTiO3 cell that the DFT trajectory never visited: how far do model pairs agree?

    python benchmarks/off_trajectory.py [--pairs checkpoints/batio3-allegro-pol checkpoints/batio3-accurate]
                                        [--frames 47-58] [--shift 0.2]

No DFT labels exist for such frames, so two measurements stand in for them:
1. Exact symmetry images, whose labels are known: the whole cell mirrored about a Ba plane (z → 2z_Ba − z)
   reverses the polarization; its DFT forces are the mirrored forces and its Z* is M Z* M with M = diag(1, 1, −1).
   Each pair is scored there against those transformed labels (an O(3)-equivariant model must repeat its error on
   the original frame).
2. Unlabelled configurations built from the cold polar cell (every site displaced by its class's mean over the 59
   frames: thermal noise averaged out, itself a T = 0 structure no frame is), scored by the disagreement of the
   pairs (RMS force difference, Z* mean |difference|) divided by their disagreement on the held-out frames, where
   both errors are known: a ratio well above 1 says the models extrapolate there.
   - ``wall``: the z displacements (from ideal perovskite sites, origin on the Ba planes) of the atoms whose sites
     lie in x ∈ [0, 1.5) cells reversed: two 180° walls, 1.5 cells apart;
   - ``ti_chain``: the three Ti of one chain along z displaced by ``--shift`` Å along x;
   - ``reversed_half_ti``: only the Ti off-centring reversed in half the cell (O and Ba left), a high-energy state.
   - ``reversed_all``: the same reversal over the whole cell, which is the exact mirror image: its energy above the
     frame must vanish (a check of the construction itself).
   Also reported: each construction's energy above the cold cell (eV per cell) per pair, and the wall energy.
Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, "..", "shared", "data", "batio3-allegro-pol", "BaTiO3.xyz")
MIRROR = np.diag([1.0, 1.0, -1.0])
CELLS = 3  # the 3×3×3 supercell of the data


def site_displacements(atoms):
    """(ideal sites, displacements) in units of the perovskite cell, origin moved onto the Ba planes: Ba at
    (½, ½, 0), Ti at (0, 0, ½), O at (0, 0, 0), (0, ½, ½), (½, 0, ½) of each cell."""
    frac = atoms.get_scaled_positions(wrap=False) * CELLS
    sites = np.round(frac * 2.0) / 2.0
    u = frac - sites
    u -= u[atoms.symbols == "Ba"].mean(axis=0)  # a common translation is no displacement
    return sites, u


def rebuild(atoms, sites, u):
    out = atoms.copy()
    out.set_scaled_positions((sites + u) / CELLS)
    return out


def site_classes(sites):
    """Ba, Ti, apical O (on Ba planes), and the two equatorial O, told apart by their site fractions."""
    half = np.isclose(np.mod(sites, 1.0), 0.5)
    return half[:, 0] * 1 + half[:, 1] * 2 + half[:, 2] * 4  # 3: Ba, 4: Ti, 0: O_z, 6: O_x, 5: O_y


def cold_polar(frames):
    """The uniform polar structure: every site class displaced by its mean over all frames (thermal noise
    averaged out), on the first frame's sites; a T = 0 structure none of the hot frames is."""
    sites, _ = site_displacements(frames[0])
    classes = site_classes(sites)
    mean = {c: np.mean([site_displacements(f)[1][classes == c] for f in frames], axis=(0, 1)) for c in set(classes)}
    u = np.array([mean[c] for c in classes])
    u[:, :2] = 0.0  # the polarization is along z; the in-plane means are noise
    return rebuild(frames[0], sites, u)


def constructions(cold, shift):
    sites, u = site_displacements(cold)
    half = np.mod(sites[:, 0], CELLS) < 1.5
    wall = u.copy()
    wall[half, 2] *= -1.0
    ti = cold.symbols == "Ti"
    half_ti = u.copy()
    half_ti[half & ti, 2] *= -1.0
    every = u.copy()
    every[:, 2] *= -1.0  # over the whole cell this is the exact mirror: its energy must equal the cold one's
    chain = cold.copy()
    first = np.flatnonzero(ti)[0]
    same_chain = ti & np.all(np.isclose(np.mod(sites[:, :2] - sites[first, :2], CELLS), 0.0), axis=1)
    chain.positions[same_chain, 0] += shift
    return {"cold": cold, "wall": rebuild(cold, sites, wall), "ti_chain": chain,
            "reversed_half_ti": rebuild(cold, sites, half_ti), "reversed_all": rebuild(cold, sites, every)}


def mirrored(atoms):
    """The whole cell mirrored about its mean Ba plane, with its DFT labels transformed alike."""
    z_ba = atoms.positions[atoms.symbols == "Ba", 2].mean()
    out = atoms.copy()
    out.positions[:, 2] = 2.0 * z_ba - out.positions[:, 2]
    forces = atoms.calc.results["forces"] @ MIRROR
    born = np.einsum("ab,nbc,cd->nad", MIRROR, atoms.arrays["born_charge"].reshape(-1, 3, 3), MIRROR)
    return out, forces, born


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", nargs="+", default=[os.path.join(ROOT, "checkpoints", "batio3-allegro-pol"),
                                                  os.path.join(ROOT, "checkpoints", "batio3-accurate")])
    p.add_argument("--frames", default="47-58", help="held-out frames to build from")
    p.add_argument("--shift", type=float, default=0.2, help="Ti chain displacement (Å)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")

    import ase.io

    from ferronn import FerroCalculator
    from ferronn.data.datamodule import parse_indices

    frames = [ase.io.read(DATA, index=i) for i in parse_indices(args.frames)]
    built = constructions(cold_polar(ase.io.read(DATA, index=":")), args.shift)
    names = [os.path.basename(os.path.normpath(path)) for path in args.pairs]
    calcs = {name: FerroCalculator(os.path.join(path, "energy.ckpt"), born=os.path.join(path, "born.ckpt"),
                                   device="cpu", dtype="float64") for name, path in zip(names, args.pairs)}

    def predict(name, atoms):
        a = atoms.copy()
        a.calc = calcs[name]
        return a.get_potential_energy(), a.get_forces(), a.calc.get_born_charges(a)

    held_out = {name: [predict(name, a) for a in frames] for name in names}
    built_pred = {name: {kind: predict(name, atoms) for kind, atoms in built.items()} for name in names}
    result = {"benchmark": "off_trajectory", "pairs": [os.path.relpath(p, ROOT) for p in args.pairs],
              "frames": args.frames, "shift_A": args.shift, "mirror_image": {}, "energy_above_cold_eV": {}}
    wall_area = float(np.linalg.norm(np.cross(built["cold"].cell[1], built["cold"].cell[2])))
    for name in names:
        f_err, z_err, f_mirror, z_mirror = [], [], [], []
        for atoms, (_, f0, z0) in zip(frames, held_out[name]):
            f_err.append(1e3 * np.sqrt(((f0 - atoms.calc.results["forces"]) ** 2).mean()))
            z_err.append(np.abs(z0 - atoms.arrays["born_charge"].reshape(-1, 3, 3)).mean())
            image, f_ref, z_ref = mirrored(atoms)
            _, f, z = predict(name, image)
            f_mirror.append(1e3 * np.sqrt(((f - f_ref) ** 2).mean()))
            z_mirror.append(np.abs(z - z_ref).mean())
        result["mirror_image"][name] = {"forces_rmse_meV_A": float(np.mean(f_mirror)), "born_mae_e": float(np.mean(z_mirror)),
                                        "forces_rmse_frames": float(np.mean(f_err)), "born_mae_frames": float(np.mean(z_err))}
        e_cold = built_pred[name]["cold"][0]
        result["energy_above_cold_eV"][name] = {kind: float(p[0] - e_cold) for kind, p in built_pred[name].items()
                                                if kind != "cold"}
        # two walls of area b·c in the periodic cell; 1 eV/Å² = 16.02 J/m²
        result.setdefault("wall_energy_mJ_m2", {})[name] = 1e3 * 16.0218 * result["energy_above_cold_eV"][name]["wall"] / (2 * wall_area)
    if len(names) >= 2:
        a, b = names[0], names[1]

        def diff(pa, pb):
            return 1e3 * float(np.sqrt(((pa[1] - pb[1]) ** 2).mean())), float(np.abs(pa[2] - pb[2]).mean())

        base = np.mean([diff(pa, pb) for pa, pb in zip(held_out[a], held_out[b])], axis=0)
        spread = {"held_out_frames": {"forces_rms_diff_meV_A": float(base[0]), "born_mean_abs_diff_e": float(base[1])}}
        for kind in built:
            df, dz = diff(built_pred[a][kind], built_pred[b][kind])
            spread[kind] = {"forces_rms_diff_meV_A": df, "born_mean_abs_diff_e": dz,
                            "forces_ratio_to_held_out": df / base[0], "born_ratio_to_held_out": dz / base[1]}
        result["disagreement"] = spread
        print(f"disagreement of {a} and {b}: rms |ΔF| (meV/Å), mean |ΔZ*| (e), and their ratio to the held-out frames'")
        for kind, row in spread.items():
            ratios = (f"   ({row['forces_ratio_to_held_out']:.2f}x, {row['born_ratio_to_held_out']:.2f}x)"
                      if "forces_ratio_to_held_out" in row else "")
            print(f"{kind:>18}: {row['forces_rms_diff_meV_A']:8.1f} {row['born_mean_abs_diff_e']:8.4f}{ratios}")
    for name in names:
        errs = result["mirror_image"][name]
        print(f"{name}: mirror images force RMSE {errs['forces_rmse_meV_A']:.2f} meV/Å (the frames "
              f"{errs['forces_rmse_frames']:.2f}), Z* MAE {errs['born_mae_e']:.5f} e (the frames {errs['born_mae_frames']:.5f})")
        print(f"{name}: energy above the cold polar cell (eV/cell): " + ", ".join(
            f"{k} {v:.3f}" for k, v in result["energy_above_cold_eV"][name].items())
            + f"; wall energy {result['wall_energy_mJ_m2'][name]:.1f} mJ/m²")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
