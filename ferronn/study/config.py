"""Study recipes: an ``md`` section (any MD recipe key, ../md/config.py) and one section per study."""

from __future__ import annotations

import dataclasses
from typing import List, Optional

from ..config import load_config
from ..errors import ConfigError
from ..md.config import CHOICES as MD_CHOICES
from ..md.config import MDConfig


@dataclasses.dataclass
class DielectricStudy:
    temperatures: List[float] = dataclasses.field(default_factory=lambda: [200.0, 300.0, 400.0])  # K
    curie_weiss: bool = False  # fit ε = C / (T − T0) to the component below over T >= curie_weiss_min_T
    curie_weiss_component: str = "zz"  # xx | yy | zz | trace (the mean of the diagonal)
    curie_weiss_min_T: float = 0.0  # K


@dataclasses.dataclass
class HysteresisStudy:
    axis: str = "z"  # x | y | z
    shape: str = "triangle"  # triangle | sine | cosine
    amplitude: float = 0.0  # E_max in V/Å; 0: find the switching field with a ramp first, E_max = factor × it
    period_fs: float = 4000.0
    # Sweeps: every (temperature, period) pair is one resumable unit with its own loop; empty lists: md.temperatures
    # in one batch and period_fs (one unit, the single-loop layout). Plots E_c(T) and E_c(period).
    temperatures: List[float] = dataclasses.field(default_factory=list)  # K
    periods_fs: List[float] = dataclasses.field(default_factory=list)
    cycles: int = 3
    discard_cycles: int = 1  # leading cycles left out of P_r, E_c and their error bars
    ramp_rate: float = 2e-5  # V/Å per fs of the preliminary ramp (applied along −axis: against a +axis P)
    ramp_max: float = 1.0  # V/Å: no switching below this is an error
    ramp_factor: float = 1.5
    switch_drop: float = 30.0  # μC/cm²: the ramp has switched once P along the axis fell by this much
    sample_every: int = 5  # steps between (E, P) samples


@dataclasses.dataclass
class PhasesStudy:
    temperatures: List[float] = dataclasses.field(default_factory=lambda: [50.0, 150.0, 250.0, 350.0, 450.0])  # K,
    # in ramp order: ascending heats, descending cools; each temperature starts from the previous one's last frame
    pseudo_cubic: List[int] = dataclasses.field(default_factory=lambda: [1, 1, 1])  # perovskite cells per lattice vector
    polar_threshold: float = 5.0  # μC/cm²: a component above it is polar
    equal_tolerance: float = 0.35  # polar components within this fraction of the largest count as equal


@dataclasses.dataclass
class SpectrumStudy:
    max_lag_fs: float = 1000.0  # correlation time kept (Hann window over it)
    max_wavenumber: float = 1000.0  # cm⁻¹ plotted
    sample_every: int = 2  # steps between dipole samples


@dataclasses.dataclass
class StudyConfig:
    out: str = "runs/study"
    md: MDConfig = dataclasses.field(default_factory=MDConfig)
    dielectric: DielectricStudy = dataclasses.field(default_factory=DielectricStudy)
    hysteresis: HysteresisStudy = dataclasses.field(default_factory=HysteresisStudy)
    phases: PhasesStudy = dataclasses.field(default_factory=PhasesStudy)
    spectrum: SpectrumStudy = dataclasses.field(default_factory=SpectrumStudy)

    def validate(self, source: str = "study recipe") -> "StudyConfig":
        self.md.validate(f"{source}, section md")
        checks = [
            ("dielectric.temperatures", bool(self.dielectric.temperatures) and min(self.dielectric.temperatures) > 0,
             "a non-empty list of temperatures > 0 K"),
            ("hysteresis.period_fs", self.hysteresis.period_fs > 0, "> 0"),
            ("hysteresis.temperatures", all(t >= 0 for t in self.hysteresis.temperatures), "a list of temperatures >= 0 K"),
            ("hysteresis.periods_fs", all(p > 0 for p in self.hysteresis.periods_fs), "a list of periods > 0 fs"),
            ("hysteresis.cycles", self.hysteresis.cycles > self.hysteresis.discard_cycles >= 0,
             "more than hysteresis.discard_cycles (>= 0)"),
            ("hysteresis.amplitude", self.hysteresis.amplitude >= 0, ">= 0 (0: found by a ramp)"),
            ("hysteresis.ramp_rate", self.hysteresis.ramp_rate > 0, "> 0"),
            ("hysteresis.sample_every", self.hysteresis.sample_every >= 1, ">= 1"),
            ("phases.temperatures", bool(self.phases.temperatures) and min(self.phases.temperatures) > 0,
             "a non-empty list of temperatures > 0 K"),
            ("phases.pseudo_cubic", len(self.phases.pseudo_cubic) == 3 and min(self.phases.pseudo_cubic) >= 1,
             "three positive integers"),
            ("spectrum.max_lag_fs", self.spectrum.max_lag_fs > 0, "> 0"),
            ("spectrum.sample_every", self.spectrum.sample_every >= 1, ">= 1"),
        ]
        for key, ok, expected in checks:
            if not ok:
                raise ConfigError(f"{source}: key '{key}' must be {expected}")
        return self


CHOICES = {**{f"md.{k}": v for k, v in MD_CHOICES.items()},
           "dielectric.curie_weiss_component": ("xx", "yy", "zz", "trace"),
           "hysteresis.axis": ("x", "y", "z"), "hysteresis.shape": ("triangle", "sine", "cosine")}


def load_study_config(path: Optional[str] = None, overrides: Optional[dict] = None) -> StudyConfig:
    """Study recipe from YAML with dotted overrides (``--set md.steps=500``); strict about keys and types."""
    source = f"study recipe '{path}'" if path else "study recipe"
    return load_config(StudyConfig, path, overrides, CHOICES).validate(source)
