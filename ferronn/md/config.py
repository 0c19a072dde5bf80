"""MD recipe: plain dataclasses read from YAML (``python -m ferronn.md --config recipes/Y.yaml``).

Replicas are the product temperatures × fields × copies; with ``dielectric.finite_field`` each temperature also
gets replicas at ±E along x, y and z (E = ``dielectric.field``), run in the same batch.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Union

from ..config import load_config
from ..errors import ConfigError
from ..models.compile import BACKENDS

ENSEMBLES = ("nve", "nvt_langevin", "nvt_nose_hoover", "npt", "damped")


@dataclasses.dataclass
class DielectricConfig:
    fluctuation: bool = True  # ε from the dipole fluctuations of the zero-field replicas
    finite_field: bool = False  # add ±E replicas along x, y, z per temperature
    field: float = 0.005  # V/Å, amplitude of the ±E replicas
    linearity_check: bool = False  # also ±E/2 replicas: ε at |E|/2 must agree with ε at |E| (linear response)
    # electronic ε∞ added to both estimators: a number (isotropic), a 3×3 list, or 'data': the mean over the frames
    # of ``structure`` of their DFPT ``epsilon_inf`` or, from a Berry-phase set, 1 + α/(ε0 Ω) of their ``polarizability``
    eps_inf: Union[float, List[List[float]], str] = 1.0
    block: int = 50  # samples per block for the error bars (doubled whenever 256 blocks are held: bounded memory)


@dataclasses.dataclass
class MDConfig:
    energy: str = "checkpoints/batio3-allegro-pol/energy.ckpt"
    born: Optional[str] = "checkpoints/batio3-allegro-pol/born.ckpt"
    structure: str = "../shared/data/batio3-allegro-pol/BaTiO3.xyz"
    index: Union[int, List[int]] = 0  # frame of ``structure``; a list: replica b starts from frame index[b % len]
    supercell: List[int] = dataclasses.field(default_factory=lambda: [1, 1, 1])
    ensemble: str = "nvt_langevin"
    temperatures: List[float] = dataclasses.field(default_factory=lambda: [300.0])  # K
    fields: List[List[float]] = dataclasses.field(default_factory=lambda: [[0.0, 0.0, 0.0]])  # V/Å
    field_kind: str = "constant"  # constant | sine | cosine | triangle | ramp (E·t/period): fields are the amplitudes
    field_period_fs: float = 0.0
    # Non-uniform fields (docs/field-md.md), added to each replica's field and following field_kind's time shape:
    # regions [{field: [Ex, Ey, Ez], indices: [0, 1, ...]} or {field: [...], axis: x|y|z, lo: 0.0, hi: 0.5}] (a slab
    # lo <= s < hi of the fractional coordinate, decided on the starting structure), and a per-atom N×3 array of the
    # structure file (atoms.arrays key, e.g. extxyz 'efield:R:3'), all in V/Å.
    field_regions: List[dict] = dataclasses.field(default_factory=list)
    field_array: str = ""
    polarization_layers: str = ""  # '' | x | y | z: per-layer local polarization to layers.csv every log_every
    pressure_gpa: float = 0.0  # NPT target (hydrostatic)
    copies: int = 1  # independent replicas per (temperature, field)
    dt_fs: float = 1.0
    steps: int = 1000
    equilibration_steps: int = 200  # not averaged
    friction_per_fs: float = 0.01  # Langevin γ (and the damping of the athermal 'damped' ensemble)
    tau_t_fs: float = 100.0  # Nosé–Hoover time constant
    tau_p_fs: float = 1000.0  # barostat time constant
    bulk_modulus_gpa: float = 150.0  # sets the barostat compressibility β_T = 1/B
    skin: float = 0.5  # Å, Verlet skin of the neighbour lists
    neighbour_check_every: int = 1  # steps between neighbour-list checks (each check reads one flag to the host)
    # Steps between Z* evaluations (the same stale Z* in forces and ΔM). k > 1 makes M drift: on BaTiO3 at 300 K,
    # dt 2 fs, k = 2 gives ~1 e·Å/ps and shifts Var(M) by 25% in 1 ps for a 1.09x faster step
    # (benchmarks/born_every.py); keep 1 wherever M, P or ε matter.
    born_every: int = 1
    guard_every: int = 10  # steps between checks for NaN/inf and atoms closer than min_distance (0: never)
    min_distance: float = 0.5  # Å
    sample_every: int = 1  # steps between samples of the averages and ε
    log_every: int = 10
    trajectory_every: int = 100
    restart_every: int = 500
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    cpu_heap_allocations: bool = True  # CPU: big buffers stay on glibc's heap, never trimmed (no per-step page faults)
    dtype: str = "float64"
    compile: bool = False  # torch.compile the models (ferronn.models.compile): minutes of compiling, then faster on GPUs
    compile_backend: str = "inductor"  # inductor | aot_eager (no code generation: for checking) | cudagraphs
    cueq: bool = False  # energy model on cuEquivariance kernels (ferronn.models.cueq; pip install 'ferronn[cueq]')
    seed: int = 0
    out: str = "md_run"
    dielectric: DielectricConfig = dataclasses.field(default_factory=DielectricConfig)

    def validate(self, source: str = "md recipe") -> "MDConfig":
        """Values that parse but make no physical sense raise ConfigError naming the key."""
        def bad(key, expected, value):
            raise ConfigError(f"{source}: key '{key}' must be {expected}, got {value!r}")

        if not self.temperatures or min(self.temperatures) < 0:
            bad("temperatures", "a non-empty list of temperatures >= 0 K", self.temperatures)
        if not self.fields or any(len(f) != 3 for f in self.fields):
            bad("fields", "a non-empty list of [Ex, Ey, Ez] lists in V/Å", self.fields)
        if len(self.supercell) != 3 or min(self.supercell) < 1:
            bad("supercell", "three positive integers", self.supercell)
        if isinstance(self.index, list) and not self.index:
            bad("index", "a frame number or a non-empty list of them", self.index)
        for key in ("dt_fs", "tau_t_fs", "tau_p_fs", "bulk_modulus_gpa"):
            if not getattr(self, key) > 0:
                bad(key, "> 0", getattr(self, key))
        for key in ("copies", "born_every", "sample_every", "neighbour_check_every"):
            if getattr(self, key) < 1:
                bad(key, "an integer >= 1", getattr(self, key))
        for key in ("steps", "equilibration_steps", "skin", "friction_per_fs", "guard_every", "min_distance",
                    "log_every", "trajectory_every", "restart_every", "field_period_fs"):
            if getattr(self, key) < 0:
                bad(key, ">= 0", getattr(self, key))
        if self.field_kind != "constant" and not self.field_period_fs > 0:
            bad("field_period_fs", f"> 0 for field_kind '{self.field_kind}'", self.field_period_fs)
        if self.field_regions:
            from ..local_field import parse_regions

            parse_regions(self.field_regions, f"{source}: field_regions")
        if self.polarization_layers not in ("", "x", "y", "z"):
            bad("polarization_layers", "'' (off), 'x', 'y' or 'z'", self.polarization_layers)
        if self.compile and self.cueq:
            bad("compile", "false when cueq is true (compiling rebuilds the e3nn model; use one of them)", True)
        eps_inf = self.dielectric.eps_inf
        if isinstance(eps_inf, str) and eps_inf != "data" or isinstance(eps_inf, list) and (
                len(eps_inf) != 3 or any(not isinstance(row, list) or len(row) != 3 for row in eps_inf)):
            bad("dielectric.eps_inf", "a number, a 3x3 list or 'data'", eps_inf)
        if self.dielectric.block < 1:
            bad("dielectric.block", "an integer >= 1", self.dielectric.block)
        if self.dielectric.finite_field and not self.dielectric.field > 0:
            bad("dielectric.field", "> 0 V/Å when dielectric.finite_field is true", self.dielectric.field)
        return self


CHOICES = {"ensemble": ENSEMBLES, "field_kind": ("constant", "sine", "cosine", "triangle", "ramp"),
           "dtype": ("float32", "float64"), "compile_backend": BACKENDS}


def load_md_config(path: Optional[str] = None, overrides: Optional[dict] = None) -> MDConfig:
    """MD recipe from YAML with dotted overrides; unknown keys and wrong types name the key."""
    return load_config(MDConfig, path, overrides, CHOICES).validate(f"md recipe '{path}'" if path else "md recipe")
