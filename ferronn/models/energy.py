"""The energy model: mace-torch's ScaleShiftMACE on the ferronn batch schema, float64 reference energies.

U = Σ_i [E0(Z_i) + s·ε_i + μ]  with ε_i MACE's per-atom interaction energy, s the force RMS scale and μ the
mean residual energy per atom. The reference energies E0 and the per-structure sums are kept in float64
whatever dtype the network runs in (a −1e5 eV total has a float32 spacing of 8 meV).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Dict, List, Optional

import numpy as np
import torch

from .. import keys as K
from ..keys import SHIFTS
from .autograd import energy_forces_stress, in_dtype
from . import receivers
from .messages import fast_messages


@dataclasses.dataclass
class EnergyModelConfig:
    """MACE hyperparameters (names as in mace-torch's ``mace_run_train``)."""

    r_max: float = 5.0  # Å
    num_channels: int = 32
    max_L: int = 1  # highest l of the hidden equivariant features
    correlation: int = 3  # body order - 1 of each product basis
    num_interactions: int = 2
    max_ell: int = 2  # highest l of the edge spherical harmonics
    num_radial_basis: int = 8
    num_cutoff_basis: int = 5
    MLP_irreps: str = "16x0e"
    radial_MLP: List[int] = dataclasses.field(default_factory=lambda: [64, 64, 64])
    gate: str = "silu"
    interaction: str = "RealAgnosticResidualInteractionBlock"
    interaction_first: str = "RealAgnosticInteractionBlock"
    use_reduced_cg: bool = False  # mace_run_train's default; faster here on CPU (measured)

    def hidden_irreps(self) -> str:
        from e3nn import o3

        irreps = (self.num_channels * o3.Irreps.spherical_harmonics(self.max_L)).sort()[0].simplify()
        return str(irreps)


def _import_mace():
    """Import mace (which also makes e3nn 0.4.4 importable under torch ≥ 2.6, see the brief)."""
    import mace.modules  # noqa: F401  (sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD; our loads pass weights_only=True)
    from mace.modules.symmetric_contraction import EmptyParam

    if "__deepcopy__" not in EmptyParam.__dict__:
        # mace marks contraction paths with no coupling (e.g. l=2 outputs from l<=1 inputs at correlation 1) with
        # EmptyParam, whose __new__ breaks Parameter.__deepcopy__; EMA and the exporter deep-copy the model.
        EmptyParam.__deepcopy__ = lambda self, memo: EmptyParam(self.data.clone())
    return mace.modules


class EnergyModel(torch.nn.Module):
    """Potential energy U(R) of periodic structures (eV), with forces and stress from ``models.autograd``."""

    kind = "energy"

    def __init__(self, config: EnergyModelConfig, atomic_numbers, reference_energies, energy_shift: float,
                 force_rms: float, avg_num_neighbors: float):
        super().__init__()
        modules = _import_mace()
        from e3nn import o3

        self.config = config
        self.atomic_numbers = [int(z) for z in atomic_numbers]
        self.r_max = float(config.r_max)
        # Python floats, turned into float64 tensors per device: a buffer would be cast by .to(float32).
        self.reference_energies = [float(e) for e in reference_energies]
        self._e0_cache: Dict[torch.device, torch.Tensor] = {}
        self.mace = modules.ScaleShiftMACE(
            r_max=config.r_max,
            num_bessel=config.num_radial_basis,
            num_polynomial_cutoff=config.num_cutoff_basis,
            max_ell=config.max_ell,
            interaction_cls=modules.interaction_classes[config.interaction],
            interaction_cls_first=modules.interaction_classes[config.interaction_first],
            num_interactions=config.num_interactions,
            num_elements=len(self.atomic_numbers),
            hidden_irreps=o3.Irreps(config.hidden_irreps()),
            MLP_irreps=o3.Irreps(config.MLP_irreps),
            atomic_energies=np.zeros(len(self.atomic_numbers)),  # E0 added in float64 below
            avg_num_neighbors=float(avg_num_neighbors),
            atomic_numbers=self.atomic_numbers,
            correlation=config.correlation,
            gate=modules.gate_dict[config.gate],
            radial_MLP=list(config.radial_MLP),
            atomic_inter_scale=float(force_rms),
            atomic_inter_shift=float(energy_shift),
            use_reduced_cg=config.use_reduced_cg,
        )
        fast_messages(self.mace)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _e0(self, device) -> torch.Tensor:
        if device not in self._e0_cache:
            self._e0_cache[device] = torch.tensor(self.reference_energies, dtype=torch.float64, device=device)
        return self._e0_cache[device]

    def energy(self, batch: Dict[str, torch.Tensor], nlocal: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Total energy (B,) and per-atom energy (N,), both float64 eV; needs ``shifts`` from models.autograd.
        With ``nlocal`` (one structure whose nodes 0..nlocal-1 are local, the rest ghosts): the per-atom energy
        (nlocal,) of the local atoms only, receivers pruned (``models.receivers``), and ``energy`` their sum."""
        species = batch[K.SPECIES]
        node_attrs = torch.nn.functional.one_hot(species, len(self.atomic_numbers)).to(self.dtype)
        prune = None if nlocal is None else receivers.plan(batch[K.EDGE_INDEX], species.shape[0], nlocal,
                                                           len(self.mace.interactions))
        node_energy = self._node_energy(batch[K.POSITIONS], node_attrs, batch[K.EDGE_INDEX], batch[SHIFTS], prune)
        if prune is not None:
            node_energy = node_energy + self._e0(species.device)[species.index_select(0, prune.local_nodes)]
            return {K.ENERGY: node_energy.sum()[None], K.NODE_ENERGY: node_energy}
        node_energy = node_energy + self._e0(species.device)[species]
        energy = torch.zeros(batch[K.PTR].shape[0] - 1, dtype=torch.float64, device=species.device)
        energy = energy.index_add(0, batch[K.BATCH], node_energy)
        return {K.ENERGY: energy, K.NODE_ENERGY: node_energy}

    def _node_energy(self, positions: torch.Tensor, node_attrs: torch.Tensor, edge_index: torch.Tensor,
                     shifts: torch.Tensor, prune: Optional[receivers.Plan]) -> torch.Tensor:
        """s·ε_i + μ (float64 eV, E0 not included) of every node, or of the local ones under ``prune``: the body
        of mace's ScaleShiftMACE.forward (mace-torch 0.3.16) for one head, no ZBL pair term and no extra
        embeddings (what EnergyModel builds), op for op, so that without pruning the numbers are mace's."""
        from mace.modules.utils import get_edge_vectors_and_lengths

        mace = self.mace
        edge_index, shifts = receivers.used_edges(edge_index, shifts, prune)
        vectors, lengths = get_edge_vectors_and_lengths(positions=positions, edge_index=edge_index, shifts=shifts)
        node_feats = mace.node_embedding(node_attrs)
        edge_attrs = mace.spherical_harmonics(vectors)
        edge_feats, cutoff = mace.radial_embedding(lengths, node_attrs, edge_index, mace.atomic_numbers)
        features = receivers.message_passing(mace.interactions, mace.products, node_attrs, node_feats, edge_attrs,
                                             edge_feats, cutoff, edge_index, prune)
        rows = features[-1].shape[0]
        arange = torch.arange(rows, device=node_attrs.device)
        heads = torch.zeros(rows, dtype=torch.int64, device=node_attrs.device)
        attrs = node_attrs if prune is None else node_attrs.index_select(0, prune.local_nodes)
        node_e0 = mace.atomic_energies_fn(attrs)[arange, heads]  # zeros: E0 is added in float64 by energy()
        node_es_list = [torch.zeros_like(node_e0)]  # mace's pair-repulsion slot
        for i, readout in enumerate(mace.readouts):
            node_es_list.append(readout(features[-1 if len(mace.readouts) == 1 else i], heads)[arange, heads])
        node_inter_es = mace.scale_shift(torch.sum(torch.stack(node_es_list, dim=0), dim=0), heads)
        return node_e0.clone().double() + node_inter_es.clone().double()

    def forward(self, batch: Dict[str, torch.Tensor], compute_forces: bool = True, compute_stress: bool = False,
                training: Optional[bool] = None) -> Dict[str, torch.Tensor]:
        """Energy (eV, float64), forces (eV/Å) and optionally stress (eV/Å³, ASE convention)."""
        training = self.training if training is None else training
        return energy_forces_stress(self.energy, in_dtype(batch, self.dtype), compute_forces, compute_stress, training)

    def hyperparameters(self) -> dict:
        """Everything needed to rebuild this model (plain types only: checkpoints load with weights_only)."""
        return {
            "config": dataclasses.asdict(self.config),
            "atomic_numbers": list(self.atomic_numbers),
            "reference_energies": list(self.reference_energies),
            "energy_shift": float(self.mace.scale_shift.shift.reshape(-1)[0]),
            "force_rms": float(self.mace.scale_shift.scale.reshape(-1)[0]),
            "avg_num_neighbors": float(self.mace.interactions[0].avg_num_neighbors),
        }

    @classmethod
    def from_hyperparameters(cls, hp: dict, dtype: torch.dtype = torch.float64) -> "EnergyModel":
        with default_dtype(dtype):
            model = cls(EnergyModelConfig(**hp["config"]), hp["atomic_numbers"], hp["reference_energies"],
                        hp["energy_shift"], hp["force_rms"], hp["avg_num_neighbors"])
        return model.to(dtype)

    @classmethod
    def from_stats(cls, config: EnergyModelConfig, stats, dtype: torch.dtype = torch.float64) -> "EnergyModel":
        with default_dtype(dtype):
            model = cls(config, stats.atomic_numbers, stats.reference_energies, stats.energy_shift,
                        stats.force_rms, stats.avg_num_neighbors)
        return model.to(dtype)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Build e3nn/MACE modules in ``dtype``: their constants (CG coefficients) are made in the default dtype,
    and a float32-built model cast to float64 would keep float32-rounded constants."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
