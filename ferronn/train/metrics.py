"""Losses and metrics over masked labels: one definition used by training, validation, test and eval.

Errors are accumulated on the device (no host sync per batch). Units in reports: energy meV/atom, forces meV/Å,
stress meV/Å³. A structure whose label is masked contributes nothing (and its NaN placeholder never reaches
an arithmetic operation that feeds a gradient).
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch

from .. import keys as K
from ..units import MEV_PER_EV

#: Report name and unit of each label's error.
REPORT = {
    K.ENERGY: ("energy", "meV/atom"),
    K.FORCES: ("forces", "meV/A"),
    K.STRESS: ("stress", "meV/A^3"),
}


def label_errors(pred: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor], label: str):
    """(errors, weights) for ``label``: errors shaped (items, components) in eV units, zero where masked.

    Energy errors are per atom (ΔE/N); forces per atom component; stress per component.
    """
    mask = batch[K.mask_key(label)]
    ref = torch.nan_to_num(batch[label])
    if label == K.ENERGY:
        err = ((pred[K.ENERGY] - ref) / batch[K.NUM_ATOMS]).unsqueeze(-1)
    elif label in K.PER_ATOM_LABELS:
        err = (pred[label] - ref).reshape(ref.shape[0], -1)
        mask = mask[batch[K.BATCH]]
    else:
        err = (pred[label] - ref).reshape(ref.shape[0], -1)
    err = torch.where(mask.unsqueeze(-1), err, torch.zeros_like(err))
    return err, mask


def weighted_loss(pred, batch, weights: Dict[str, float], kind: str = "mse", huber_delta: float = 0.01):
    """Σ_label w·mean(L(error)) over unmasked items; returns (total, {label: term})."""
    terms = {}
    total = 0.0
    for label, weight in weights.items():
        if weight == 0 or K.mask_key(label) not in batch or label not in pred:
            continue
        err, mask = label_errors(pred, batch, label)
        if kind == "huber":
            elementwise = torch.nn.functional.huber_loss(err, torch.zeros_like(err), delta=huber_delta,
                                                         reduction="none")
        else:
            elementwise = err**2
        count = mask.sum() * err.shape[-1]
        term = elementwise.sum() / count.clamp(min=1)
        terms[label] = term
        total = total + weight * term
    return total, terms


class MetricAccumulator:
    """Running MAE/RMSE per label (and forces per element) over batches; optionally keeps values for plots."""

    def __init__(self, symbols: List[str], keep_values: bool = False):
        self.symbols = list(symbols)
        self.keep_values = keep_values
        self.sums: Dict[str, torch.Tensor] = {}
        self.values: Dict[str, List[tuple]] = {}

    def _add(self, name, err, mask_items):
        abs_sum, sq_sum = err.abs().sum(), (err**2).sum()
        count = mask_items.sum() * err.shape[-1]
        new = torch.stack([abs_sum.double(), sq_sum.double(), count.double()])
        self.sums[name] = self.sums[name] + new if name in self.sums else new

    @torch.no_grad()
    def update(self, pred, batch):
        for label in REPORT:
            if K.mask_key(label) not in batch or label not in pred:
                continue
            err, mask = label_errors(pred, batch, label)
            err, mask = err.detach(), mask.detach()
            self._add(label, err, mask)
            if label == K.FORCES:
                species = batch[K.SPECIES]
                for s, symbol in enumerate(self.symbols):
                    sel = species == s
                    self._add(f"{label}_{symbol}", err * sel.unsqueeze(-1), mask & sel)
            if self.keep_values:
                m = mask.cpu()
                ref = batch[label] / batch[K.NUM_ATOMS] if label == K.ENERGY else batch[label]
                out = pred[label] / batch[K.NUM_ATOMS] if label == K.ENERGY else pred[label]
                n = ref.shape[0]
                self.values.setdefault(label, []).append(
                    (ref.detach().reshape(n, -1).cpu()[m], out.detach().reshape(n, -1).cpu()[m]))

    def compute(self) -> Dict[str, float]:
        """{'energy_mae': meV/atom, 'forces_rmse': meV/Å, 'forces_rmse_Ba': ..., 'stress_mae': meV/Å³, ...}."""
        out = {}
        for name, sums in self.sums.items():
            abs_sum, sq_sum, count = sums.tolist()
            if count == 0:
                continue
            out[f"{name}_mae"] = abs_sum / count * MEV_PER_EV
            out[f"{name}_rmse"] = (sq_sum / count) ** 0.5 * MEV_PER_EV
        return out

    def parity_values(self) -> Dict[str, tuple]:
        """{label: (reference, predicted)} flat float64 numpy arrays in eV units (energy per atom)."""
        import numpy as np

        return {
            label: (np.concatenate([r.numpy().ravel() for r, _ in pairs]),
                    np.concatenate([p.numpy().ravel() for _, p in pairs]))
            for label, pairs in self.values.items()
        }


def format_table(metrics: Dict[str, float], title: str = "test metrics") -> str:
    """Plain-text table: one row per label (and per element for forces), MAE and RMSE columns."""
    rows = []
    for key in sorted({k.rsplit("_", 1)[0] for k in metrics if k.endswith("_mae")},
                      key=lambda k: (list(REPORT).index(k.split("_")[0]) if k.split("_")[0] in REPORT else 9, k)):
        label = key.split("_")[0]
        unit = REPORT.get(label, ("", ""))[1]
        rows.append((key.replace("_", " "), unit, metrics[f"{key}_mae"], metrics[f"{key}_rmse"]))
    width = max([len(r[0]) for r in rows] + [8])
    lines = [title, f"{'quantity':<{width}}  {'unit':<9} {'MAE':>10} {'RMSE':>10}"]
    lines += [f"{name:<{width}}  {unit:<9} {mae:>10.3f} {rmse:>10.3f}" for name, unit, mae, rmse in rows]
    return "\n".join(lines)


def evaluate(model, loader, device=None, compute_stress: Optional[bool] = None, keep_values=False):
    """Run ``model`` over ``loader``; returns (metrics dict, accumulator). Forces/stress need autograd."""
    from ase.data import chemical_symbols

    from ..data.graph import batch_to

    device = device or next(model.parameters()).device
    acc = MetricAccumulator([chemical_symbols[z] for z in model.atomic_numbers], keep_values=keep_values)
    model.eval()
    with torch.enable_grad():
        for batch in loader:
            batch = batch_to(batch, device)
            stress = K.mask_key(K.STRESS) in batch if compute_stress is None else compute_stress
            pred = model(batch, compute_forces=True, compute_stress=stress, training=False)
            acc.update(pred, batch)
    return acc.compute(), acc
