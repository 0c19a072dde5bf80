"""torch.compile for the energy and Born models (MD and training), as mace-torch prepares MACE for it.

The model is rebuilt from its hyperparameters and weights with e3nn's TorchScript code generation off and
mace's fx simplification of its contraction blocks (``mace.tools.compile.prepare``), then its forward —
including the autograd call that gives forces and stress — is compiled with dynamic shapes (atom and edge
counts change every neighbour-list rebuild). The learned weights keep their names; only mace's constant masks
(``*_zeroed`` buffers) leave the state dict (``load_weights`` copies weights back into a plain model).
The forces' autograd.grad on the compiled graph is allowed only without AOTAutograd's donated buffers, which
``compiled`` switches off (process-wide). First calls compile (~6 min on one CPU core for the MD recipe's
models; inductor caches the result on disk); recompiles are rare thanks to dynamic shapes.
"""

from __future__ import annotations

import torch

BACKENDS = ("inductor", "aot_eager", "cudagraphs")  # torch.compile backends the recipes accept


def compiled(model, backend: str = "inductor", mode=None):
    """A copy of ``model`` (EnergyModel or BornModel) whose forward is ``torch.compile``d."""
    from .energy import _import_mace

    _import_mace()
    from mace.tools.compile import configure_autograd_for_compile, disable_e3nn_codegen, simplify

    configure_autograd_for_compile(allow_autograd=True)
    # AOTAutograd's donated buffers refuse the forces' torch.autograd.grad on the compiled forward (torch 2.13:
    # "compiled with non-empty donated buffers") and training's double backward: off, at a little memory.
    torch._functorch.config.donated_buffer = False
    with disable_e3nn_codegen():
        copy = type(model).from_hyperparameters(model.hyperparameters(), model.dtype)
    copy.load_state_dict(model.state_dict())
    # fx-traces mace's contraction blocks; their constant masks (*_zeroed buffers) become graph constants
    copy = simplify(copy).to(next(model.parameters()).device)
    copy.checkpoint_metadata = getattr(model, "checkpoint_metadata", {})
    if next(model.parameters()).device.type == "cpu":
        # torch 2.13's multi-threaded inductor CPU code for scatter-adds fails to generate for a one-element
        # output (a one-structure batch: pytorch/pytorch#160391), and two compiled MD runs here aborted with
        # glibc heap corruption before this setting (cause not isolated; pytorch/pytorch#191837 reports
        # out-of-bounds atomic adds with > 1 thread). Generated loops therefore run on one thread, the path
        # without atomics; matrix products still use torch's threads. Process-wide, as inductor's config is.
        # Since: 300 calls on changing shapes under glibc's malloc checker (benchmarks/compile_check.py --soak)
        # and the 1100-step compiled run that had aborted at step ~500 ran clean. Rechecked (2 threads, energy
        # model, the one-structure sum written as a matmul to get past #160391): "free(): invalid next size" on
        # the first call; with torch's deterministic mode instead (aten scatters, no atomics) the generated
        # backward runs 2.6× slower than eager at 1080 atoms. One thread stays.
        torch._inductor.config.cpp.threads = 1
    copy.forward = torch.compile(copy.forward, dynamic=True, backend=backend, mode=mode)
    copy.compiled_with = backend
    return copy


def load_weights(target, source) -> None:
    """Copy ``source``'s weights into ``target`` where one of them is a compiled copy (its state dict lacks mace's
    constant ``*_zeroed`` masks, which both models rebuild identically from the hyperparameters)."""
    result = target.load_state_dict(source.state_dict(), strict=False)
    unexpected = [k for k in result.unexpected_keys if not k.endswith("_zeroed")]
    missing = [k for k in result.missing_keys if not k.endswith("_zeroed")]
    if unexpected or missing:
        raise RuntimeError(f"weights do not match: missing {missing[:3]}, unexpected {unexpected[:3]}")
