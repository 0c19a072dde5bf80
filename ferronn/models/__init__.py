"""Models: the MACE energy model, the Born-charge model, one autograd wrapper for forces/stress, checkpoints."""

import warnings

from ..quiet import silence_third_party

# e3nn/mace emit these on every model build; they are noise for users, not actionable.
warnings.filterwarnings("ignore", message="The TorchScript type system doesn't support instance-level")
warnings.filterwarnings("ignore", message="Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected")
silence_third_party()  # Lightning's tips, third-party deprecation notices (ferronn/quiet.py)


def predict(models: dict, batch: dict, compute_stress: bool = False, training: bool = False) -> dict:
    """Outputs of the energy model (energy, forces, stress) and/or the Born model (born_charges) on ``batch``.

    ``models`` maps kind ('energy', 'born') to a model; either may be absent.
    """
    out = {}
    if models.get("energy") is not None:
        out.update(models["energy"](batch, compute_forces=True, compute_stress=compute_stress, training=training))
    if models.get("born") is not None:
        out.update(models["born"](batch))
    return out


def check_compatible(energy_model, born_model) -> None:
    """Raise CheckpointError when an energy and a Born model cannot drive one simulation (different elements)."""
    from ..errors import CheckpointError

    if born_model is not None and sorted(born_model.atomic_numbers) != sorted(energy_model.atomic_numbers):
        raise CheckpointError(f"energy and Born models know different elements ({energy_model.atomic_numbers} vs "
                              f"{born_model.atomic_numbers}); train them on the same data")
