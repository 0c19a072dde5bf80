"""Result files: CSV tables and PNG figures, written atomically (studies, active learning)."""

from __future__ import annotations

import csv
from typing import Dict, List

from .atomic import atomic_path


def write_csv(path: str, header: List[str], rows: List[list]) -> None:
    """A CSV table with one header row at ``path``; readers never see a half-written file."""
    with atomic_path(path, ".csv") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)


def read_csv(path: str) -> Dict[str, List[float]]:
    """{column: values} of a CSV written by write_csv (numbers as floats, the rest as text)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = {}
    for key in (rows[0].keys() if rows else []):
        values = [r[key] for r in rows]
        try:
            columns[key] = [float(v) for v in values]
        except ValueError:
            columns[key] = values
    return columns


def save_figure(fig, path: str) -> None:
    """``fig`` as a 150-dpi PNG at ``path`` (atomically), then closed."""
    import matplotlib.pyplot as plt

    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format="png")
    plt.close(fig)


def figure(rows: int = 1, cols: int = 1, size=(6.0, 4.2)):
    """(fig, axes[rows][cols]) on the non-interactive Agg backend; ``size`` in inches per panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
