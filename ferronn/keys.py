"""The one batch schema: a ``dict[str, torch.Tensor]`` with these named keys.

A batch concatenates B structures with N atoms and E edges in total. Every module (data, models, training,
calculator, MD) reads and writes these keys and no others, like nequip's ``AtomicDataDict``.

Shapes and units:
    positions      (N, 3)     Å, model dtype
    species        (N,)       int64 index into the model's species table (not the atomic number)
    atomic_numbers (N,)       int64
    batch          (N,)       int64 structure index of each atom
    ptr            (B+1,)     int64 offsets of each structure's atoms
    num_atoms      (B,)       int64
    cell           (B, 3, 3)  Å, rows are lattice vectors
    pbc            (B, 3)     bool
    edge_index     (2, E)     int64 [sender i, receiver j]: edge vector r_j - r_i + unit_shifts·cell
    unit_shifts    (E, 3)     model dtype, integer lattice translations of the receiver
    shifts         (E, 3)     Å, Cartesian edge shifts unit_shifts·cell: derived inside the models (autograd.py)
                              from the strained cell, never stored in a batch the data layer hands out
    frame_index    (B,)       int64 index of each structure in its source file

Labels (present only when the data has them) come with a boolean mask per structure; a masked structure
never enters that label's loss or metric (labels there hold NaN, never zeros):
    energy         (B,)       eV, float64 always (a -1e5 eV total has a float32 spacing of 8 meV)
    forces         (N, 3)     eV/Å
    stress         (B, 3, 3)  eV/Å³, ASE sign convention σ = (1/Ω) ∂U/∂ε
    born_charges   (N, 3, 3)  e, Z[a][b] = ∂F_b/∂E_a
    born_charges_raw (N, 3, 3) e, reference-only: DFT charges before the sum rule was imposed (not trained on)
    <label>_mask   (B,)       bool

A frame's graph may also hold, never batched (only the Born-path loss reads it, ferronn/train/born_path.py):
    polarization   (3,)       e·Å, the cell dipole from the Berry phase, defined modulo the quantum e·R

Model outputs reuse the label keys (energy, forces, stress, born_charges) plus:
    node_energy    (N,)       eV per atom, float64
    <label>_std    shape of the label: a committee's spread (standard deviation over members), same unit
"""

POSITIONS = "positions"
SPECIES = "species"
ATOMIC_NUMBERS = "atomic_numbers"
BATCH = "batch"
PTR = "ptr"
NUM_ATOMS = "num_atoms"
CELL = "cell"
PBC = "pbc"
EDGE_INDEX = "edge_index"
UNIT_SHIFTS = "unit_shifts"
SHIFTS = "shifts"
FRAME_INDEX = "frame_index"

ENERGY = "energy"
FORCES = "forces"
STRESS = "stress"
BORN_CHARGES = "born_charges"
BORN_CHARGES_RAW = "born_charges_raw"
POLARIZATION = "polarization"
NODE_ENERGY = "node_energy"
STD_SUFFIX = "_std"
ENERGY_STD = ENERGY + STD_SUFFIX
FORCES_STD = FORCES + STD_SUFFIX
BORN_CHARGES_STD = BORN_CHARGES + STD_SUFFIX

#: Labels a dataset may carry, in the order metrics are reported.
LABELS = (ENERGY, FORCES, STRESS, BORN_CHARGES)
#: Labels defined per atom (the others are per structure).
PER_ATOM_LABELS = (FORCES, BORN_CHARGES)


def mask_key(label: str) -> str:
    """Key of the per-structure boolean mask that says which structures carry ``label``."""
    return f"{label}_mask"
