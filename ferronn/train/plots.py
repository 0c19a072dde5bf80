"""Parity plots (predicted vs DFT) written as PNG beside the checkpoints: E/F/σ, and Z* per element."""

from __future__ import annotations

from ..atomic import atomic_path
from .metrics import REPORT

#: eV → plotted unit for each label.
_SCALE = {"energy": (1.0, "eV/atom"), "forces": (1.0, "eV/Å"), "stress": (1000.0, "meV/Å³"), "born": (1.0, "e")}


def parity_plot(values: dict, metrics: dict, path: str, title: str = "") -> str:
    """One panel per label (reference on x, prediction on y) with MAE/RMSE in the corner; atomic write."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label in REPORT if label in values and REPORT[label][0] != "born"]
    fig, axes = plt.subplots(1, max(len(labels), 1), figsize=(4.2 * max(len(labels), 1), 4.0), squeeze=False)
    for ax, label in zip(axes[0], labels):
        name, unit, _ = REPORT[label]
        scale, plot_unit = _SCALE[name]
        ref, pred, _ = values[label]
        ref, pred = ref * scale, pred * scale
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=1)
        ax.scatter(ref, pred, s=6, alpha=0.6)
        ax.set_xlabel(f"DFT {name} ({plot_unit})")
        ax.set_ylabel(f"model {name} ({plot_unit})")
        ax.set_title(name)
        ax.text(0.04, 0.96, f"MAE {metrics.get(name + '_mae', float('nan')):.3g} {unit}\n"
                f"RMSE {metrics.get(name + '_rmse', float('nan')):.3g} {unit}",
                transform=ax.transAxes, va="top", fontsize=9)
    return _save(fig, path, title)


def born_parity_plot(values: tuple, symbols, metrics: dict, path: str, title: str = "") -> str:
    """Z* parity, one panel per element (all 9 components; diagonal and off-diagonal in two colours)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ref, pred, species = values
    component = np.arange(ref.size) % 9
    diagonal = np.isin(component, (0, 4, 8))
    fig, axes = plt.subplots(1, len(symbols), figsize=(4.2 * len(symbols), 4.0), squeeze=False)
    for s, (ax, symbol) in enumerate(zip(axes[0], symbols)):
        sel = species == s
        if not sel.any():
            ax.set_visible(False)
            continue
        lo, hi = float(min(ref[sel].min(), pred[sel].min())), float(max(ref[sel].max(), pred[sel].max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=1)
        ax.scatter(ref[sel & diagonal], pred[sel & diagonal], s=6, alpha=0.6, label="diagonal")
        ax.scatter(ref[sel & ~diagonal], pred[sel & ~diagonal], s=6, alpha=0.6, label="off-diagonal")
        ax.set_xlabel(f"DFT Z* of {symbol} (e)")
        ax.set_ylabel(f"model Z* of {symbol} (e)")
        ax.set_title(symbol)
        ax.text(0.04, 0.96, f"MAE {metrics.get(f'born_{symbol}_mae', float('nan')):.3g} e\n"
                f"RMSE {metrics.get(f'born_{symbol}_rmse', float('nan')):.3g} e",
                transform=ax.transAxes, va="top", fontsize=9)
        ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path, title)


def _save(fig, path, title):
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path
