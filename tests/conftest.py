"""Shared fixtures: real frames (embedded QE set, ../shared when present) and a tiny MACE model."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
import torch

import ferronn.models  # noqa: F401  (warning filters)
from ferronn.data.datamodule import default_data_path
from ferronn.data.frames import KeyMap, read_frames
from ferronn.data.graph import SpeciesTable, collate, frame_to_graph
from ferronn.data.stats import compute_stats
from ferronn.models.energy import EnergyModel, EnergyModelConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("FERRONN_SHARED", ROOT.parent / "shared"))
ALLEGRO = SHARED / "data" / "batio3-allegro-pol" / "BaTiO3.xyz"
QE = SHARED / "data" / "batio3-qe" / "BaTiO3_qe_pbe.xyz"

#: Small enough for CI's 2 cores, rich enough to be a real MACE (2 interactions, l up to 2, correlation 2).
TINY = dict(r_max=4.5, num_channels=8, max_L=1, correlation=2, num_interactions=2, max_ell=2,
            num_radial_basis=6, radial_MLP=[16, 16])


def require_shared(path=ALLEGRO):
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (CI has ../shared beside the checkout)")
    return path


@pytest.fixture(scope="session")
def qe_frames():
    return read_frames(default_data_path(), KeyMap())


@pytest.fixture(scope="session")
def species():
    return SpeciesTable([8, 22, 56])


def build_model(frames, dtype=torch.float64, seed=0, **overrides):
    torch.manual_seed(seed)
    config = EnergyModelConfig(**{**TINY, **overrides})
    sp = SpeciesTable([8, 22, 56])
    graphs = [frame_to_graph(f, sp, config.r_max) for f in frames]
    model = EnergyModel.from_stats(config, compute_stats(frames, graphs, [8, 22, 56]), dtype)
    # An untrained MACE is nearly flat: scale its output so forces are O(1 eV/Å) for the identities tested.
    with torch.no_grad():
        model.mace.scale_shift.scale.mul_(300.0)
    return model.eval()


@pytest.fixture(scope="session")
def model(qe_frames):
    return build_model(qe_frames)


def make_batch(frames, species, r_max, dtype=torch.float64):
    return collate([frame_to_graph(f, species, r_max) for f in frames], dtype)


def distorted(frame, rng, amplitude=0.08):
    """A copy of ``frame`` with random displacements (Å) so forces are generic, not symmetry-zero."""
    out = dict(frame)
    out["positions"] = frame["positions"] + amplitude * rng.standard_normal(frame["positions"].shape)
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
