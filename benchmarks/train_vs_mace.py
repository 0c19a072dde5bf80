"""ferronn training vs mace-torch's own `mace_run_train`, same data split, hyperparameters, epochs and dtype.

    python benchmarks/train_vs_mace.py [--recipe recipes/batio3.yaml] [--epochs 10] [--repeats 3]

Both trainers fit the same ScaleShiftMACE architecture (mace-torch's blocks) with the same loss
(w_E·MSE(ΔE/N) + w_F·MSE(ΔF) + w_σ·MSE(Δσ)), Adam(amsgrad), plateau schedule, EMA, gradient clipping and batch
size, on the recipe's train/val/test frames (written to temporary extxyz files for mace). Each repeat runs
mace then ferronn back to back on this machine; the medians over repeats are reported.

Throughput = training structures × epochs / seconds of the training loop (per-epoch validation included for
both: ferronn's Lightning fit; mace from its "Started training" to "Training complete" log lines, which also
holds one initial validation pass). End-to-end wall time of each command is reported too. The last line of
output is one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def mace_args(cfg, epochs, files, seed):
    model, train, data = cfg.model, cfg.train, cfg.data
    return [
        "mace_run_train", "--name", "bench", "--seed", str(seed),
        "--train_file", files["train"], "--valid_file", files["val"], "--test_file", files["test"],
        "--energy_key", data.keys.energy, "--forces_key", data.keys.forces, "--stress_key", data.keys.stress,
        "--E0s", "average", "--model", "MACE",
        "--r_max", str(model.r_max), "--num_channels", str(model.num_channels), "--max_L", str(model.max_L),
        "--correlation", str(model.correlation), "--num_interactions", str(model.num_interactions),
        "--max_ell", str(model.max_ell), "--num_radial_basis", str(model.num_radial_basis),
        "--num_cutoff_basis", str(model.num_cutoff_basis), "--MLP_irreps", model.MLP_irreps,
        "--radial_MLP", str(list(model.radial_MLP)), "--gate", model.gate,
        "--interaction", model.interaction, "--interaction_first", model.interaction_first,
        "--use_reduced_cg", str(model.use_reduced_cg),
        "--loss", "stress", "--energy_weight", str(train.loss.energy_weight),
        "--forces_weight", str(train.loss.forces_weight), "--stress_weight", str(train.loss.stress_weight),
        "--batch_size", str(data.batch_size), "--valid_batch_size", str(data.val_batch_size),
        "--max_num_epochs", str(epochs), "--lr", str(train.lr), "--weight_decay", str(train.weight_decay),
        "--scheduler", "ReduceLROnPlateau", "--lr_factor", str(train.lr_factor),
        "--scheduler_patience", str(train.patience), "--clip_grad", str(train.clip_grad),
        "--ema", "--ema_decay", str(train.ema_decay), "--default_dtype", train.dtype, "--device", "cpu",
        "--eval_interval", "1", "--num_workers", "0", "--pin_memory", "False",
    ]


def _stamp(line):
    return dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f")


def parse_mace_log(text):
    """(training-loop seconds, test force RMSE meV/Å, test energy RMSE meV/atom) from mace's log."""
    lines = text.splitlines()
    start = next(_stamp(line) for line in lines if "Started training" in line)
    end = next(_stamp(line) for line in lines if "Training complete" in line)
    marker = max(i for i, line in enumerate(lines) if "Error-table on TEST" in line)
    table = [line for line in lines[marker + 1:marker + 8] if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    row = [c.strip() for c in table[1].strip("|").split("|")]
    values = dict(zip(header, row))
    return (end - start).total_seconds(), float(values["RMSE F / meV / A"]), float(values["RMSE E / meV / atom"])


def run_mace(cfg, epochs, files, workdir, seed):
    start = time.perf_counter()
    out = subprocess.run(mace_args(cfg, epochs, files, seed), cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - start
    log = out.stdout + out.stderr
    if out.returncode != 0:
        raise RuntimeError(f"mace_run_train failed:\n{log[-3000:]}")
    loop, f_rmse, e_rmse = parse_mace_log(log)
    return {"loop_s": loop, "wall_s": wall, "forces_rmse": f_rmse, "energy_rmse": e_rmse}


def run_ferronn(recipe, epochs, workdir, seed):
    out_dir = os.path.join(workdir, "ferronn")
    cmd = [sys.executable, "-m", "ferronn.train", "--config", recipe, "--out", out_dir, "--epochs", str(epochs),
           "--set", "task=energy",  # mace_run_train fits the energy model only
           "--seed", str(seed), "--set", "train.progress_bar=false"]
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"ferronn.train failed:\n{(out.stdout + out.stderr)[-3000:]}")
    with open(os.path.join(out_dir, "metrics.json")) as handle:
        metrics = json.load(handle)
    return {"loop_s": metrics["fit_seconds"], "wall_s": wall, "forces_rmse": metrics["test"]["forces_rmse"],
            "energy_rmse": metrics["test"]["energy_rmse"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=os.path.join(ROOT, "recipes", "batio3.yaml"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    from ase.io import read, write

    from ferronn.data.datamodule import split_indices
    from ferronn.train.config import load_recipe

    cfg = load_recipe(args.recipe)
    images = read(cfg.data.path, ":")
    train, val, test = split_indices(len(images), cfg.data.split, cfg.train.seed, bool(cfg.data.test_path))
    print(f"split: {len(train)} train, {len(val)} val {val}, {len(test)} test; {args.epochs} epochs; "
          f"{cfg.train.dtype}; torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}", flush=True)
    runs = {"mace": [], "ferronn": []}
    with tempfile.TemporaryDirectory(prefix="ferronn-bench-") as tmp:
        files = {}
        for name, idx in (("train", train), ("val", val), ("test", test)):
            files[name] = os.path.join(tmp, f"{name}.xyz")
            write(files[name], [images[i] for i in idx])
        for rep in range(args.repeats):
            work = tempfile.mkdtemp(dir=tmp)
            runs["mace"].append(run_mace(cfg, args.epochs, files, work, cfg.train.seed))
            print(f"repeat {rep}: mace    {runs['mace'][-1]}", flush=True)
            runs["ferronn"].append(run_ferronn(os.path.abspath(args.recipe), args.epochs, work, cfg.train.seed))
            print(f"repeat {rep}: ferronn {runs['ferronn'][-1]}", flush=True)

    def med(who, key):
        return statistics.median(r[key] for r in runs[who])

    structures = len(train) * args.epochs
    result = {
        "benchmark": "train_vs_mace",
        "recipe": os.path.relpath(args.recipe, ROOT),
        "epochs": args.epochs,
        "repeats": args.repeats,
        "train_structures": len(train),
        "throughput_ferronn": structures / med("ferronn", "loop_s"),
        "throughput_mace": structures / med("mace", "loop_s"),
        "throughput_ratio": med("mace", "loop_s") / med("ferronn", "loop_s"),
        "throughput_ratio_per_repeat": [m["loop_s"] / f["loop_s"] for m, f in zip(runs["mace"], runs["ferronn"])],
        "wall_ratio": med("mace", "wall_s") / med("ferronn", "wall_s"),
        "force_rmse_ferronn": med("ferronn", "forces_rmse"),
        "force_rmse_mace": med("mace", "forces_rmse"),
        "force_rmse_ratio": med("ferronn", "forces_rmse") / med("mace", "forces_rmse"),
        "energy_rmse_ferronn": med("ferronn", "energy_rmse"),
        "energy_rmse_mace": med("mace", "energy_rmse"),
        "units": {"throughput": "structures/s", "force_rmse": "meV/A", "energy_rmse": "meV/atom"},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
