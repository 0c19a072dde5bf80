"""The ferronn checkpoint: weights + hyperparameters + species + cutoff + units + version, no pickled code.

A checkpoint is a dict of tensors and plain Python values, saved with ``torch.save`` and loaded only with
``torch.load(..., weights_only=True)`` — explicitly, because ``import mace`` sets
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for the whole process and that variable only changes loads that leave
``weights_only`` unset. A file carrying a pickled object (a code payload) is refused before anything runs.
Files are written atomically (temporary file in the same folder, then rename).
"""

from __future__ import annotations

import os
import pickle
from typing import Optional

import torch

from .._version import __version__
from ..atomic import atomic_path
from ..errors import CheckpointError
from ..units import UNIT_SYSTEM

FORMAT = "ferronn-checkpoint"
FORMAT_VERSION = 1

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def model_classes() -> dict:
    """Model kinds a checkpoint may hold, by their ``kind`` string."""
    from .born import BornModel
    from .energy import EnergyModel

    return {EnergyModel.kind: EnergyModel, BornModel.kind: BornModel}


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in _DTYPES.items()}[dtype]


def atomic_torch_save(obj, path) -> None:
    """torch.save to ``path`` without ever leaving a partial file there."""
    with atomic_path(path, ".ckpt") as tmp:
        torch.save(obj, tmp)


def save(model, path, metadata: Optional[dict] = None) -> None:
    """Write ``model`` (an EnergyModel or a BornModel) as a ferronn checkpoint at ``path``."""
    hp = model.hyperparameters()
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ferronn_version": __version__,
        "kind": model.kind,
        "units": dict(UNIT_SYSTEM),
        "dtype": dtype_name(model.dtype),
        "species": list(model.atomic_numbers),
        "r_max": float(model.r_max),
        "hyperparameters": hp,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    atomic_torch_save(payload, path)


def read(path) -> dict:
    """Load a checkpoint's dict safely (weights_only=True) and check it is a ferronn checkpoint."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint '{path}': no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint '{path}': refused, it holds pickled Python objects beyond tensors and plain "
            f"containers (possibly code); a ferronn checkpoint never does. Nothing from it was run. ({exc})"
        ) from None
    except Exception as exc:  # not a zip/torch file, truncated, ...
        raise CheckpointError(
            f"checkpoint '{path}': not a readable torch checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint '{path}': not a ferronn checkpoint (no 'format': '{FORMAT}' entry); "
            "a Lightning training checkpoint is exported with `python -m ferronn.train` at the end of a run"
        )
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint '{path}': format version {payload['format_version']} is newer than this ferronn "
            f"({__version__}) reads ({FORMAT_VERSION}); upgrade ferronn"
        )
    if payload.get("units") != UNIT_SYSTEM:
        raise CheckpointError(f"checkpoint '{path}': units {payload.get('units')} differ from {UNIT_SYSTEM}")
    for key in ("kind", "hyperparameters", "state_dict", "species", "r_max", "dtype"):
        if key not in payload:
            raise CheckpointError(f"checkpoint '{path}': key '{key}' is missing (tampered or truncated file)")
    return payload


def load_checkpoint(path, device=None, dtype=None, kind: Optional[str] = None):
    """Rebuild the model of the ferronn checkpoint file ``path`` (eval mode) on ``device`` in ``dtype`` (default: as
    saved); ``kind`` ('energy' or 'born') makes a checkpoint of another kind an error. Committee folders and
    exported ``.pt2`` programs load through ``ferronn.models.loading.load`` (or ``ferronn.load``)."""
    payload = read(path)
    classes = model_classes()
    if payload["kind"] not in classes:
        raise CheckpointError(f"checkpoint '{path}': unknown model kind '{payload['kind']}'")
    if kind is not None and payload["kind"] != kind:
        raise CheckpointError(f"checkpoint '{path}': holds a '{payload['kind']}' model, expected '{kind}'")
    saved_dtype = _DTYPES[payload["dtype"]]
    model = classes[payload["kind"]].from_hyperparameters(payload["hyperparameters"], saved_dtype)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint '{path}': weights do not match the stored hyperparameters ({exc})")
    if isinstance(dtype, str):
        dtype = _DTYPES[dtype]
    model = model.to(device=device, dtype=dtype or saved_dtype)
    model.eval()
    model.checkpoint_metadata = payload.get("metadata", {})
    return model


def __getattr__(name):
    # ``load`` moved: a merge or an old script that still imports it gets told where, not a bare ImportError.
    if name == "load":
        raise ImportError("ferronn.models.checkpoint.load moved: use ferronn.models.loading.load (any format) or "
                          "ferronn.models.checkpoint.load_checkpoint (one checkpoint file)")
    raise AttributeError(f"module 'ferronn.models.checkpoint' has no attribute '{name}'")
