"""Recipes: plain dataclasses read from YAML, strict about unknown keys and types.

``python -m ferronn.train --print-config`` prints the full resolved recipe; every field below is a YAML key.
With no recipe at all, the defaults train a small model on the embedded BaTiO3 QE set.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional


from .. import keys as K
from ..data.datamodule import DataConfig, SplitConfig  # noqa: F401  (recipe sections)
from ..config import from_dict, load_config  # noqa: F401  (from_dict re-exported for recipes' users)
from ..models.born import BornModelConfig
from ..models.compile import BACKENDS
from ..models.energy import EnergyModelConfig

@dataclasses.dataclass
class LossConfig:
    """Weighted loss: w_E·L(ΔE/N) + w_F·L(ΔF) + w_σ·L(Δσ) + w_Z·L(ΔZ*), L = MSE or Huber (per component)."""

    energy_weight: float = 100.0  # on per-atom energy (eV/atom)
    forces_weight: float = 100.0  # eV/Å
    stress_weight: float = 100.0  # eV/Å³
    born_weight: float = 100.0  # e (Z* components)
    kind: str = "mse"  # mse | huber
    huber_delta: float = 0.01
    # Born path (train/born_path.py): pairs of training frames within born_path_max_du Å; the trapezoid
    # Σ ½(Z*ᵢ+Z*ⱼ)·Δu must give the DFT dipole change (needs data.keys.polarization); term |r|²/|Δu|² in e²
    born_path_weight: float = 0.0
    born_path_max_du: float = 0.25  # Å, largest displacement of any atom within a pair

    def weights(self, kinds) -> dict:
        """{label: weight} of the labels the models of ``kinds`` ('energy', 'born') are fitted to."""
        out = {}
        if "energy" in kinds:
            out.update({K.ENERGY: self.energy_weight, K.FORCES: self.forces_weight, K.STRESS: self.stress_weight})
        if "born" in kinds:
            out[K.BORN_CHARGES] = self.born_weight
        return out


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 150
    max_minutes: Optional[float] = None  # wall-clock bound on the fit (Lightning max_time); the best epoch so far is exported
    lr: float = 0.01
    born_lr: Optional[float] = None  # learning rate of the Born model (default: lr); it tolerates a higher one
    weight_decay: float = 5e-7
    optimizer: str = "adam"  # adam (amsgrad) | adamw
    amsgrad: bool = True
    scheduler: str = "plateau"  # plateau | cosine (over epochs, or max_minutes of training time when set) | none
    lr_factor: float = 0.8  # plateau: multiply lr by this ...
    patience: int = 50  # ... after this many epochs without val improvement
    min_lr: float = 1e-6
    ema_decay: float = 0.99  # 0 disables the EMA of weights used for val/test/export
    clip_grad: Optional[float] = 10.0
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    devices: int = 1  # processes per node; > 1 (or num_nodes > 1) trains with DDP (gloo on CPU, NCCL on GPUs)
    num_nodes: int = 1
    tf32: bool = False  # float32 matmuls/convolutions on TF32 tensor cores (Ampere+ GPUs; ~1e-3 relative error)
    compile: bool = False  # torch.compile the Born model (and an energy model fitted without forces/stress)
    compile_backend: str = "inductor"
    dtype: str = "float64"  # float64 | float32
    logger: str = "csv"  # csv | wandb (offline unless WANDB_MODE says otherwise)
    check_val_every_n_epoch: int = 1
    log_every_n_steps: int = 1
    progress_bar: bool = True


@dataclasses.dataclass
class RunConfig:
    name: str = "batio3-qe-default"
    task: str = "both"  # energy | born | both: which models to fit (each gets its own checkpoint)
    out: Optional[str] = None  # default runs/<name>
    init_from: Optional[str] = None  # warm start: a run folder whose energy.ckpt/born.ckpt give the initial weights
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: EnergyModelConfig = dataclasses.field(default_factory=EnergyModelConfig)
    born_model: BornModelConfig = dataclasses.field(default_factory=BornModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def out_dir(self) -> str:
        return self.out or os.path.join("runs", self.name)

    def model_configs(self) -> dict:
        """{kind: model config} of the models this recipe's task fits ('energy' and/or 'born')."""
        configs = {"energy": self.model, "born": self.born_model}
        return {kind: cfg for kind, cfg in configs.items() if self.task in (kind, "both")}


CHOICES = {
    "task": ("energy", "born", "both"),
    "train.optimizer": ("adam", "adamw"),
    "train.scheduler": ("plateau", "cosine", "none"),
    "train.dtype": ("float32", "float64"),
    "train.logger": ("csv", "wandb"),
    "train.loss.kind": ("mse", "huber"),
    "train.compile_backend": BACKENDS,
}


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def load_recipe(path: Optional[str] = None, overrides: Optional[dict] = None) -> RunConfig:
    """Recipe from ``path`` (YAML) or the defaults, with ``overrides`` {'train.lr': 0.001, ...} applied."""
    return load_config(RunConfig, path, overrides, CHOICES)
