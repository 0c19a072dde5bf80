"""The shipped checkpoint loads (weights_only) and reproduces the test metrics recorded when it was made."""

from __future__ import annotations

import functools
import json

import pytest
import torch

import ferronn
from ferronn.data.datamodule import default_data_path
from ferronn.data.frames import KeyMap, read_frames
from ferronn.data.graph import SpeciesTable, collate, frame_to_graph
from ferronn.train.metrics import evaluate
from conftest import ROOT

PRETRAINED = ROOT / "checkpoints" / "batio3-qe-small"


def test_pretrained_reproduces_recorded_metrics():
    model = ferronn.load(PRETRAINED / "energy.ckpt", device="cpu")
    meta = model.checkpoint_metadata
    recorded = json.loads((PRETRAINED / "metrics.json").read_text())["test"]
    frames = read_frames(default_data_path(), KeyMap())
    species = SpeciesTable(model.atomic_numbers)
    graphs = [frame_to_graph(frames[i], species, model.r_max) for i in meta["split"]["test"]]
    loader = torch.utils.data.DataLoader(graphs, batch_size=8, collate_fn=functools.partial(collate, dtype=model.dtype))
    metrics, _ = evaluate(model, loader)
    assert metrics.keys() == recorded.keys()
    for key, value in recorded.items():
        assert metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    # A useful model, not just a loadable one: errors well below the spread of the data.
    assert recorded["forces_rmse"] < 100.0 and recorded["energy_mae"] < 5.0
