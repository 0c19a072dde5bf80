"""The Born-charge model: per-atom Z* (3×3, e) from an equivariant MACE-style network, exact acoustic sum rule.

Z*_κ = z_el(κ)·I + s·C(0e ⊕ 1e ⊕ 2e)_κ, then Z*_κ ← Z*_κ − (1/N_s) Σ_{λ∈s} Z*_λ per structure s, so
Σ_κ Z*_κ = 0 to round-off. z_el = ⟨tr Z*⟩/3 per element from the data (isotropic: anisotropic offsets would
break equivariance), s the RMS of the data's Z* − z_el·I, and C e3nn's own change of basis from the irreps
0e ⊕ 1e ⊕ 2e (trace, antisymmetric, symmetric traceless) to a 3×3 Cartesian tensor (``e3nn.io.CartesianTensor``).

MACE's hidden features (0e, 1o, 2e) have no 1e channel, so the antisymmetric part is built from cross products
of pairs of *different* 1o channels (e3nn's ElementwiseTensorProduct 1o ⊗ 1o → 1e; v×v = 0). Index convention:
Z[a][b] = ∂F_b/∂E_a (row = field/dipole, column = displacement/force).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import torch

from .. import keys as K
from ..errors import ConfigError
from ..data.graph import cartesian_shifts
from . import receivers
from .energy import _import_mace, default_dtype
from .messages import fast_messages


@dataclasses.dataclass
class BornModelConfig:
    """Hyperparameters of the Born-charge network (MACE blocks; names as in EnergyModelConfig)."""

    r_max: float = 5.0  # Å
    num_channels: int = 32
    max_L: int = 2  # hidden features up to l=2: the 2e part of Z* needs them
    correlation: int = 2
    num_interactions: int = 1  # one layer keeps the forward at ~0.17x the energy model's step (benchmarks/)
    max_ell: int = 2
    num_radial_basis: int = 8
    num_cutoff_basis: int = 5
    radial_MLP: List[int] = dataclasses.field(default_factory=lambda: [32, 32])
    interaction: str = "RealAgnosticResidualInteractionBlock"
    interaction_first: str = "RealAgnosticInteractionBlock"
    use_reduced_cg: bool = False
    num_vector_pairs: int = 4  # pairs of 1o channels whose cross products make the 1e (antisymmetric) part
    num_tensor_pairs: int = 0  # pairs of 2e channels whose commutators also make 1e (needed where every polar
                               # vector vanishes, e.g. an A or B site with rotated octahedra around it)

    def hidden_irreps(self) -> str:
        from e3nn import o3

        return str((self.num_channels * o3.Irreps.spherical_harmonics(self.max_L)).sort()[0].simplify())


class BornModel(torch.nn.Module):
    """Born effective charges Z* (N, 3, 3) in e for every atom of a batch; Σ_κ Z*_κ = 0 per structure."""

    kind = "born"

    def __init__(self, config: BornModelConfig, atomic_numbers, born_offsets, born_scale: float,
                 avg_num_neighbors: float):
        super().__init__()
        modules = _import_mace()
        from e3nn import o3
        from e3nn.io import CartesianTensor

        self.config = config
        self.atomic_numbers = [int(z) for z in atomic_numbers]
        self.r_max = float(config.r_max)
        n_el = len(self.atomic_numbers)
        hidden = o3.Irreps(config.hidden_irreps())
        if hidden.count(o3.Irrep(2, 1)) == 0 or hidden.count(o3.Irrep(1, -1)) == 0:
            raise ConfigError(f"born_model.max_L: the Born model needs hidden 1o and 2e features (got {hidden}); "
                              "use max_L >= 2")
        node_attr_irreps = o3.Irreps(f"{n_el}x0e")
        scalars = o3.Irreps(f"{hidden.count(o3.Irrep(0, 1))}x0e")
        sh_irreps = o3.Irreps.spherical_harmonics(config.max_ell)
        self.node_embedding = modules.LinearNodeEmbeddingBlock(node_attr_irreps, scalars)
        self.radial_embedding = modules.RadialEmbeddingBlock(
            r_max=config.r_max, num_bessel=config.num_radial_basis, num_polynomial_cutoff=config.num_cutoff_basis)
        edge_feats_irreps = o3.Irreps(f"{self.radial_embedding.out_dim}x0e")
        self.spherical_harmonics = o3.SphericalHarmonics(sh_irreps, normalize=True, normalization="component")
        interaction_irreps = (sh_irreps * config.num_channels).sort()[0].simplify()
        self.interactions = torch.nn.ModuleList()
        self.products = torch.nn.ModuleList()
        self.readouts = torch.nn.ModuleList()
        k, k2 = config.num_vector_pairs, config.num_tensor_pairs
        readout_irreps = o3.Irreps(f"1x0e + {2 * k}x1o + 1x2e" + (f" + {2 * k2}x2e" if k2 else ""))
        for layer in range(config.num_interactions):
            first = layer == 0
            cls = modules.interaction_classes[config.interaction_first if first else config.interaction]
            inter = cls(node_attrs_irreps=node_attr_irreps, node_feats_irreps=scalars if first else hidden,
                        edge_attrs_irreps=sh_irreps, edge_feats_irreps=edge_feats_irreps,
                        target_irreps=interaction_irreps, hidden_irreps=hidden,
                        avg_num_neighbors=float(avg_num_neighbors), radial_MLP=list(config.radial_MLP))
            self.interactions.append(fast_messages(inter))
            self.products.append(modules.EquivariantProductBasisBlock(
                node_feats_irreps=inter.target_irreps, target_irreps=hidden, correlation=config.correlation,
                num_elements=n_el, use_sc=not first or "Residual" in config.interaction_first,
                use_reduced_cg=config.use_reduced_cg))
            self.readouts.append(o3.Linear(hidden, readout_irreps))
        self.cross = o3.ElementwiseTensorProduct(f"{k}x1o", f"{k}x1o", ["1e"])
        self.commutator = o3.ElementwiseTensorProduct(f"{k2}x2e", f"{k2}x2e", ["1e"]) if k2 else None
        self.mix_1e = o3.Linear(o3.Irreps(f"{k + k2}x1e"), o3.Irreps("1x1e"))
        self.register_buffer("change_of_basis", CartesianTensor("ij").to_cartesian(torch.eye(9)))  # (9, 3, 3)
        self.register_buffer("born_offsets", torch.tensor([float(z) for z in born_offsets]))
        self.register_buffer("born_scale", torch.tensor(float(born_scale)))
        self.register_buffer("z_table", torch.tensor(self.atomic_numbers, dtype=torch.int64))
        self._k, self._k2 = k, k2

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Z* (N, 3, 3) in e, ``born_charges`` key; needs no gradients (MD calls it under no_grad)."""
        born = self.unconstrained(batch)
        return {K.BORN_CHARGES: acoustic_sum_rule(born, batch[K.BATCH], batch[K.NUM_ATOMS])}

    def unconstrained(self, batch: Dict[str, torch.Tensor], nlocal: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Per-atom Z* (N, 3, 3) in e before the acoustic sum rule: local in each atom's neighbourhood, so a
        domain-decomposed engine (the LAMMPS plugin) evaluates it per rank and subtracts the global mean itself.
        With ``nlocal`` (one structure, nodes 0..nlocal-1 local): Z* (nlocal, 3, 3) of the local atoms, receivers
        pruned (``models.receivers``)."""
        from mace.modules.utils import get_edge_vectors_and_lengths

        species = batch[K.SPECIES]
        dtype = self.dtype
        positions = batch[K.POSITIONS].to(dtype)
        cell = batch[K.CELL].to(dtype)
        node_attrs = torch.nn.functional.one_hot(species, len(self.atomic_numbers)).to(dtype)
        prune = None if nlocal is None else receivers.plan(batch[K.EDGE_INDEX], species.shape[0], nlocal,
                                                           len(self.interactions))
        shifts = cartesian_shifts(batch[K.UNIT_SHIFTS].to(dtype), cell, batch[K.BATCH], batch[K.EDGE_INDEX])
        edge_index, shifts = receivers.used_edges(batch[K.EDGE_INDEX], shifts, prune)
        vectors, lengths = get_edge_vectors_and_lengths(positions, edge_index, shifts)
        edge_attrs = self.spherical_harmonics(vectors)
        edge_feats, cutoff = self.radial_embedding(lengths, node_attrs, edge_index, self.z_table)
        node_feats = self.node_embedding(node_attrs)
        features = receivers.message_passing(self.interactions, self.products, node_attrs, node_feats, edge_attrs,
                                             edge_feats, cutoff, edge_index, prune)
        out = 0.0
        for readout, feats in zip(self.readouts, features):
            out = out + readout(feats)
        if prune is not None:
            species = species.index_select(0, prune.local_nodes)
        k, k2 = self._k, self._k2
        scalar, vectors_1o, tensor_2e = out[:, :1], out[:, 1:1 + 6 * k], out[:, 1 + 6 * k:6 + 6 * k]
        axial = [self.cross(vectors_1o[:, :3 * k], vectors_1o[:, 3 * k:])]
        if k2:  # the readout lays its irreps out as listed: the 2k2 extra 2e channels come last
            pairs = out[:, 6 + 6 * k:]
            axial.append(self.commutator(pairs[:, :5 * k2], pairs[:, 5 * k2:]))
        antisym = self.mix_1e(torch.cat(axial, dim=-1))
        irreps = torch.cat([scalar, antisym, tensor_2e], dim=-1)
        eye = torch.eye(3, dtype=dtype, device=positions.device)
        born = self.born_scale * torch.einsum("ni,ijk->njk", irreps, self.change_of_basis)
        return born + self.born_offsets[species][:, None, None] * eye

    def hyperparameters(self) -> dict:
        return {
            "config": dataclasses.asdict(self.config),
            "atomic_numbers": list(self.atomic_numbers),
            "born_offsets": [float(z) for z in self.born_offsets.tolist()],
            "born_scale": float(self.born_scale),
            "avg_num_neighbors": float(self.interactions[0].avg_num_neighbors),
        }

    @classmethod
    def from_hyperparameters(cls, hp: dict, dtype: torch.dtype = torch.float64) -> "BornModel":
        with default_dtype(dtype):
            model = cls(BornModelConfig(**hp["config"]), hp["atomic_numbers"], hp["born_offsets"], hp["born_scale"],
                        hp["avg_num_neighbors"])
        return model.to(dtype)

    @classmethod
    def from_stats(cls, config: BornModelConfig, stats, dtype: torch.dtype = torch.float64) -> "BornModel":
        with default_dtype(dtype):
            model = cls(config, stats.atomic_numbers, stats.born_offsets, stats.born_scale, stats.avg_num_neighbors)
        return model.to(dtype)


def acoustic_sum_rule(born: torch.Tensor, batch: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
    """Subtract each structure's mean Z* so Σ_κ Z*_κ = 0 exactly; rotation-equivariant (a mean of tensors)."""
    total = torch.zeros((num_atoms.shape[0], 3, 3), dtype=born.dtype, device=born.device).index_add(0, batch, born)
    mean = total / num_atoms.to(born.dtype)[:, None, None]
    return born - mean[batch]
