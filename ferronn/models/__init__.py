"""Models: the MACE energy model, one autograd wrapper for forces/stress, and the checkpoint format."""

import warnings

# e3nn/mace emit these on every model build; they are noise for users, not actionable.
warnings.filterwarnings("ignore", message="The TorchScript type system doesn't support instance-level")
warnings.filterwarnings("ignore", message="Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected")
