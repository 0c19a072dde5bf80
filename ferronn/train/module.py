"""The LightningModule that fits the energy and/or Born-charge model: weighted loss on per-atom energy, forces,
stress and Z* components."""

from __future__ import annotations

import math

import lightning as L
import torch
from ase.data import chemical_symbols
from lightning.pytorch.callbacks import Timer, WeightAveraging

from .. import keys as K
from ..models import predict
from .metrics import MetricAccumulator, weighted_loss


def ema_with_warmup(decay: float):
    """EMA update with the usual warm-up d_t = min(decay, (1+t)/(10+t)) (as torch_ema, used by mace, does):
    a fixed decay would keep 0.99^t of the random initial weights, which dominates short runs."""

    def update(averaged, current, num_averaged):
        d = torch.clamp((1.0 + num_averaged) / (10.0 + num_averaged), max=decay).to(averaged.dtype)
        return averaged * d + current * (1.0 - d)

    return update


def cosine_factor(fraction, floor: float):
    """A LambdaLR factor: ½(1 + cos πf) of the initial rate, never below ``floor``, where f = ``fraction()`` is the
    share of the fit done (the lambda's own epoch count is ignored)."""

    def factor(_epoch: int) -> float:
        return max(floor, 0.5 * (1.0 + math.cos(math.pi * fraction())))

    return factor


class EMA(WeightAveraging):
    """Lightning's WeightAveraging (swaps the averaged weights in for validation and checkpoints) with a
    warmed-up exponential moving average, updated after every optimizer step."""

    def __init__(self, decay: float):
        super().__init__(avg_fn=ema_with_warmup(decay), use_buffers=False)


class FitTask(L.LightningModule):
    """Trains the energy model, the Born-charge model, or both at once: independent weights, one summed loss,
    one Adam (its steps are per parameter), gradients clipped per model; the plateau schedule follows the summed
    validation loss. Validation uses the EMA weights.

    ``born_path`` (train/born_path.py: pairs of training frames) adds w·|r|²/|Δu|² at every step whose batch holds
    a paired frame; ``val_path`` (pairs within the validation split) only reports it. val_loss leaves it out, so
    the best epoch is chosen on the Z* (and energy) labels alone, as without the term."""

    def __init__(self, energy_model, born_model, train_config, recipe: dict, born_path=None, val_path=None):
        super().__init__()
        self.energy_model = energy_model
        self.born_model = born_model
        self.cfg = train_config
        self.born_path, self.val_path = born_path, val_path
        self._val_born = {}
        loss = train_config.loss
        self.weights = loss.weights([kind for kind, m in self.models.items() if m is not None])
        self.compute_stress = energy_model is not None and loss.stress_weight > 0
        # Plain dicts only: Lightning checkpoints must load with weights_only=True.
        self.save_hyperparameters({"recipe": recipe})
        self._val_metrics = None

    def fit_fraction(self) -> float:
        """How much of the fit is done, in [0, 1]: the larger of epochs done ÷ train.epochs and training time ÷
        train.max_minutes (Lightning's Timer, which a --resume restores). Rank 0's value on every DDP process, so
        all of them step with one learning rate."""
        cfg, trainer = self.cfg, self.trainer
        fraction = trainer.current_epoch / max(cfg.epochs, 1)
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        if timer is not None and cfg.max_minutes:
            fraction = max(fraction, timer.time_elapsed("train") / (60.0 * cfg.max_minutes))
        return float(trainer.strategy.broadcast(min(fraction, 1.0), src=0))

    @property
    def models(self) -> dict:
        return {"energy": self.energy_model, "born": self.born_model}

    @property
    def atomic_numbers(self):
        return (self.energy_model or self.born_model).atomic_numbers

    def forward(self, batch, training=False):
        return predict(self.models, batch, compute_stress=self.compute_stress, training=training)

    def _step(self, batch, training):
        pred = self(batch, training=training)
        loss, terms = weighted_loss(pred, batch, self.weights, self.cfg.loss.kind, self.cfg.loss.huber_delta)
        return pred, loss, terms

    def training_step(self, batch, batch_idx):
        pred, loss, terms = self._step(batch, training=True)
        n = batch[K.NUM_ATOMS].shape[0]
        if self.born_path is not None:
            # per step, not per epoch: the batch's own Z* is reused, so a paired frame costs one more Born
            # evaluation (its partner), and the term's gradient is spread over the epoch like the labels'
            path = self.born_path.step_loss(self.born_model, batch, pred[K.BORN_CHARGES], self.current_epoch)
            if path is not None:
                loss = loss + self.cfg.loss.born_path_weight * path
                terms["born_path"] = path
        sync = self.trainer.world_size > 1  # DDP: each process saw a share of the batch; log their average
        self.log("train_loss", loss, batch_size=n, prog_bar=True, on_step=False, on_epoch=True, sync_dist=sync)
        for label, term in terms.items():
            self.log(f"train_{label}_loss", term, batch_size=n, on_step=False, on_epoch=True, sync_dist=sync)
        return loss

    def on_validation_epoch_start(self):
        self._val_metrics = MetricAccumulator([chemical_symbols[z] for z in self.atomic_numbers])

    def validation_step(self, batch, batch_idx):
        with torch.enable_grad():  # forces and stress are derivatives even in validation
            pred, loss, _ = self._step(batch, training=False)
        self._val_metrics.update(pred, batch)
        if self.val_path is not None:
            for b, pos in self.val_path.members(batch):
                ptr = batch[K.PTR]
                self._val_born[pos] = pred[K.BORN_CHARGES][ptr[b]:ptr[b + 1]].detach()
        self.log("val_loss", loss.detach(), batch_size=batch[K.NUM_ATOMS].shape[0], prog_bar=True)

    def on_validation_epoch_end(self):
        for name, value in self._val_metrics.compute().items():  # per label, per element, Z* diag/offdiag
            self.log(f"val_{name}", value, prog_bar=name in ("forces_rmse", "born_mae"))
        if self.val_path is not None:
            path = self.val_path.loss_from(self._val_born)
            if path is not None:
                self.log("val_born_path_loss", path)
            self._val_born = {}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Clip each model's gradient norm on its own, so a large energy-model gradient early in training does
        not shrink the Born model's steps (and vice versa)."""
        if not gradient_clip_val:
            return
        for model in self.models.values():
            if model is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), gradient_clip_val)

    def configure_optimizers(self):
        cfg = self.cfg
        # One parameter group per model: the Born model may learn at its own rate (train.born_lr).
        rates = {"energy": cfg.lr, "born": cfg.born_lr or cfg.lr}
        groups = [{"params": list(m.parameters()), "lr": rates[kind]} for kind, m in self.models.items() if m is not None]
        optimizer_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        optimizer = optimizer_cls(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad)
        if cfg.scheduler == "none":
            return optimizer
        if cfg.scheduler == "cosine" and cfg.max_minutes is not None:
            # Anneal over whichever bound ends the fit first, so a wall-clock-bounded recipe reaches the small
            # rates on any machine instead of being cut off at a high one.
            factors = [cosine_factor(self.fit_fraction, cfg.min_lr / g["lr"]) for g in groups]
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        if cfg.scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(cfg.epochs, 1),
                                                                   eta_min=cfg.min_lr)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.lr_factor, patience=cfg.patience,
                                                               min_lr=cfg.min_lr)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss", "interval": "epoch",
                                 "frequency": cfg.check_val_every_n_epoch}}
