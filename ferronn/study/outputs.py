"""What every study leaves behind: the ledger of finished units (``study.json``) and the resumable MD run of one
unit (a temperature, a cycle) in its own folder. CSV tables and PNG figures come from ``ferronn.outputs`` (shared
with active learning, which must not import the studies); they are re-exported here for the study modules."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, Optional

from ..atomic import write_json
from ..errors import ConfigError
from ..md.config import MDConfig
from ..md.engine import Simulation
from ..outputs import figure, read_csv, save_figure, write_csv  # noqa: F401  (the studies import them from here)


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
            # A setting the saved study predates (a newer ferronn added it) counts as its default: such a study
            # ran with the default, so it resumes; a setting since removed must match None to resume.
            defaults = _md_defaults()
            changed = sorted(k for k in set(saved["md"]) | set(self.md)
                             if _with_default(saved["md"].get(k, defaults.get(k)), defaults.get(k)) != self.md.get(k))
            if changed:
                raise ConfigError(f"'{out}' holds a study run with other md settings ({', '.join(changed)}); "
                                  "choose another out or restore them")
            self.units = saved["units"]

    def get(self, key: str) -> Optional[dict]:
        return self.units.get(key)

    def record(self, key: str, result: dict) -> None:
        self.units[key] = result
        write_json(self.path, {"study": self.study, "md": self.md, "units": self.units})


def _md_defaults() -> dict:
    """MDConfig's default value of every setting (as ``dataclasses.asdict`` writes them to study.json)."""
    out = {}
    for f in dataclasses.fields(MDConfig):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return out


def _with_default(saved, default):
    """A saved nested section (a dict) completed by the default's keys that it predates; anything else as saved."""
    return {**default, **saved} if isinstance(saved, dict) and isinstance(default, dict) else saved


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
