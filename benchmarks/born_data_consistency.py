"""How noisy are a dataset's Born charges? Check them against its own Berry-phase dipoles.

    python benchmarks/born_data_consistency.py [--data ../shared/data/batio3-allegro-pol/BaTiO3.xyz] [--max-du 0.25]
        [--index 0:47] [--checkpoint run/born.ckpt ...]

For every pair of frames whose atoms all lie within ``--max-du`` Å of each other (minimum image), the dipole change
ΔM_a = Σ_κ ½(Z*_κ(i) + Z*_κ(j))[a][b] Δu_κb (trapezoid rule, error O(Δu³)) is compared with the DFT dipoles'
difference. Independent errors σ_Z per Z* component would scatter the prediction by σ_Z·|Δu| (|Δu| the norm of
all 3N displacements), so |residual|/|Δu| bounds σ_Z from above (it also holds the dipoles' own error and the
trapezoid's curvature error, which grows with Δu); the residual is folded modulo the polarization quantum e·R. A
bound well below a model's Z* error says the model, not the data, limits the fit. With ``--checkpoint``, each Born
model's Z* replaces the data's in the same trapezoid: its mean |r|²/|Δu|² (e², the Born-path loss of
ferronn/train/born_path.py) is printed as a ratio to the data's own, measured on the same pairs. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "batio3-allegro-pol",
                                                       "BaTiO3.xyz"))
    parser.add_argument("--born-key", default="born_charge")
    parser.add_argument("--dipole-key", default="polarization", help="cell dipole (e·Å) in calc results or info")
    parser.add_argument("--max-du", type=float, default=0.25, help="Å, largest displacement within a pair")
    parser.add_argument("--index", default=":", help="frames to pair, ASE syntax (e.g. '47:' for held-out ones)")
    parser.add_argument("--checkpoint", nargs="*", default=[], help="Born models whose Z* to check the same way")
    args = parser.parse_args()

    from ase.io import read
    from ase.io.formats import string2index

    frames = read(args.data, ":")
    selected = set(range(len(frames))[string2index(args.index)]) if args.index != ":" else set(range(len(frames)))
    dipoles = [np.asarray(a.calc.results[args.dipole_key] if a.calc is not None and args.dipole_key in
                          a.calc.results else a.info[args.dipole_key], dtype=float) for a in frames]
    charges = [a.arrays[args.born_key].reshape(-1, 3, 3) for a in frames]
    pairs = []
    for i in range(len(frames)):
        for j in range(i + 1, len(frames)):
            if i not in selected or j not in selected:
                continue
            if len(frames[j]) != len(frames[i]) or (frames[j].numbers != frames[i].numbers).any():
                continue
            du = frames[j].positions - frames[i].positions
            du -= np.round(du @ np.linalg.inv(frames[i].cell.array)) @ frames[i].cell.array
            if np.abs(du).max() > args.max_du:
                continue
            predicted = np.einsum("kab,kb->a", 0.5 * (charges[i] + charges[j]), du)
            residual = dipoles[j] - dipoles[i] - predicted
            # a Berry-phase dipole is defined modulo the quantum e·R (R a lattice vector): fold the residual
            cell = frames[i].cell.array
            residual -= np.round(residual @ np.linalg.inv(cell)) @ cell
            norm = float(np.linalg.norm(du))
            bound = float(np.abs(residual).max() / norm)
            pairs.append({"frames": [i, j], "max_du_A": float(np.abs(du).max()), "du_norm_A": norm,
                          "dM_eA": (dipoles[j] - dipoles[i]).tolist(), "residual_eA": residual.tolist(),
                          "sigma_z_bound_e": bound, "du": du, "cell": cell})
            print(f"frames {i}, {j}: max |Δu| {np.abs(du).max():.3f} Å, ΔM {np.round(dipoles[j] - dipoles[i], 4)} "
                  f"e·Å, trapezoid Σ Z*·Δu {np.round(predicted, 4)}, residual {np.abs(residual).max():.1e} e·Å "
                  f"→ σ_Z ≤ {bound:.4f} e")
    models = {}
    for path in args.checkpoint:
        predicted = model_born(path, frames, sorted({i for p in pairs for i in p["frames"]}))
        models[path] = {"path_loss_e2": path_loss(pairs, dipoles, predicted)}
    data_loss = path_loss(pairs, dipoles, dict(enumerate(charges))) if pairs else None
    if data_loss is not None:
        print(f"mean |r|^2/|du|^2 over {len(pairs)} pairs: data's own Z* {data_loss:.3e} e^2")
        for path, result in models.items():
            result["ratio_to_data"] = result["path_loss_e2"] / data_loss
            print(f"  {path}: {result['path_loss_e2']:.3e} e^2 ({result['ratio_to_data']:.2f}x the data's)")
    for p in pairs:
        del p["du"], p["cell"]
    bounds = [p["sigma_z_bound_e"] for p in pairs]
    if bounds:
        print(f"{len(pairs)} pairs: σ_Z ≤ {min(bounds):.4f} e (tightest), median bound {np.median(bounds):.4f} e")
    else:
        print(f"no pair of frames within {args.max_du} Å: nothing to compare (raise --max-du)")
    print(json.dumps({"benchmark": "born_data_consistency", "data": os.path.relpath(args.data, ROOT),
                      "max_du_A": args.max_du, "pairs": pairs,
                      "sigma_z_bound_min_e": min(bounds) if bounds else None,
                      "sigma_z_bound_median_e": float(np.median(bounds)) if bounds else None,
                      "index": args.index, "data_path_loss_e2": data_loss, "models": models}))


def model_born(path, frames, indices):
    """{frame index: Z* (N, 3, 3) in e} of the Born model at ``path`` (after its acoustic sum rule)."""
    import torch

    from ferronn.data.frames import NO_LABELS, frame_from_atoms
    from ferronn.data.graph import SpeciesTable, collate, frame_to_graph
    from ferronn.models.loading import load

    model = load(path, device="cpu", kind="born")
    species = SpeciesTable(model.atomic_numbers)
    out = {}
    with torch.no_grad():
        for i in indices:
            graph = frame_to_graph(frame_from_atoms(frames[i], NO_LABELS, index=i), species, model.r_max)
            out[i] = model(collate([graph], model.dtype))["born_charges"].double().numpy()
    return out


def path_loss(pairs, dipoles, charges) -> float:
    """Mean over pairs of |r|²/|Δu|² (e²), r the folded trapezoid residual with the given Z* per frame: the
    Born-path loss's own term (ferronn/train/born_path.py), so the figure is the one training sees."""
    import torch

    from ferronn.train.born_path import Pair, path_term

    terms = []
    for p in pairs:
        i, j = p["frames"]
        pair = Pair(i, j, *(torch.as_tensor(x, dtype=torch.float64) for x in (p["du"], dipoles[j] - dipoles[i],
                                                                               p["cell"])))
        born_i, born_j = (torch.as_tensor(charges[k], dtype=torch.float64) for k in (i, j))
        terms.append(float(path_term(born_i, born_j, pair)))
    return float(np.mean(terms))


if __name__ == "__main__":
    main()
