"""Writes data.lmp for in.pe_loop: frame 0 of the shared 135-atom BaTiO3 set repeated 6×6×6 (29,160 atoms),
and the model files: python lammps/examples/pe_loop/make_data.py (from the repository root)."""

import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
sys.path.insert(0, root)

import ase.io  # noqa: E402

from ferronn import lammps as L  # noqa: E402
from ferronn.models.lammps import export_lammps  # noqa: E402

atoms = ase.io.read(os.path.join(root, "..", "shared", "data", "batio3-allegro-pol", "BaTiO3.xyz"), 0).repeat(6)
elements = L.write_data(os.path.join(here, "data.lmp"), atoms.positions, atoms.cell.array, atoms.numbers)
for kind in ("energy", "born"):
    export_lammps(os.path.join(root, "checkpoints", "batio3-allegro-pol", f"{kind}.ckpt"),
                  os.path.join(here, f"{kind}.lammps.pt"), dtype="float32")
print(f"wrote {here}/data.lmp ({len(atoms)} atoms, types {' '.join(elements)}) and the float32 model files")
