"""Checkpoint format: bitwise round trip, weights_only loading, refusal of pickle payloads (after import mace)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile

import pytest
import torch

import ferronn
from ferronn import keys as K
from ferronn.errors import CheckpointError
from ferronn.models import checkpoint
from helpers import ROOT, distorted, make_batch


def test_round_trip_is_bitwise(tmp_path, model, qe_frames, species, rng):
    path = tmp_path / "energy.ckpt"
    checkpoint.save(model, path, {"note": "test"})
    loaded = ferronn.load(path)
    batch = make_batch([distorted(f, rng) for f in qe_frames[:4]], species, model.r_max)
    a = model(batch, compute_stress=True)
    b = loaded(batch, compute_stress=True)
    for key in (K.ENERGY, K.FORCES, K.STRESS):
        assert torch.equal(a[key], b[key]), key
    assert loaded.checkpoint_metadata == {"note": "test"}
    payload = torch.load(path, weights_only=True)
    assert payload["species"] == [8, 22, 56] and payload["r_max"] == model.r_max
    assert payload["units"]["energy"] == "eV" and payload["ferronn_version"] == ferronn.__version__


def test_float32_load_of_float64_checkpoint(tmp_path, model, qe_frames, species):
    path = tmp_path / "energy.ckpt"
    checkpoint.save(model, path)
    m32 = ferronn.load(path, dtype=torch.float32)
    assert m32.dtype == torch.float32
    out = m32(make_batch(qe_frames[:2], species, model.r_max, torch.float32))
    ref = model(make_batch(qe_frames[:2], species, model.r_max))
    assert torch.allclose(out[K.ENERGY], ref[K.ENERGY], atol=1e-3)


def test_not_a_checkpoint_and_wrong_kind(tmp_path, model):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="junk.ckpt"):
        ferronn.load(junk)
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(CheckpointError, match="not a ferronn checkpoint"):
        ferronn.load(plain)
    good = tmp_path / "energy.ckpt"
    checkpoint.save(model, good)
    with pytest.raises(CheckpointError, match="expected 'born'"):
        ferronn.load(good, kind="born")
    with pytest.raises(CheckpointError, match="no such file"):
        ferronn.load(tmp_path / "missing.ckpt")


PAYLOAD = """
import os, sys, torch
import mace  # sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for the process
assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") == "1"
import ferronn
from ferronn.errors import CheckpointError
marker, path = sys.argv[1], sys.argv[2]
try:
    ferronn.load(path)
except CheckpointError as exc:
    print("REFUSED", exc)
print("MARKER_EXISTS" if os.path.exists(marker) else "MARKER_ABSENT")
"""


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow  # subprocess
def test_pickle_payload_is_refused_after_import_mace(tmp_path, model):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    payload = checkpoint.read.__globals__["FORMAT"]
    torch.save({"format": payload, "kind": "energy", "evil": _Evil(str(marker))}, path)
    assert zipfile.is_zipfile(path)
    out = subprocess.run([sys.executable, "-c", PAYLOAD, str(marker), str(path)], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert "REFUSED" in out.stdout, out.stdout + out.stderr
    assert "pickled Python objects" in out.stdout
    assert "MARKER_ABSENT" in out.stdout and not marker.exists()
    # Sanity: the payload is real — an unsafe load would have run it.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
