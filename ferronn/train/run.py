"""One training run, end to end: data → models → Lightning fit → export best EMA models → test metrics."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import Optional

import torch
import yaml
from ase.data import chemical_symbols

from .. import keys as K
from ..atomic import atomic_path, write_json
from ..config import resolve_device
from ..data.datamodule import FrameDataModule
from ..data.stats import reference_asr_residual
from ..errors import ConfigError
from ..models import checkpoint
from ..models.born import BornModel
from ..models.energy import EnergyModel
from .born_path import check_recipe, pair_table, training_pairs, validation_pairs
from .config import RunConfig, to_dict
from .metrics import evaluate, format_table
from .module import EMA, FitTask
from .plots import born_parity_plot, parity_plot
from .progress import EpochLines, wants_lines

DTYPES = {"float32": torch.float32, "float64": torch.float64}
PRECISION = {"float32": "32-true", "float64": "64-true"}


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _logger(config: RunConfig, out: str):
    if config.train.logger == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ConfigError("train.logger 'wandb': wandb is not installed (pip install 'ferronn[wandb]')") from None

        os.environ.setdefault("WANDB_MODE", "offline")  # no network unless the user configured wandb
        return WandbLogger(name=config.name, save_dir=out, project="ferronn")
    from lightning.pytorch.loggers import CSVLogger

    # One version folder per start (version_0, then version_1 after --resume, ...): Lightning's CSV logger
    # deletes an existing metrics.csv in its folder, and a resumed run must keep its history.
    return CSVLogger(save_dir=out, name="logs")


def build_models(config: RunConfig, stats, dtype) -> dict:
    """{'energy': model or None, 'born': model or None} as the recipe's task asks, from training-set statistics."""
    classes = {"energy": EnergyModel, "born": BornModel}
    configs = config.model_configs()
    return {kind: cls.from_stats(configs[kind], stats, dtype) if kind in configs else None
            for kind, cls in classes.items()}


def warm_start(models: dict, folder: str) -> None:
    """Initialise ``models`` with the weights of the run in ``folder`` (its energy.ckpt / born.ckpt): active
    learning retrains from the last round's models instead of from scratch. Architectures must match."""
    for kind, model in models.items():
        if model is None:
            continue
        path = os.path.join(folder, f"{kind}.ckpt")
        if not os.path.exists(path):
            raise ConfigError(f"init_from: '{folder}' has no {kind}.ckpt to start the {kind} model from")
        source = checkpoint.load_checkpoint(path, kind=kind, dtype=model.dtype)
        if source.hyperparameters()["config"] != model.hyperparameters()["config"]:
            raise ConfigError(f"init_from: '{path}' was trained with other {kind} hyperparameters than this recipe")
        model.load_state_dict(source.state_dict())


def compile_for_training(models: dict, cfg) -> dict:
    """torch.compile the models that are fitted without second derivatives: the Born model always, the energy
    model only when forces and stress carry no weight (a force loss differentiates the compiled force graph
    again, which torch.compile does not support)."""
    from ..models.compile import compiled

    out = dict(models)
    if models.get("energy") is not None:
        if cfg.loss.forces_weight > 0 or cfg.loss.stress_weight > 0:
            raise ConfigError("train.compile: the energy model's force/stress loss needs a double backward, which "
                              "torch.compile does not support; compile the Born model alone (task: born) or set "
                              "the force and stress weights to 0")
        out["energy"] = compiled(models["energy"], cfg.compile_backend)
    if models.get("born") is not None:
        out["born"] = compiled(models["born"], cfg.compile_backend)
    return out


def export_best(best_ckpt: str, models: dict, out: str, metadata: dict, plain: Optional[dict] = None) -> dict:
    """Copy the (EMA) weights of Lightning's best checkpoint into one ferronn checkpoint per model:
    ``energy.ckpt`` and/or ``born.ckpt`` in ``out``. ``models`` are the trained ones; when they are compiled copies,
    ``plain`` holds the models that are saved (the weights are copied across). Returns {kind: saved model}."""
    state = torch.load(best_ckpt, map_location="cpu", weights_only=True)
    metadata = dict(metadata, epoch=int(state.get("epoch", -1)), global_step=int(state.get("global_step", -1)))
    saved = {}
    for kind, model in models.items():
        if model is None:
            continue
        prefix = f"{kind}_model."
        model.load_state_dict({k[len(prefix):]: v for k, v in state["state_dict"].items() if k.startswith(prefix)})
        if plain is not None:
            from ..models.compile import load_weights

            load_weights(plain[kind], model)
            model = plain[kind]
        checkpoint.save(model, os.path.join(out, f"{kind}.ckpt"), metadata)
        saved[kind] = model
    return saved


def test_report(models: dict, datamodule: FrameDataModule, out: str, device, title: str) -> dict:
    """Evaluate the exported models {kind: model} on the test split: table on stdout, parity plots; returns the
    metrics."""
    models = {kind: model.to(device) for kind, model in models.items()}
    metrics, acc = evaluate(models, datamodule.test_dataloader(), device=device, keep_values=True)
    metrics.update(reference_asr_residual(datamodule.test_frames))
    print(format_table(metrics, f"{title}: test metrics ({len(datamodule.graphs['test'])} frames)"))
    values = acc.parity_values()
    if "energy" in models:
        parity_plot(values, metrics, os.path.join(out, "parity_test.png"), f"{title} (test)")
    if "born" in models:
        symbols = [chemical_symbols[z] for z in datamodule.species.atomic_numbers]
        born_parity_plot(values[K.BORN_CHARGES], symbols, metrics, os.path.join(out, "parity_born.png"),
                         f"{title} (test)")
    return metrics


def train(config: RunConfig, resume: bool = False) -> dict:
    """Fit the models of ``config.task``; returns the test metrics. Everything goes to out_dir()."""
    return fit(config, resume)[0]


def fit(config: RunConfig, resume: bool = False):
    """``train`` returning (test metrics, {kind: exported model}): the models hold exactly the weights written to
    energy.ckpt / born.ckpt (callers that go on using them need not rebuild them from disk)."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint, Timer

    out = config.out_dir()
    cfg = config.train
    dtype = DTYPES[cfg.dtype]
    device = resolve_device(cfg.device, "train.device")
    last = os.path.join(out, "checkpoints", "last.ckpt")
    if resume and not os.path.exists(last):
        raise ConfigError(f"--resume: no resumable checkpoint at '{last}' (was the run started with this --out?)")
    if not resume and os.path.exists(last):
        raise ConfigError(f"output folder '{out}' already holds a run ({last}); continue it with --resume, "
                          "or choose another --out")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    kinds = config.model_configs()
    check_recipe(config)
    needed = tuple(label for label, w in cfg.loss.weights(kinds).items() if w > 0)
    r_max = max(m.r_max for m in kinds.values())  # one neighbour list serves both models
    datamodule = FrameDataModule(config.data, r_max, cfg.seed, dtype, labels_needed=needed).prepare()
    born_path = training_pairs(datamodule, cfg.loss)
    if born_path is not None:
        print(f"Born path loss: {len(born_path)} pair(s) of training frames\n{pair_table(born_path)}")
    models = build_models(config, datamodule.stats, dtype)
    if config.init_from:
        warm_start(models, config.init_from)
    plain = dict(models)  # what is saved: a compiled copy's weights are copied back into these
    if cfg.compile:
        models = compile_for_training(models, cfg)
    recipe = to_dict(config)
    task = FitTask(models["energy"], models["born"], cfg, recipe, born_path,
                   validation_pairs(datamodule, cfg.loss) if models["born"] is not None else None)
    os.makedirs(out, exist_ok=True)
    with atomic_path(os.path.join(out, "recipe.yaml"), ".yaml") as tmp:
        with open(tmp, "w") as handle:
            yaml.safe_dump(recipe, handle, sort_keys=False)

    callbacks = [ModelCheckpoint(dirpath=os.path.join(out, "checkpoints"), filename="best", monitor="val_loss",
                                 mode="min", save_top_k=1, save_last=True, enable_version_counter=False)]
    if cfg.ema_decay > 0:
        callbacks.append(EMA(cfg.ema_decay))
    if cfg.progress_bar and wants_lines():  # a file or pipe: one line per epoch, not a redrawn bar
        callbacks.append(EpochLines())
    if cfg.tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    distributed = cfg.devices * cfg.num_nodes > 1
    if distributed:
        from lightning.pytorch.strategies import DDPStrategy

        # gloo on CPU, NCCL on GPUs; the data module shards every global batch over the processes (see
        # data.datamodule.GlobalBatchSampler), so Lightning must not wrap the loaders in its own sampler.
        strategy = DDPStrategy(process_group_backend="nccl" if device.type == "cuda" else "gloo")
        devices = cfg.devices
    else:
        strategy, devices = "auto", [device.index or 0] if device.type == "cuda" else 1
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        max_time=None if cfg.max_minutes is None else {"minutes": cfg.max_minutes},
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=devices,
        num_nodes=cfg.num_nodes,
        strategy=strategy,
        use_distributed_sampler=False,
        precision=PRECISION[cfg.dtype],
        gradient_clip_val=cfg.clip_grad,
        callbacks=callbacks,
        logger=_logger(config, out),
        inference_mode=False,  # validation takes derivatives (forces, stress)
        num_sanity_val_steps=0,
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=cfg.log_every_n_steps,
        check_val_every_n_epoch=cfg.check_val_every_n_epoch,
        default_root_dir=out,
    )
    start = time.perf_counter()
    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=last if resume else None, weights_only=True)
    except RuntimeError as exc:
        if resume and "state_dict" in str(exc):
            raise ConfigError(f"--resume: '{last}' does not match this recipe's models (task, hyperparameters) or "
                              f"was written by another ferronn version: {str(exc).splitlines()[0]}") from None
        raise
    fit_seconds = time.perf_counter() - start
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is not None:  # with max_minutes: the whole fit's training time, also across --resume
        fit_seconds = float(timer.time_elapsed("train"))
    if trainer.global_rank != 0:  # DDP: the other processes have done their share; rank 0 exports and tests
        return {}, {}
    best = trainer.checkpoint_callback.best_model_path or last
    metadata = {
        "recipe_name": config.name,
        "data_path": os.path.abspath(datamodule.path),
        "data_sha256": _sha256(datamodule.path),
        "split": datamodule.split,
        "best_val_loss": float(trainer.checkpoint_callback.best_model_score or float("nan")),
        "command": " ".join(["python -m ferronn.train"] + sys.argv[1:]),
    }
    # best-epoch EMA weights into the task's models, saved from the plain models when those were compiled
    exported = export_best(best, task.models, out, metadata, plain if cfg.compile else None)
    metrics = test_report(exported, datamodule, out, device, config.name)
    write_json(os.path.join(out, "metrics.json"),
               {"test": metrics, "fit_seconds": fit_seconds, "epochs": trainer.current_epoch, "task": config.task,
                "processes": trainer.world_size,
                "num_test_frames": len(datamodule.graphs["test"]), "train_frames": len(datamodule.graphs["train"])})
    print(f"wrote {', '.join(sorted(f'{kind}.ckpt' for kind in exported))}, metrics.json and parity "
          f"plots in {out} (fit {fit_seconds:.1f} s)")
    return metrics, exported


def train_committee(config: RunConfig, size: int, resume: bool = False) -> dict:
    """Fit ``size`` members that differ in their seed (initial weights and data order) on one fixed split:
    ``<out>/member<i>/`` each, plus ``committee.json`` and the committee's own test metrics in metrics.json."""
    return fit_committee(config, size, resume)[0]


def fit_committee(config: RunConfig, size: int, resume: bool = False):
    """``train_committee`` returning (test metrics, {kind: committee}) with the trained members in memory."""
    import dataclasses

    from ..models.committee import committee_of, write_committee_file

    if size < 2:
        raise ConfigError(f"--committee: a committee needs at least 2 members, got {size}")
    if config.train.devices * config.train.num_nodes > 1:
        raise ConfigError("--committee with DDP (train.devices/num_nodes > 1) is not supported: members are small "
                          "and train one after another; run them on one process each")
    out = config.out_dir()
    split = dataclasses.replace(config.data.split, seed=config.data.split.seed if config.data.split.seed is not None
                                else config.train.seed)
    members, per_member = {kind: [] for kind in config.model_configs()}, []
    for i in range(size):
        folder = os.path.join(out, f"member{i}")
        member = dataclasses.replace(
            config, name=f"{config.name}-member{i}", out=folder,
            init_from=os.path.join(config.init_from, f"member{i}") if config.init_from else None,
            data=dataclasses.replace(config.data, split=split),
            train=dataclasses.replace(config.train, seed=config.train.seed + i))
        trained = {}
        if resume and os.path.exists(os.path.join(folder, "metrics.json")):
            print(f"member {i}: already trained in {folder}")
        else:
            print(f"== committee member {i + 1}/{size} (seed {member.train.seed})")
            _, trained = fit(member, resume=resume and os.path.exists(os.path.join(folder, "checkpoints", "last.ckpt")))
        with open(os.path.join(folder, "metrics.json")) as handle:
            per_member.append(json.load(handle)["test"])
        for kind in members:
            path = os.path.join(folder, f"{kind}.ckpt")
            members[kind].append(trained[kind] if kind in trained else checkpoint.load_checkpoint(path, kind=kind))
    write_committee_file(out, {kind: [os.path.join(f"member{i}", f"{kind}.ckpt") for i in range(size)]
                               for kind in members})
    committees = {kind: committee_of(models) for kind, models in members.items()}
    metrics = committee_report(config, committees, split)
    write_json(os.path.join(out, "metrics.json"), {"test": metrics, "members": per_member, "size": size})
    return metrics, committees


def committee_report(config: RunConfig, committees: dict, split) -> dict:
    """Test metrics of the committees' {kind: committee} mean prediction on the recipe's test frames."""
    import dataclasses

    device = resolve_device(config.train.device, "train.device")
    kinds = config.model_configs()
    datamodule = FrameDataModule(dataclasses.replace(config.data, split=split), max(m.r_max for m in kinds.values()),
                                 config.train.seed, DTYPES[config.train.dtype]).prepare()
    metrics, _ = evaluate({k: c.to(device) for k, c in committees.items()}, datamodule.test_dataloader(),
                          device=device)
    size = len(next(iter(committees.values())))
    print(format_table(metrics, f"{config.name}: committee of {size} (test, {len(datamodule.graphs['test'])} frames)"))
    return metrics
