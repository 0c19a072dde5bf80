"""cuEquivariance backend for the energy model: mace-torch's own e3nn → cuEquivariance converter.

NVIDIA's cuEquivariance kernels (``pip install 'ferronn[cueq]'``, plus ``cuequivariance-ops-torch-cu12`` on GPU
nodes) replace e3nn's tensor products, symmetric contractions and linears inside MACE. The converted model holds
the same weights (remapped) and gives the same numbers (float64 on CPU: forces within 1e-15 eV/Å); on a CPU its
fallback kernels are slower than e3nn (measured 3.6×), the point is GPU speed. The Born model keeps e3nn: mace's
converter handles whole MACE models only, and the Born forward is ~0.2× of a step.
"""

from __future__ import annotations

import copy

import torch

from ..errors import ConfigError


def to_cueq(model):
    """A copy of an ``EnergyModel`` whose MACE runs on cuEquivariance (same weights, same numbers)."""
    from .protocol import RebuildableModel

    if not isinstance(model, RebuildableModel) or model.kind != "energy":
        raise ConfigError(f"cueq: only plain energy models convert (got {type(model).__name__})")
    try:
        import cuequivariance_torch  # noqa: F401
    except ImportError:
        raise ConfigError("cueq: cuEquivariance is not installed (pip install 'ferronn[cueq]'; on GPU nodes also "
                          "cuequivariance-ops-torch-cu12)") from None
    from mace.cli.convert_e3nn_cueq import run

    device = next(model.parameters()).device
    previous = torch.get_default_dtype()  # the converter sets the default dtype to the model's, for good
    try:
        out = copy.deepcopy(model)
        out.mace = run(model.mace, device=device.type)
    finally:
        torch.set_default_dtype(previous)
    out.checkpoint_metadata = getattr(model, "checkpoint_metadata", {})
    return out.to(device)
