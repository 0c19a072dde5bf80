"""Dataset statistics that set up a model: reference energies, energy shift, force scale, neighbour count.

All in float64. With every frame of the same composition (as in both shared BaTiO3 sets) the least-squares
problem for per-element reference energies is singular; numpy's lstsq returns its minimum-norm solution, whose
sum over a frame's atoms is exactly the mean frame energy, so residual energies stay well defined.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import keys as K


@dataclasses.dataclass
class DatasetStats:
    """Float64 statistics of a training set (units: eV, eV/Å, neighbours per atom)."""

    atomic_numbers: list  # species table, sorted
    reference_energies: list  # eV per atom of each species (minimum-norm least squares)
    energy_shift: float  # eV per atom: mean residual energy per atom after reference energies
    force_rms: float  # eV/Å: RMS force component, the model's output scale
    avg_num_neighbors: float
    num_frames: int
    born_offsets: list = dataclasses.field(default_factory=list)  # e: isotropic z_el = <tr Z*>/3 per species
    born_scale: float = 1.0  # e: RMS of Z* - z_el·I

    def to_dict(self):
        return dataclasses.asdict(self)


def reference_energies(frames, atomic_numbers) -> np.ndarray:
    """Per-species reference energies (eV) by minimum-norm least squares on frame compositions."""
    rows, energies = [], []
    for frame in frames:
        if K.ENERGY in frame:
            counts = np.bincount(
                np.searchsorted(atomic_numbers, frame[K.ATOMIC_NUMBERS]), minlength=len(atomic_numbers)
            )
            rows.append(counts.astype(np.float64))
            energies.append(float(frame[K.ENERGY]))
    if not rows:
        return np.zeros(len(atomic_numbers))
    solution, *_ = np.linalg.lstsq(np.array(rows), np.array(energies), rcond=None)
    return solution


def compute_stats(frames, graphs, atomic_numbers=None) -> DatasetStats:
    """Statistics over training frames (numpy frame dicts) and their graphs (for neighbour counts)."""
    if atomic_numbers is None:
        atomic_numbers = sorted({int(z) for f in frames for z in f[K.ATOMIC_NUMBERS]})
    atomic_numbers = np.asarray(atomic_numbers, dtype=np.int64)
    e0 = reference_energies(frames, atomic_numbers)
    residual_per_atom = [
        (float(f[K.ENERGY]) - float(e0[np.searchsorted(atomic_numbers, f[K.ATOMIC_NUMBERS])].sum()))
        / len(f[K.ATOMIC_NUMBERS])
        for f in frames
        if K.ENERGY in f
    ]
    forces = [f[K.FORCES].ravel() for f in frames if K.FORCES in f]
    force_rms = float(np.sqrt(np.mean(np.concatenate(forces) ** 2))) if forces else 1.0
    n_atoms = sum(g[K.POSITIONS].shape[0] for g in graphs)
    n_edges = sum(g[K.EDGE_INDEX].shape[1] for g in graphs)
    born_offsets, born_scale = born_statistics(frames, atomic_numbers)
    return DatasetStats(
        born_offsets=born_offsets,
        born_scale=born_scale,
        atomic_numbers=[int(z) for z in atomic_numbers],
        reference_energies=[float(e) for e in e0],
        energy_shift=float(np.mean(residual_per_atom)) if residual_per_atom else 0.0,
        force_rms=force_rms if force_rms > 0 else 1.0,
        avg_num_neighbors=n_edges / max(n_atoms, 1),
        num_frames=len(frames),
    )


def born_statistics(frames, atomic_numbers):
    """Isotropic offsets z_el = ⟨tr Z*⟩/3 per species (e) and the RMS of Z* − z_el·I over frames with Z*.

    Isotropic on purpose: an anisotropic mean tensor per element would break rotation equivariance.
    """
    numbers = np.asarray(atomic_numbers)
    sums, counts = np.zeros(len(numbers)), np.zeros(len(numbers))
    residuals = []
    for frame in frames:
        if K.BORN_CHARGES in frame:
            idx = np.searchsorted(numbers, frame[K.ATOMIC_NUMBERS])
            np.add.at(sums, idx, np.trace(frame[K.BORN_CHARGES], axis1=1, axis2=2) / 3.0)
            np.add.at(counts, idx, 1.0)
    offsets = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    for frame in frames:
        if K.BORN_CHARGES in frame:
            iso = offsets[np.searchsorted(numbers, frame[K.ATOMIC_NUMBERS])][:, None, None] * np.eye(3)
            residuals.append((frame[K.BORN_CHARGES] - iso).ravel())
    scale = float(np.sqrt(np.mean(np.concatenate(residuals) ** 2))) if residuals else 1.0
    return [float(z) for z in offsets], scale if scale > 0 else 1.0


def reference_asr_residual(frames) -> dict:
    """How far the reference Z* are from the acoustic sum rule: max and mean over frames of max|Σ_κ Z*_κ| (e),
    for the training labels and, where the data has them, the raw DFT charges before any correction."""
    out = {}
    for key, name in ((K.BORN_CHARGES, "born_asr_reference"), (K.BORN_CHARGES_RAW, "born_asr_reference_raw")):
        residual = [float(np.abs(f[key].sum(axis=0)).max()) for f in frames if key in f]
        if residual:
            out[f"{name}_max"] = max(residual)
            out[f"{name}_mean"] = float(np.mean(residual))
    return out
