"""torch.compile for the energy and Born models (MD and training), as mace-torch prepares MACE for it.

The model is rebuilt from its hyperparameters and weights with e3nn's TorchScript code generation off and
mace's fx simplification of its contraction blocks (``mace.tools.compile.prepare``), then its forward —
including the autograd call that gives forces and stress — is compiled with dynamic shapes (atom and edge
counts change every neighbour-list rebuild). The learned weights keep their names; only mace's constant masks
(``*_zeroed`` buffers) leave the state dict (``load_weights`` copies weights back into a plain model).
The forces' autograd.grad on the compiled graph is allowed only without AOTAutograd's donated buffers, which
``compiled`` switches off (process-wide). First calls compile (tens of seconds on a CPU for a small
model, longer for big ones); recompiles are rare thanks to dynamic shapes.
"""

from __future__ import annotations

import torch

from .. import keys as K

BACKENDS = ("inductor", "aot_eager", "cudagraphs")  # torch.compile backends the recipes accept


def compiled(model, backend: str = "inductor", mode=None):
    """A copy of ``model`` (EnergyModel or BornModel) whose forward is ``torch.compile``d."""
    from .energy import _import_mace

    _import_mace()
    from mace.tools.compile import configure_autograd_for_compile, disable_e3nn_codegen, simplify

    configure_autograd_for_compile(allow_autograd=True)
    # Forces come from torch.autograd.grad on the compiled forward's graph, which AOTAutograd runs through its
    # double-backward wrapper whenever grad mode is on; donated buffers refuse that (and training's double
    # backward), so they stay off: a little more memory in the backward, nothing else.
    torch._functorch.config.donated_buffer = False
    with disable_e3nn_codegen():
        copy = type(model).from_hyperparameters(model.hyperparameters(), model.dtype)
    copy.load_state_dict(model.state_dict())
    # fx-traces mace's contraction blocks; their constant masks (*_zeroed buffers) become graph constants
    copy = simplify(copy).to(next(model.parameters()).device)
    copy.checkpoint_metadata = getattr(model, "checkpoint_metadata", {})
    compiled_forward = torch.compile(copy.forward, dynamic=True, backend=backend, mode=mode)

    def forward(batch, *args, **kwargs):
        # Inductor's multi-threaded CPU code for a scatter into a one-element output (a one-structure batch: the
        # per-structure energy sum, the Born sum rule's mean, the cell gradient) fails to generate
        # (pytorch/pytorch#160391, torch 2.13); an empty second structure sidesteps it, and is sliced off again.
        if batch[K.PTR].shape[0] != 2 or batch[K.PTR].device.type != "cpu":
            return compiled_forward(batch, *args, **kwargs)
        out = compiled_forward(with_empty_structure(batch), *args, **kwargs)
        return {k: v[:1] if k in PER_STRUCTURE_OUTPUTS else v for k, v in out.items()}

    copy.forward = forward
    copy.compiled_with = backend
    return copy


PER_STRUCTURE_OUTPUTS = (K.ENERGY, K.STRESS)


def with_empty_structure(batch):
    """``batch`` plus one structure with no atoms (unit cell, the first structure's pbc): its per-structure
    outputs are zero (Born: NaN, never gathered by an atom) and every per-atom output is unchanged."""
    out = dict(batch)
    ptr, num_atoms = batch[K.PTR], batch[K.NUM_ATOMS]
    out[K.PTR] = torch.cat([ptr, ptr[-1:]])
    out[K.NUM_ATOMS] = torch.cat([num_atoms, torch.zeros_like(num_atoms[:1])])
    if K.CELL in batch:
        cell = batch[K.CELL]
        out[K.CELL] = torch.cat([cell, torch.eye(3, dtype=cell.dtype, device=cell.device)[None]])
    if K.PBC in batch:
        out[K.PBC] = torch.cat([batch[K.PBC], batch[K.PBC][:1]])
    return out


def load_weights(target, source) -> None:
    """Copy ``source``'s weights into ``target`` where one of them is a compiled copy (its state dict lacks mace's
    constant ``*_zeroed`` masks, which both models rebuild identically from the hyperparameters)."""
    result = target.load_state_dict(source.state_dict(), strict=False)
    unexpected = [k for k in result.unexpected_keys if not k.endswith("_zeroed")]
    missing = [k for k in result.missing_keys if not k.endswith("_zeroed")]
    if unexpected or missing:
        raise RuntimeError(f"weights do not match: missing {missing[:3]}, unexpected {unexpected[:3]}")
