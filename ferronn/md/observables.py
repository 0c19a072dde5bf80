"""On-the-fly averages with block-averaging error bars, and the dielectric tensor from both estimators.

Formulas (docs/conventions.md), per replica of volume Ω at temperature T, M in e·Å, E in V/Å:
    fluctuation (zero field):  ε_ab = ε∞_ab + (⟨M_a M_b⟩ − ⟨M_a⟩⟨M_b⟩) / (ε0 Ω k_B T)
    finite field (±E along b): ε_ab = ε∞_ab + (⟨P_a⟩₊ − ⟨P_a⟩₋) / (2 ε0 |E|)
Error bars: samples are grouped into blocks of ``block`` samples; means get the standard error of the block
means, the covariance a leave-one-block-out jackknife. Everything stays on the device until it is read.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from ..errors import ConfigError, DataError, where
from ..units import EPSILON0_E_PER_V_A, KB_EV_PER_K


class BlockAverage:
    """Running mean of a per-replica tensor x (B, ...) with block means for error bars.

    Memory stays bounded however long the run: once ``max_blocks`` blocks are held, adjacent blocks are merged
    (the block length doubles), which only makes the blocks less correlated."""

    def __init__(self, block: int, max_blocks: int = 256):
        if block < 1:
            raise ValueError(f"block length must be >= 1 sample, got {block}")
        if max_blocks < 4 or max_blocks % 2:
            raise ValueError(f"max_blocks must be even and >= 4, got {max_blocks}")
        self.block, self.max_blocks = block, max_blocks
        self.count = 0
        self._sum = None
        self._blocks: List[torch.Tensor] = []

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().to(torch.float64)
        self._sum = x.clone() if self._sum is None else self._sum + x
        self.count += 1
        if self.count % self.block == 0:
            self._blocks.append(self._sum.clone())  # running totals; block means are their differences
            if len(self._blocks) == self.max_blocks:  # keep every second boundary: pairs of blocks merge
                self._blocks = self._blocks[1::2]
                self.block *= 2

    def block_means(self) -> torch.Tensor:
        """(n_blocks, B, ...) means of each completed block."""
        if not self._blocks:
            return torch.zeros((0,))
        totals = torch.stack(self._blocks)
        previous = torch.cat([torch.zeros_like(totals[:1]), totals[:-1]])
        return (totals - previous) / self.block

    def mean(self) -> torch.Tensor:
        return self._sum / self.count

    def error(self) -> torch.Tensor:
        """Standard error of the mean from the block means (NaN with fewer than 2 blocks)."""
        means = self.block_means()
        if means.shape[0] < 2:
            return torch.full_like(self.mean(), float("nan"))
        return means.std(dim=0, unbiased=True) / means.shape[0] ** 0.5

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {"block": torch.tensor(self.block), "count": torch.tensor(self.count),
                "sum": self._sum if self._sum is not None else torch.zeros(0),
                "blocks": torch.stack(self._blocks) if self._blocks else torch.zeros(0)}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        self.block, self.count = int(state["block"]), int(state["count"])
        self._sum = state["sum"] if self.count else None
        self._blocks = list(state["blocks"]) if state["blocks"].numel() else []


def jackknife_covariance(m_blocks: torch.Tensor, mm_blocks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Covariance ⟨MMᵀ⟩ − ⟨M⟩⟨M⟩ᵀ (B, 3, 3) and its jackknife error from block means (n, B, 3), (n, B, 3, 3)."""
    n = m_blocks.shape[0]
    m, mm = m_blocks.mean(0), mm_blocks.mean(0)
    full = mm - torch.einsum("bi,bj->bij", m, m)
    if n < 2:
        return full, torch.full_like(full, float("nan"))
    m_loo = (m * n - m_blocks) / (n - 1)
    mm_loo = (mm * n - mm_blocks) / (n - 1)
    loo = mm_loo - torch.einsum("kbi,kbj->kbij", m_loo, m_loo)
    err = ((n - 1) / n * ((loo - loo.mean(0)) ** 2).sum(0)).sqrt()
    return full, err


def field_pairs(fields: torch.Tensor, temperatures: torch.Tensor, tol: float = 1e-12) -> List[Tuple[int, int, int]]:
    """Replica pairs (plus, minus, axis b) with fields +E e_b and −E e_b at the same temperature."""
    f, t = fields.detach().cpu(), temperatures.detach().cpu()
    pairs = []
    for i in range(f.shape[0]):
        nonzero = (f[i].abs() > tol).nonzero().flatten().tolist()
        if len(nonzero) != 1 or f[i, nonzero[0]] <= 0:
            continue
        for j in range(f.shape[0]):
            if j != i and torch.allclose(f[j], -f[i], atol=tol) and abs(float(t[j] - t[i])) < 1e-9:
                pairs.append((i, j, nonzero[0]))
                break
    return pairs


def electronic_permittivity(polarizability: torch.Tensor, volume: float) -> torch.Tensor:
    """ε∞ = 1 + sym(α)/(ε0 Ω) (3, 3) from a cell's clamped-ion polarizability α = ∂M/∂E (3, 3) in e·Å²/V and its
    volume Ω in Å³ (α is symmetric in exact DFT; a finite-field one is not quite)."""
    alpha = polarizability.to(torch.float64).reshape(3, 3)
    return torch.eye(3, dtype=torch.float64) + 0.5 * (alpha + alpha.T) / (EPSILON0_E_PER_V_A * volume)


def data_eps_inf(path: str) -> torch.Tensor:
    """Mean electronic ε∞ (3, 3) over the frames of ``path``: their DFPT ``epsilon_inf`` (atoms.info, 3×3) or, in
    a Berry-phase set, ε∞ from their ``polarizability`` (3×3, e·Å²/V); errors name the file and the frame."""
    from ..data.frames import read_structures

    values = []
    for atoms, source in zip(*read_structures(path, ":", key="structure")):
        key = next((k for k in ("epsilon_inf", "polarizability") if k in atoms.info), None)
        if key is None:
            continue
        value = torch.as_tensor(atoms.info[key], dtype=torch.float64).reshape(-1)
        if value.numel() != 9 or not bool(torch.isfinite(value).all()):
            raise DataError(f"{where(path, source)}: info key '{key}' must be 9 finite numbers (3x3), got {value.tolist()}")
        values.append(value.reshape(3, 3) if key == "epsilon_inf" else electronic_permittivity(value, atoms.get_volume()))
    if not values:
        raise ConfigError(f"md recipe: dielectric.eps_inf 'data' needs frames of '{path}' with info 'epsilon_inf' or "
                          "'polarizability' (3x3); it has none: give eps_inf as a number or a 3x3 list")
    return torch.stack(values).mean(0)


class Dielectric:
    """ε from zero-field replicas (fluctuations of M) and from ±E replica pairs (mean P), accumulated per sample.

    ``fields`` (B, 3) are the replicas' field amplitudes; ±E pairs count only when the fields are constant.
    """

    def __init__(self, fields: torch.Tensor, temperatures: torch.Tensor, eps_inf, block: int,
                 constant_field: bool = True, nonuniform: Optional[torch.Tensor] = None):
        """``nonuniform`` (B,) bool: replicas under a non-uniform field, kept out of both estimators."""
        skip = set() if nonuniform is None else set(torch.as_tensor(nonuniform).nonzero().flatten().tolist())
        self.zero = [i for i in range(fields.shape[0]) if not bool(fields[i].abs().gt(0).any()) and i not in skip]
        self.pairs = [p for p in (field_pairs(fields, temperatures) if constant_field else [])
                      if p[0] not in skip and p[1] not in skip]
        self.fields, self.temperatures = fields.detach().clone(), temperatures.detach().clone()
        self.eps_inf = torch.as_tensor(eps_inf, dtype=torch.float64).expand(3, 3).clone()
        self.m = BlockAverage(block)
        self.mm = BlockAverage(block)
        self.polarization = BlockAverage(block)
        self.volume = BlockAverage(block)

    def add(self, dipole: torch.Tensor, volume: torch.Tensor) -> None:
        self.m.add(dipole)
        self.mm.add(torch.einsum("bi,bj->bij", dipole, dipole))
        self.polarization.add(dipole / volume[:, None])
        self.volume.add(volume)

    def fluctuation(self) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """ε (3, 3) and its error, averaged over the zero-field replicas (None without any or < 2 blocks)."""
        if not self.zero or len(self.m.block_means()) < 2:
            return None
        idx = torch.tensor(self.zero)
        cov, err = jackknife_covariance(self.m.block_means()[:, idx], self.mm.block_means()[:, idx])
        omega = self.volume.mean()[idx].to(cov.device)
        kT = (KB_EV_PER_K * self.temperatures[idx].to(torch.float64)).to(cov.device)
        scale = 1.0 / (EPSILON0_E_PER_V_A * omega * kT)[:, None, None]
        eps = self.eps_inf.to(cov.device) + (cov * scale).mean(0)
        return eps, ((err * scale) ** 2).sum(0).sqrt() / len(self.zero)

    def finite_field(self, amplitude: Optional[float] = None) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """ε (3, 3) and its error from the ±E pairs of field ``amplitude`` V/Å (default: the largest one, so
        ±E/2 replicas in the same batch are a separate linearity check); columns without a pair are NaN."""
        if not self.pairs or len(self.polarization.block_means()) < 2:
            return None
        amplitudes = [float(self.fields[plus, b]) for plus, _, b in self.pairs]
        amplitude = max(amplitudes) if amplitude is None else amplitude
        pairs = [pair for pair, a in zip(self.pairs, amplitudes) if abs(a - amplitude) <= 1e-9 * amplitude]
        if not pairs:
            return None
        p_mean, p_err = self.polarization.mean(), self.polarization.error()
        eps = torch.full((3, 3), float("nan"), dtype=torch.float64)
        var = torch.zeros((3, 3), dtype=torch.float64)
        count = torch.zeros(3, dtype=torch.float64)
        sums = torch.zeros((3, 3), dtype=torch.float64)
        for plus, minus, b in pairs:
            column = (p_mean[plus] - p_mean[minus]).cpu() / (2 * EPSILON0_E_PER_V_A * amplitude)
            sums[:, b] += column
            var[:, b] += ((p_err[plus] ** 2 + p_err[minus] ** 2).cpu()) / (2 * EPSILON0_E_PER_V_A * amplitude) ** 2
            count[b] += 1
        have = count > 0
        eps[:, have] = self.eps_inf[:, have] + sums[:, have] / count[have]
        err = torch.full((3, 3), float("nan"), dtype=torch.float64)
        err[:, have] = var[:, have].sqrt() / count[have]
        return eps, err

    def state_dict(self) -> dict:
        return {name: getattr(self, name).state_dict() for name in ("m", "mm", "polarization", "volume")}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            getattr(self, name).load_state_dict(value)

