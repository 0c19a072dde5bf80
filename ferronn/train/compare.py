"""Scoring a second model's prediction file (a peer's) against the same labels as ours, side by side.

The reference file holds predictions (energy, forces, stress, Z*) for the very frames of the labelled file; it is
scored with the same metric code as ferronn's own models, so the two columns differ only in who predicted.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import torch

from .. import keys as K
from ..errors import DataError
from .metrics import REPORT, MetricAccumulator

#: Largest minimum-image distance (Å) between an atom of the labels and the same atom of the reference.
POSITION_TOLERANCE = 1e-4


def check_aligned(labels: List[dict], reference: List[dict], label_path: str, reference_path: str) -> None:
    """The reference predicts the labelled frames: same count, species in order, positions within 1e-4 Å
    (minimum image); otherwise one DataError naming both files and the first frame that differs."""
    prefix = f"--reference '{reference_path}' does not line up with --data '{label_path}'"
    if len(labels) != len(reference):
        raise DataError(f"{prefix}: {len(reference)} frame(s) against {len(labels)} (check --index)")
    for i, (a, b) in enumerate(zip(labels, reference)):
        if not np.array_equal(a[K.ATOMIC_NUMBERS], b[K.ATOMIC_NUMBERS]):
            raise DataError(f"{prefix}: frame {i} (file frames {a['index']} and {b['index']}) has other species "
                            f"or atom order")
        delta = b[K.POSITIONS] - a[K.POSITIONS]
        if a[K.PBC].any():
            frac = np.linalg.solve(a[K.CELL].T, delta.T).T
            frac[:, a[K.PBC]] -= np.round(frac[:, a[K.PBC]])
            delta = frac @ a[K.CELL]
        worst = float(np.abs(delta).max())
        if not worst <= POSITION_TOLERANCE:
            raise DataError(f"{prefix}: frame {i} (file frames {a['index']} and {b['index']}) has positions "
                            f"{worst:.3g} Å apart (tolerance {POSITION_TOLERANCE:g} Å)")


def _stack(frames: List[dict], label: str, dtype) -> torch.Tensor:
    values = [torch.as_tensor(f[label]) for f in frames]
    out = torch.cat(values) if label in K.PER_ATOM_LABELS else torch.stack(values)
    return out.to(torch.float64 if label == K.ENERGY else dtype)


def reference_metrics(batches, reference: List[dict], symbols: List[str]) -> Dict[str, float]:
    """Metrics of the reference predictions against the label batches (collated from the same frames, in order,
    as ``evaluate`` saw them); a label the reference does not predict in every frame is left out."""
    acc = MetricAccumulator(symbols)
    start = 0
    for batch in batches:
        count = int(batch[K.NUM_ATOMS].shape[0])
        chunk = reference[start:start + count]
        start += count
        dtype = batch[K.POSITIONS].dtype
        pred = {label: _stack(chunk, label, dtype) for label in REPORT if all(label in f for f in chunk)}
        acc.update(pred, batch)
    return acc.compute()


def format_side_by_side(ours: Dict[str, float], theirs: Dict[str, float], names=("ferronn", "reference"),
                        title: str = "") -> str:
    """Rows of MAE and RMSE for both, with the ratio ours ÷ theirs of the MAE (below 1: ours is closer)."""
    units = {name: unit for name, unit, _ in REPORT.values()}
    order = [name for name, _, _ in REPORT.values()]
    rows = sorted({k[:-4] for k in ours if k.endswith("_mae")} | {k[:-4] for k in theirs if k.endswith("_mae")},
                  key=lambda k: (order.index(k.split("_")[0]) if k.split("_")[0] in order else 9, k.count("_"), k))
    width = max([len(r) for r in rows] + [8])

    a, b = (n[:21] for n in names)
    col = max(10, len(a) + 4, len(b) + 4)

    def cell(metrics, key):
        return f"{metrics[key]:>{col}.4g}" if key in metrics else f"{'-':>{col}}"

    lines = [title] if title else []
    lines.append(f"{'quantity':<{width}}  {'unit':<9} {a + ' MAE':>{col}} {'RMSE':>{col}} {b + ' MAE':>{col}} "
                 f"{'RMSE':>{col}} {'MAE ratio':>9}")
    for row in rows:
        mae = f"{row}_mae"
        ratio = (f"{ours[mae] / theirs[mae]:>9.3f}" if mae in ours and mae in theirs and theirs[mae] > 0
                 else f"{'-':>9}")
        lines.append(f"{row.replace('_', ' '):<{width}}  {units.get(row.split('_')[0], ''):<9} "
                     f"{cell(ours, mae)} {cell(ours, f'{row}_rmse')} {cell(theirs, mae)} "
                     f"{cell(theirs, f'{row}_rmse')} {ratio}")
    return "\n".join(lines)
