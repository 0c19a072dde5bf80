"""Born-path consistency loss: Z* integrated between two nearby frames must give their Berry-phase dipole change.

For frames i, j of one cell with the same species and every atom within ``max_du`` Å of its partner (minimum
image), the trapezoid rule ΔM_a ≈ Σ_κ ½(Z*_κ(i) + Z*_κ(j))[a][b] Δu_κb (error O(Δu³)) ties the model's Z* to the
DFT dipoles M (e·Å), which are known only modulo the polarization quantum e·R (R a lattice vector). The residual
r = ΔM − Σ ½(Z*ᵢ+Z*ⱼ)·Δu is folded into one branch and scaled by |Δu| (the norm of all 3N displacements), so the
term |r|²/|Δu|² is in e² like the Z* loss. ``benchmarks/born_data_consistency.py`` measures the data's own value.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import torch

from .. import keys as K
from ..data.graph import batch_to, collate
from ..errors import ConfigError


@dataclasses.dataclass
class Pair:
    """Two frames (positions ``i``, ``j`` in a graph list) and what the loss needs of them."""

    i: int
    j: int
    du: torch.Tensor  # (N, 3) Å, minimum-image displacement r_j − r_i
    dm: torch.Tensor  # (3,) e·Å, M_j − M_i from the DFT dipoles (any branch: the residual is folded)
    cell: torch.Tensor  # (3, 3) Å, rows are lattice vectors (the quanta e·R)


def find_pairs(graphs: List[dict], max_du: float) -> List[Pair]:
    """Pairs of ``graphs`` carrying a polarization, with equal species, equal cells and every atom within
    ``max_du`` Å of its partner (minimum image)."""
    pairs = []
    for i, a in enumerate(graphs):
        for j in range(i + 1, len(graphs)):
            b = graphs[j]
            if K.POLARIZATION not in a or K.POLARIZATION not in b:
                continue
            if a[K.ATOMIC_NUMBERS].shape != b[K.ATOMIC_NUMBERS].shape or not torch.equal(a[K.ATOMIC_NUMBERS],
                                                                                        b[K.ATOMIC_NUMBERS]):
                continue
            if not torch.allclose(a[K.CELL], b[K.CELL], rtol=0, atol=1e-6):  # another cell: another quantum
                continue
            cell = a[K.CELL].double()
            du = (b[K.POSITIONS] - a[K.POSITIONS]).double()
            du = du - torch.round(du @ torch.linalg.inv(cell)) @ cell
            if float(du.abs().max()) > max_du:
                continue
            pairs.append(Pair(i, j, du, (b[K.POLARIZATION] - a[K.POLARIZATION]).double(), cell))
    return pairs


def path_residual(born_i, born_j, du, dm, cell) -> torch.Tensor:
    """r (3,) e·Å = ΔM − Σ_κ ½(Z*ᵢ+Z*ⱼ)·Δu, folded by the lattice vectors of ``cell`` into −½..½ quantum."""
    residual = dm - torch.einsum("kab,kb->a", 0.5 * (born_i + born_j), du)
    with torch.no_grad():  # the branch index is a step function: no gradient through it
        quanta = torch.round(residual @ torch.linalg.inv(cell))
    return residual - quanta @ cell


def path_term(born_i, born_j, pair: Pair) -> torch.Tensor:
    """|r|²/|Δu|² (e²) of one pair from the two frames' Z* (N, 3, 3)."""
    dtype = born_i.dtype
    du, dm, cell = (t.to(born_i.device, dtype) for t in (pair.du, pair.dm, pair.cell))
    residual = path_residual(born_i, born_j, du, dm, cell)
    return (residual**2).sum() / (du**2).sum()


class BornPath:
    """The pairs among one split's graphs, and which batch structures belong to them (matched by frame index
    and identical positions, so frames of another file with the same index are never mistaken for them)."""

    def __init__(self, graphs: List[dict], max_du: float):
        self.graphs = graphs
        self.pairs = find_pairs(graphs, max_du)
        self.partners: Dict[int, list] = {}  # graph position → [(pair, partner position)]
        for pair in self.pairs:
            self.partners.setdefault(pair.i, []).append((pair, pair.j))
            self.partners.setdefault(pair.j, []).append((pair, pair.i))
        self._by_frame: Dict[int, list] = {}
        for pos in self.partners:
            self._by_frame.setdefault(int(graphs[pos][K.FRAME_INDEX]), []).append(pos)

    def __len__(self):
        return len(self.pairs)

    def members(self, batch) -> List[tuple]:
        """[(structure b of the batch, graph position)] for the batch's structures that belong to a pair."""
        out = []
        ptr, positions = batch[K.PTR], batch[K.POSITIONS]
        for b, frame in enumerate(batch[K.FRAME_INDEX].tolist()):
            for pos in self._by_frame.get(int(frame), ()):
                own = positions[ptr[b]:ptr[b + 1]]
                mine = self.graphs[pos][K.POSITIONS]
                if own.shape == mine.shape and torch.equal(own, mine.to(own.device, own.dtype)):
                    out.append((b, pos))
                    break
        return out

    def step_loss(self, born_model, batch, born, epoch: int) -> Optional[torch.Tensor]:
        """Mean |r|²/|Δu|² over one pair per paired structure of ``batch`` (Z* ``born`` already predicted there),
        its partner cycling with ``epoch`` so every pair is visited; None when the batch holds no paired frame."""
        rows = []
        for b, pos in self.members(batch):
            options = self.partners[pos]
            pair, partner = options[epoch % len(options)]
            rows.append((b, pair, partner))
        if not rows:
            return None
        ptr = batch[K.PTR]
        other = collate([self.graphs[partner] for _, _, partner in rows], batch[K.POSITIONS].dtype)
        other = batch_to(other, batch[K.POSITIONS].device)
        born_other = born_model(other)[K.BORN_CHARGES]  # after the acoustic sum rule, as MD uses it
        terms = [path_term(born[ptr[b]:ptr[b + 1]], born_other[other[K.PTR][k]:other[K.PTR][k + 1]], pair)
                 for k, (b, pair, _) in enumerate(rows)]
        return torch.stack(terms).mean()

    def loss_from(self, born_by_position: Dict[int, torch.Tensor]) -> Optional[torch.Tensor]:
        """Mean |r|²/|Δu|² over the pairs whose two frames' Z* are in ``born_by_position`` (validation)."""
        terms = [path_term(born_by_position[p.i], born_by_position[p.j], p) for p in self.pairs
                 if p.i in born_by_position and p.j in born_by_position]
        return torch.stack(terms).mean() if terms else None


def check_recipe(config) -> None:
    """A recipe with ``train.loss.born_path_weight`` > 0 must fit a Born model and name the dipole key."""
    loss = config.train.loss
    if loss.born_path_weight < 0 or loss.born_path_max_du <= 0:
        raise ConfigError(f"train.loss.born_path_weight {loss.born_path_weight} / born_path_max_du "
                          f"{loss.born_path_max_du}: expected a weight >= 0 and a positive distance (Å)")
    if loss.born_path_weight == 0:
        return
    if "born" not in config.model_configs():
        raise ConfigError(f"train.loss.born_path_weight > 0 constrains the Born model, but task is "
                          f"'{config.task}'; expected task 'born' or 'both' (or the weight 0)")
    if config.train.devices * config.train.num_nodes > 1:  # a term logged on some ranks only would stall the sync
        raise ConfigError("train.loss.born_path_weight > 0 with DDP (train.devices/num_nodes > 1) is not supported; "
                          "expected one process (the term is small: its pairs are a few frames)")
    if not config.data.keys.polarization:
        raise ConfigError("train.loss.born_path_weight > 0 needs data.keys.polarization: the key of each frame's "
                          "Berry-phase cell dipole (e·Å), e.g. 'polarization' for the allegro-pol BaTiO3 set")


def training_pairs(datamodule, loss) -> Optional[BornPath]:
    """The pairs of TRAINING frames for the loss (None when its weight is 0); none found is a ConfigError."""
    if loss.born_path_weight == 0:
        return None
    path = BornPath(datamodule.graphs["train"], loss.born_path_max_du)
    carried = sum(K.POLARIZATION in g for g in datamodule.graphs["train"])
    if not carried:
        raise ConfigError(f"train.loss.born_path_weight > 0: no training frame of '{datamodule.path}' carries a "
                          f"polarization under data.keys.polarization = '{datamodule.config.keys.polarization}'; "
                          "expected the key of each frame's cell dipole (e·Å) in calc results, info or arrays")
    if not len(path):
        raise ConfigError(
            f"train.loss.born_path_weight > 0: no two of the {len(datamodule.graphs['train'])} training frames of "
            f"'{datamodule.path}' ({carried} with a polarization) share species and cell with every atom within "
            f"train.loss.born_path_max_du = {loss.born_path_max_du} Å of its partner; expected at least one such "
            "pair (raise born_path_max_du, or set the weight to 0)")
    return path


def validation_pairs(datamodule, loss) -> Optional[BornPath]:
    """Pairs within the validation split alone, for the val_born_path_loss metric (None if there are none)."""
    if not datamodule.config.keys.polarization:
        return None
    path = BornPath(datamodule.graphs["val"], loss.born_path_max_du)
    return path if len(path) else None


def pair_table(path: BornPath) -> str:
    """One line per pair: frame indices and max |Δu| (Å), for the training log."""
    lines = []
    for p in path.pairs:
        i, j = (int(path.graphs[k][K.FRAME_INDEX]) for k in (p.i, p.j))
        lines.append(f"  frames {i}, {j}: max |du| {float(p.du.abs().max()):.3f} A, |du| {float(p.du.norm()):.3f} A")
    return "\n".join(lines)

