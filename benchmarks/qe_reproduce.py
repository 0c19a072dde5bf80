"""Reproduce a frame of ../shared/data/batio3-qe with ``ferronn.label`` at the dataset's own QE settings.

    python benchmarks/qe_reproduce.py [--frame 16] [--recipe recipes/qe_batio3.yaml]

Strips the frame's labels, runs pw.x and ph.x as ``python -m ferronn.label`` would (the recipe holds the settings
of the dataset's README), and compares: energy (goal ≤ 1 meV/cell), forces (≤ 2 meV/Å), raw DFPT Born charges
(≤ 0.01 e), plus stress and ε∞. Frame 16 (Ti displaced 0.05 Å along z, tetragonal) costs ~4 min on 2 cores:
pw.x ~20 s, ph.x ~3.5 min. Last line: JSON.
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frame", type=int, default=16)
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "batio3-qe", "BaTiO3_qe_pbe.xyz"))
    parser.add_argument("--recipe", default=os.path.join(ROOT, "recipes", "qe_batio3.yaml"))
    args = parser.parse_args()

    import ase.io

    from ferronn.label.config import load_label_config
    from ferronn.label.store import label_frames, read_labelled

    os.chdir(ROOT)  # the recipe's pseudo_dir is relative to the repository root
    reference = ase.io.read(args.data, args.frame)
    atoms = reference.copy()
    atoms.calc = None
    for key in [k for k in atoms.arrays if k not in ("numbers", "positions")]:
        del atoms.arrays[key]
    atoms.info = {"name": reference.info["name"]}
    config = load_label_config(args.recipe)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "labelled.xyz")
        start = time.perf_counter()
        summary = label_frames([atoms], out, config, sources=[args.frame])
        wall = time.perf_counter() - start
        if summary["failed"]:
            raise SystemExit(f"labelling failed: {summary['failed'][0]['reason']}")
        (ours,) = read_labelled(out)
    figures = {
        "frame": args.frame, "name": reference.info["name"],
        "energy_diff_meV_cell": 1e3 * abs(ours.get_potential_energy() - reference.get_potential_energy()),
        "forces_max_diff_meV_A": 1e3 * float(np.abs(ours.get_forces() - reference.get_forces()).max()),
        "stress_max_diff_meV_A3": 1e3 * float(np.abs(ours.get_stress() - reference.get_stress()).max()),
        "born_raw_max_diff_e": float(np.abs(ours.arrays["born_charge_raw"] - reference.arrays["born_charge_raw"]).max()),
        "born_max_diff_e": float(np.abs(ours.arrays["born_charge"] - reference.arrays["born_charge"]).max()),
        "epsilon_inf_max_diff": float(np.abs(np.asarray(ours.info["epsilon_inf"])
                                             - np.asarray(reference.info["epsilon_inf"])).max()),
        "pw_wall_s": ours.info["pw_wall_s"], "ph_wall_s": ours.info["ph_wall_s"], "wall_s": round(wall, 1),
        "reference_pw_wall_s": reference.info.get("pw_wall_s"), "reference_ph_wall_s": reference.info.get("ph_wall_s"),
    }
    figures["pass"] = bool(figures["energy_diff_meV_cell"] <= 1.0 and figures["forces_max_diff_meV_A"] <= 2.0
                           and figures["born_raw_max_diff_e"] <= 0.01)
    for key, value in figures.items():
        print(f"{key:28s} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
