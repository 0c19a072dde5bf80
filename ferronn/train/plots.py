"""Parity plots (predicted vs DFT) written as PNG beside the checkpoint."""

from __future__ import annotations

from ..atomic import atomic_path
from .metrics import REPORT

#: eV → plotted unit for each label.
_SCALE = {"energy": (1.0, "eV/atom"), "forces": (1.0, "eV/Å"), "stress": (1000.0, "meV/Å³")}


def parity_plot(values: dict, metrics: dict, path: str, title: str = "") -> str:
    """One panel per label (reference on x, prediction on y) with MAE/RMSE in the corner; atomic write."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label in REPORT if label in values]
    fig, axes = plt.subplots(1, max(len(labels), 1), figsize=(4.2 * max(len(labels), 1), 4.0), squeeze=False)
    for ax, label in zip(axes[0], labels):
        name, unit = REPORT[label]
        scale, plot_unit = _SCALE[name]
        ref, pred = values[label]
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
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path
