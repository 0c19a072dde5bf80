"""Shared builders of the tests: paths to the real data, tiny real models, batches, MD recipes.

Test modules import from here (never from one another); ``conftest.py`` holds only the pytest fixtures.
"""

from __future__ import annotations

import os
import pathlib

import ase
import pytest
import torch

import ferronn.models  # noqa: F401  (warning filters)
from ferronn.data.graph import SpeciesTable, collate, frame_to_graph
from ferronn.data.stats import born_statistics, compute_stats
from ferronn.md.config import MDConfig
from ferronn.models.born import BornModel, BornModelConfig
from ferronn.models.energy import EnergyModel, EnergyModelConfig, default_dtype

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("FERRONN_SHARED", ROOT.parent / "shared"))
ALLEGRO = SHARED / "data" / "batio3-allegro-pol" / "BaTiO3.xyz"
QE = SHARED / "data" / "batio3-qe" / "BaTiO3_qe_pbe.xyz"

#: Small enough for CI's 2 cores, rich enough to be a real MACE (2 interactions, l up to 2, correlation 2).
TINY = dict(r_max=4.5, num_channels=8, max_L=1, correlation=2, num_interactions=2, max_ell=2,
            num_radial_basis=6, radial_MLP=[16, 16])
#: The Born model's counterpart: l = 2 features (Z*'s 2e part), vector and tensor pairs (its 1e part).
SMALL_BORN = dict(r_max=4.5, num_channels=8, max_L=2, correlation=2, num_interactions=2, max_ell=2,
                  radial_MLP=[16, 16], num_vector_pairs=2, num_tensor_pairs=2)

#: ``--set`` items that make ``ferronn train`` build the TINY energy model and a small Born model.
TINY_SET = [f"model.{k}={v}" for k, v in TINY.items() if k != "radial_MLP"] + ["model.radial_MLP=[16,16]"]
TINY_SET += [f"born_model.{k}={v}" for k, v in TINY.items() if k not in ("radial_MLP", "max_L", "correlation")]
TINY_SET += ["born_model.radial_MLP=[16,16]", "born_model.max_L=2", "born_model.correlation=1",
             "born_model.num_vector_pairs=2"]


def require_shared(path=ALLEGRO):
    """``path`` under ../shared, or skip the test with the reason (CI has ../shared beside the checkout)."""
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (CI has ../shared beside the checkout)")
    return path


def build_model(frames, dtype=torch.float64, seed=0, **overrides):
    """An untrained TINY MACE energy model with the statistics of ``frames``, outputs scaled to O(1 eV/Å)."""
    torch.manual_seed(seed)
    config = EnergyModelConfig(**{**TINY, **overrides})
    sp = SpeciesTable([8, 22, 56])
    graphs = [frame_to_graph(f, sp, config.r_max) for f in frames]
    model = EnergyModel.from_stats(config, compute_stats(frames, graphs, [8, 22, 56]), dtype)
    # An untrained MACE is nearly flat: scale its output so forces are O(1 eV/Å) for the identities tested.
    with torch.no_grad():
        model.mace.scale_shift.scale.mul_(300.0)
    return model.eval()


def build_born(frames, dtype=torch.float64, seed=0, **overrides):
    """An untrained SMALL_BORN Born-charge model with the per-element offsets and scale of ``frames``."""
    torch.manual_seed(seed)
    offsets, scale = born_statistics(frames, [8, 22, 56])
    with default_dtype(dtype):
        model = BornModel(BornModelConfig(**{**SMALL_BORN, **overrides}), [8, 22, 56], offsets, scale, 30.0)
    return model.to(dtype).eval()


def make_batch(frames, species, r_max, dtype=torch.float64):
    """One batch of ``frames`` with neighbour lists within ``r_max`` (Å)."""
    return collate([frame_to_graph(f, species, r_max) for f in frames], dtype)


def distorted(frame, rng, amplitude=0.08):
    """A copy of ``frame`` with random displacements (Å) so forces are generic, not symmetry-zero."""
    out = dict(frame)
    out["positions"] = frame["positions"] + amplitude * rng.standard_normal(frame["positions"].shape)
    return out


def frame_atoms(frame):
    """The periodic ase.Atoms of a frame dict."""
    return ase.Atoms(numbers=frame["atomic_numbers"], positions=frame["positions"], cell=frame["cell"], pbc=True)


def md_config(**kw):
    """An MD recipe for tests: CPU, float64, no output files, no steps unless given."""
    base = dict(steps=0, equilibration_steps=0, log_every=10 ** 9, trajectory_every=0, restart_every=0,
                device="cpu", dtype="float64")
    return MDConfig(**{**base, **kw})
