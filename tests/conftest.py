"""pytest fixtures: real frames (the embedded QE set), the species table, a tiny MACE model, an RNG.

Builders and paths live in helpers.py; they are re-exported here for test files that still import them from
conftest (new tests should import helpers).
"""

from __future__ import annotations

import numpy as np
import pytest

from ferronn.data.datamodule import default_data_path
from ferronn.data.frames import KeyMap, read_frames
from ferronn.data.graph import SpeciesTable
from helpers import (ALLEGRO, QE, ROOT, SHARED, TINY, build_model, distorted, make_batch,  # noqa: F401
                     require_shared)


@pytest.fixture(scope="session")
def qe_frames():
    return read_frames(default_data_path(), KeyMap())


@pytest.fixture(scope="session")
def species():
    return SpeciesTable([8, 22, 56])


@pytest.fixture(scope="session")
def model(qe_frames):
    return build_model(qe_frames)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
