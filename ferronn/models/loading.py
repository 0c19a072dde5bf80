"""One loader for every model format: a ferronn checkpoint, a committee folder or an exported ``.pt2`` program.

The dispatch lives here, above the three formats, so that ``checkpoint.py`` (one file), ``committee.py`` (a folder
of checkpoints) and ``export.py`` (torch.export programs) import only downwards and never each other in a circle.
"""

from __future__ import annotations

import os
from typing import Optional

from ..errors import CheckpointError


def load(path, device=None, dtype=None, kind: Optional[str] = None):
    """Rebuild the model stored at ``path`` (eval mode) on ``device`` in ``dtype`` (default: as saved).

    ``kind`` ('energy' or 'born') makes a model of another kind an error instead of a surprise. A folder written by
    ``ferronn train --committee N`` loads as a committee of that kind; a ``.pt2`` file written by ``ferronn export``
    loads as an exported model (no mace, e3nn or pickle involved); anything else must be a ferronn checkpoint,
    read with ``torch.load(..., weights_only=True)``.
    """
    if os.fspath(path).endswith(".pt2"):
        from .export import load_exported

        model = load_exported(path, device=device, kind=kind)
        return model.to(dtype=dtype) if dtype is not None else model
    if os.path.isdir(path):
        from .committee import load_committee

        if kind is None:
            raise CheckpointError(f"'{path}' is a committee folder: say which kind to load (kind='energy' or 'born')")
        return load_committee(path, kind, device=device, dtype=dtype)
    from .checkpoint import load_checkpoint

    return load_checkpoint(path, device=device, dtype=dtype, kind=kind)
