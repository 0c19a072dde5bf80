"""Active-learning recipe (``ferronn active --config recipes/batio3_active.yaml``): plain dataclasses, with the
exploration MD as an ``md`` section (any MD recipe key, ../md/config.py), as the study recipes have."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

from ..config import load_config
from ..errors import ConfigError
from ..label.config import LabelConfig
from ..md.config import CHOICES as MD_CHOICES
from ..md.config import MDConfig


def explore_md() -> MDConfig:
    """The exploration MD's defaults: a cubic 5-atom BaTiO3 cell (a = 4.00 Å), one replica per temperature × field,
    all in one batch, Langevin, 2000 steps a round. ``energy``/``born`` are not read: the last round's committee
    drives the MD; ``out`` and ``log_every`` are set per round (``round<r>/md``, ``explore.check_every``), and round
    r explores with seed ``md.seed + r``."""
    return MDConfig(structure="../shared/data/batio3-qe/BaTiO3_qe_pbe.xyz", index=1,
                    temperatures=[100.0, 300.0, 600.0], fields=[[0.0, 0.0, 0.0]], ensemble="nvt_langevin",
                    dt_fs=1.0, steps=2000, equilibration_steps=0, trajectory_every=0, restart_every=0)


@dataclasses.dataclass
class ExploreConfig:
    """How the exploration MD (the ``md`` section) is sampled."""

    check_every: int = 20  # steps between committee-spread checks (each check is a candidate frame)


@dataclasses.dataclass
class SelectConfig:
    """Thresholds of the committee spread above which a frame goes to DFT (<= 0 disables a criterion)."""

    force_std: float = 0.10  # eV/Å, max over atoms of |σ_F|
    born_std: float = 0.10  # e, max over atoms and components of σ_Z*
    min_spacing_steps: int = 200  # within one replica
    max_per_round: int = 5
    force_std_max: float = 0.0  # eV/Å: above it a frame is failed exploration, not labelled (<= 0: no bound)
    born_std_max: float = 0.0  # e, likewise
    min_distance: float = 0.0  # Å: frames with two atoms closer than this are not labelled (<= 0: no floor);
    # the MD guard's own min_distance (0.5 Å) stops every replica, so the bond-length floor for DFT lives here


@dataclasses.dataclass
class ActiveConfig:
    out: str = "runs/active"
    seed_data: str = "../shared/data/batio3-qe/BaTiO3_qe_pbe.xyz"  # labelled frames of round 0
    test_data: Optional[str] = None  # fixed held-out set (frames never selected by the loop); required
    train_recipe: Optional[str] = None  # training recipe (default: ferronn.train's defaults)
    train_set: Dict[str, Any] = dataclasses.field(default_factory=dict)  # dotted overrides of that recipe
    committee: int = 3
    epochs: int = 150  # round 0, from scratch
    retrain_epochs: int = 60  # later rounds, warm-started from the previous round's members
    max_rounds: int = 5  # rounds after round 0
    dft_budget: int = 15  # DFT calculations in all (failed ones count: they cost the same)
    md: MDConfig = dataclasses.field(default_factory=explore_md)
    explore: ExploreConfig = dataclasses.field(default_factory=ExploreConfig)
    select: SelectConfig = dataclasses.field(default_factory=SelectConfig)
    label: LabelConfig = dataclasses.field(default_factory=LabelConfig)

    def validate(self) -> "ActiveConfig":
        def bad(key, expected, value):
            raise ConfigError(f"active recipe: key '{key}' must be {expected}, got {value!r}")

        if not self.test_data:
            bad("test_data", "a labelled file of held-out frames (the loop's fixed test set)", self.test_data)
        if self.committee < 2:
            bad("committee", "an integer >= 2 (a spread needs two members)", self.committee)
        for key in ("epochs", "retrain_epochs", "max_rounds"):
            if getattr(self, key) < 1:
                bad(key, "an integer >= 1", getattr(self, key))
        if self.dft_budget < 0:
            bad("dft_budget", ">= 0", self.dft_budget)
        self.md.validate("active recipe, section md")
        md, e = self.md, self.explore
        if not isinstance(md.index, int):
            bad("md.index", "one frame number (every replica starts from it)", md.index)
        if md.steps < 1 or e.check_every < 1 or e.check_every > md.steps:
            bad("explore.check_every", f"between 1 and md.steps ({md.steps})", e.check_every)
        if self.select.force_std <= 0 and self.select.born_std <= 0:
            bad("select", "at least one threshold > 0 (force_std or born_std)", dataclasses.asdict(self.select))
        if self.select.max_per_round < 1:
            bad("select.max_per_round", "an integer >= 1", self.select.max_per_round)
        self.label.validate()
        return self


CHOICES = {f"md.{k}": v for k, v in MD_CHOICES.items()}


def load_active_config(path: Optional[str] = None, overrides: Optional[dict] = None) -> ActiveConfig:
    return load_config(ActiveConfig, path, overrides, CHOICES).validate()
