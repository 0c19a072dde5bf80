"""Losses and metrics over masked labels: one definition used by training, validation, test and eval.

Errors are accumulated on the device (no host sync per batch). Units in reports: energy meV/atom, forces meV/Å,
stress meV/Å³, Born charges e (overall, per element, diagonal and off-diagonal components). A structure whose
label is masked contributes nothing (and its NaN placeholder never reaches an arithmetic operation that feeds
a gradient).
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch

from .. import keys as K
from ..units import MEV_PER_EV

#: Report name, unit and factor from the label's own unit (eV-based or e) of each label's error.
REPORT = {
    K.ENERGY: ("energy", "meV/atom", MEV_PER_EV),
    K.FORCES: ("forces", "meV/A", MEV_PER_EV),
    K.STRESS: ("stress", "meV/A^3", MEV_PER_EV),
    K.BORN_CHARGES: ("born", "e", 1.0),
}
_DIAGONAL = torch.tensor([True, False, False, False, True, False, False, False, True])


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
    """Running MAE/RMSE per label (per-atom labels also per element; Z* also diagonal/off-diagonal) over
    batches; optionally keeps (reference, predicted, species) values for parity plots."""

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
            name = REPORT[label][0]
            self._add(name, err, mask)
            if label in K.PER_ATOM_LABELS:
                species = batch[K.SPECIES]
                for s, symbol in enumerate(self.symbols):
                    sel = species == s
                    self._add(f"{name}_{symbol}", err * sel.unsqueeze(-1), mask & sel)
            if label == K.BORN_CHARGES:
                diagonal = _DIAGONAL.to(err.device)
                self._add(f"{name}_diag", err[:, diagonal], mask)
                self._add(f"{name}_offdiag", err[:, ~diagonal], mask)
            if self.keep_values:
                m = mask.cpu()
                ref = batch[label] / batch[K.NUM_ATOMS] if label == K.ENERGY else batch[label]
                out = pred[label] / batch[K.NUM_ATOMS] if label == K.ENERGY else pred[label]
                n = ref.shape[0]
                group = batch[K.SPECIES] if label in K.PER_ATOM_LABELS else torch.full((n,), -1)
                group = group.reshape(n, 1).expand(n, err.shape[-1])
                self.values.setdefault(label, []).append(
                    tuple(x.detach().reshape(n, -1).cpu()[m] for x in (ref, out, group)))

    def compute(self) -> Dict[str, float]:
        """{'energy_mae': meV/atom, 'forces_Ba_rmse': meV/Å, 'stress_mae': meV/Å³, 'born_offdiag_mae': e, ...}."""
        scale = {name: factor for name, _, factor in REPORT.values()}
        out = {}
        for name, sums in self.sums.items():
            abs_sum, sq_sum, count = sums.tolist()
            if count == 0:
                continue
            factor = scale[name.split("_")[0]]
            out[f"{name}_mae"] = abs_sum / count * factor
            out[f"{name}_rmse"] = (sq_sum / count) ** 0.5 * factor
        return out

    def parity_values(self) -> Dict[str, tuple]:
        """{label: (reference, predicted, species)} flat numpy arrays in the label's unit (energy per atom);
        species is -1 for per-structure labels."""
        import numpy as np

        return {
            label: tuple(np.concatenate([t[i].numpy().ravel() for t in triples]) for i in range(3))
            for label, triples in self.values.items()
        }


def format_table(metrics: Dict[str, float], title: str = "test metrics") -> str:
    """Plain-text table: one row per label (per element, Z* diagonal/off-diagonal), MAE and RMSE; then the
    reference data's own acoustic-sum-rule residual where known."""
    units = {name: unit for name, unit, _ in REPORT.values()}
    order = [name for name, _, _ in REPORT.values()]
    keys = sorted({k[: -len("_mae")] for k in metrics if k.endswith("_mae")},
                  key=lambda k: (order.index(k.split("_")[0]) if k.split("_")[0] in order else 9, k.count("_"), k))
    rows = [(k.replace("_", " "), units.get(k.split("_")[0], ""), metrics[f"{k}_mae"], metrics[f"{k}_rmse"])
            for k in keys]
    width = max([len(r[0]) for r in rows] + [8])
    lines = [title, f"{'quantity':<{width}}  {'unit':<9} {'MAE':>10} {'RMSE':>10}"]
    lines += [f"{name:<{width}}  {unit:<9} {mae:>10.4g} {rmse:>10.4g}" for name, unit, mae, rmse in rows]
    for key in sorted(k for k in metrics if "asr_reference" in k):
        lines.append(f"{key.replace('_', ' ')}: {metrics[key]:.3g} e (max |sum of Z*| per frame, DFT data)")
    return "\n".join(lines)


def evaluate(models, loader, device=None, compute_stress: Optional[bool] = None, keep_values=False):
    """Run energy and/or Born models (a model or {kind: model}) over ``loader``; returns (metrics, accumulator)."""
    from ase.data import chemical_symbols

    from ..data.graph import batch_to
    from ..models import predict

    models = models if isinstance(models, dict) else {models.kind: models}
    first = next(iter(models.values()))
    device = device or next(first.parameters()).device
    acc = MetricAccumulator([chemical_symbols[z] for z in first.atomic_numbers], keep_values=keep_values)
    for model in models.values():
        model.eval()
    with torch.enable_grad():  # forces and stress are derivatives
        for batch in loader:
            batch = batch_to(batch, device)
            stress = K.mask_key(K.STRESS) in batch if compute_stress is None else compute_stress
            acc.update(predict(models, batch, compute_stress=stress, training=False), batch)
    return acc.compute(), acc
