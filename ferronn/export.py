"""`python -m ferronn.export --checkpoint energy.ckpt born.ckpt --out-dir exported/`: models as .pt2 programs.

Writes ``energy.pt2`` / ``born.pt2`` (torch.export; see ferronn/models/export.py): graphs that run without mace,
e3nn or ferronn's training code and load without pickle. Anything that takes a checkpoint path takes them too
(calculator, ``energy:``/``born:`` of MD recipes, ``ferronn.load``). Each export is checked against its
checkpoint on a batch of other sizes before it is kept.

`python -m ferronn.export --lammps --checkpoint energy.ckpt born.ckpt --out-dir lmp/` writes instead
``energy.lammps.pt`` / ``born.lammps.pt``: TorchScript modules for the LAMMPS plugin (``lammps/``, docs/lammps.md;
why TorchScript there: ferronn/models/lammps.py), each checked against its checkpoint on a size it was not traced at.
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import cli_exit_code


def parse_args(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog or "python -m ferronn.export", description=__doc__)
    parser.add_argument("--checkpoint", required=True, nargs="+", help="ferronn checkpoint(s) to export")
    parser.add_argument("--out-dir", required=True, help="folder for <kind>.pt2")
    parser.add_argument("--device", default="cpu", help="device to trace on (run the export where it will run)")
    parser.add_argument("--dtype", choices=["float32", "float64"], help="default: as saved")
    parser.add_argument("--lammps", action="store_true",
                        help="write <kind>.lammps.pt (TorchScript) for the LAMMPS plugin instead of <kind>.pt2")
    return parser.parse_args(argv)


def run(args) -> None:
    import torch

    from .errors import CheckpointError
    from .models.checkpoint import load_checkpoint as load, read
    from .models.export import _example_batch, export_checkpoint, load_exported

    if args.lammps:
        from .models.lammps import SUFFIX, export_lammps

        for path in args.checkpoint:
            out = export_lammps(path, os.path.join(args.out_dir, read(path)["kind"] + SUFFIX), dtype=args.dtype)
            print(f"wrote {out} (TorchScript for the LAMMPS plugin, checked against {path})")
        return
    for path in args.checkpoint:
        kind = read(path)["kind"]
        out = os.path.join(args.out_dir, f"{kind}.pt2")
        export_checkpoint(path, out, device=args.device, dtype=args.dtype)
        original = load(path, device=args.device, dtype=args.dtype)
        exported = load_exported(out, device=args.device)
        batch = _example_batch(original, original.dtype, torch.device(args.device))
        if kind == "energy":
            a, b = exported(batch, compute_stress=True), original(batch, compute_stress=True)
            keys = ("energy", "forces", "stress")
        else:
            a, b = exported(batch), original(batch)
            keys = ("born_charges",)
        tol = 1e-8 if original.dtype == torch.float64 else 1e-3
        for key in keys:
            error = float((a[key].detach() - b[key].detach()).abs().max() / b[key].detach().abs().max().clamp_min(1e-12))
            if error > tol:
                os.unlink(out)
                raise CheckpointError(f"export of '{path}': {key} differs from the checkpoint's by {error:.1e} "
                                      f"(relative; allowed {tol:g}); nothing written")
        print(f"wrote {out} ({kind}, {original.dtype}, checked against {path})")


def main(argv=None, prog=None) -> int:
    return cli_exit_code(run, parse_args(argv, prog))


if __name__ == "__main__":
    sys.exit(main())
