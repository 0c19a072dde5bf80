"""What every study leaves behind, written atomically: the ledger of finished units (``study.json``), CSV tables
and PNG figures; and the resumable MD run of one unit (a temperature, a cycle) in its own folder."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from typing import Dict, List, Optional

from ..atomic import atomic_path, write_json
from ..errors import ConfigError
from ..md.config import MDConfig
from ..md.engine import Simulation


class Ledger:
    """Results of the finished units of one study, saved after each unit so a killed study redoes none of them.

    A study folder belongs to one MD setup: resuming with another ``md`` section is refused (the finished units
    would not be comparable); the study's own settings may change (e.g. more temperatures appended)."""

    def __init__(self, out: str, study: str, md: MDConfig):
        self.path = os.path.join(out, "study.json")
        self.study, self.md = study, dataclasses.asdict(md)
        self.units: Dict[str, dict] = {}
        if os.path.exists(self.path):
            with open(self.path) as handle:
                saved = json.load(handle)
            if saved.get("study") != study:
                raise ConfigError(f"'{out}' holds a '{saved.get('study')}' study, not '{study}': choose another out")
            changed = sorted(k for k in set(saved["md"]) | set(self.md) if saved["md"].get(k) != self.md.get(k))
            if changed:
                raise ConfigError(f"'{out}' holds a study run with other md settings ({', '.join(changed)}); "
                                  "choose another out or restore them")
            self.units = saved["units"]

    def get(self, key: str) -> Optional[dict]:
        return self.units.get(key)

    def record(self, key: str, result: dict) -> None:
        self.units[key] = result
        write_json(self.path, {"study": self.study, "md": self.md, "units": self.units})


def resumed_simulation(md: MDConfig, models, atoms, folder: str) -> Simulation:
    """The MD of one unit in ``folder``, continued from its restart file when a killed run left one."""
    sim = Simulation(md, *models, atoms, out=folder)
    if os.path.exists(os.path.join(folder, "restart.pt")):
        sim.load_restart()
    return sim


def run_unit(md: MDConfig, models, atoms, folder: str, steps: Optional[int] = None) -> Simulation:
    """Run (or finish, after a kill) the MD of one unit in ``folder``: ``steps`` more steps, default the recipe's
    equilibration + production minus what its restart file says is done."""
    sim = resumed_simulation(md, models, atoms, folder)
    sim.run(steps, progress=False)
    return sim


def write_csv(path: str, header: List[str], rows: List[list]) -> None:
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
    import matplotlib.pyplot as plt

    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format="png")
    plt.close(fig)


def figure(rows: int = 1, cols: int = 1, size=(6.0, 4.2)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
