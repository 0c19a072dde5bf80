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
        _panel(ax, ref, pred, f"{name} ({plot_unit})", name, metrics, name, unit)
        ax.scatter(ref, pred, s=6, alpha=0.6)
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
        _panel(ax, ref[sel], pred[sel], f"Z* of {symbol} (e)", symbol, metrics, f"born_{symbol}", "e")
        ax.scatter(ref[sel & diagonal], pred[sel & diagonal], s=6, alpha=0.6, label="diagonal")
        ax.scatter(ref[sel & ~diagonal], pred[sel & ~diagonal], s=6, alpha=0.6, label="off-diagonal")
        ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path, title)


def _panel(ax, ref, pred, quantity, title, metrics, key, unit):
    """Identity line, axis labels, title and the MAE/RMSE of ``key`` in one parity panel."""
    lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=1)
    ax.set_xlabel(f"DFT {quantity}")
    ax.set_ylabel(f"model {quantity}")
    ax.set_title(title)
    ax.text(0.04, 0.96, f"MAE {metrics.get(key + '_mae', float('nan')):.3g} {unit}\n"
            f"RMSE {metrics.get(key + '_rmse', float('nan')):.3g} {unit}", transform=ax.transAxes, va="top",
            fontsize=9)


def _save(fig, path, title):
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path
