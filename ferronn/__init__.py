"""ferronn: machine-learned ferroelectrics in electric fields (MACE energies + equivariant Born charges).

Pipeline: ``ferronn.data`` → ``ferronn.models`` → ``ferronn.train`` → checkpoints → calculator / MD.
"""

from ._version import __version__

__all__ = ["__version__", "load", "FerroCalculator"]


def load(path, device=None, dtype=None, kind=None):
    """Rebuild a model from a checkpoint (weights_only=True), a committee folder or an exported .pt2 file."""
    from .models.loading import load as _load

    return _load(path, device=device, dtype=dtype, kind=kind)


def __getattr__(name):
    # Lazy: importing ferronn must not pull in ASE/torch models until a calculator is asked for.
    if name == "FerroCalculator":
        from .calculator import FerroCalculator

        return FerroCalculator
    raise AttributeError(f"module 'ferronn' has no attribute '{name}'")
