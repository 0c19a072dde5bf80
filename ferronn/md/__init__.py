"""Torch MD: batched replicas, NVE/NVT/NPT integrators over an ``MDState``, field forces F0 + Z*ᵀE
(``md.forces``), the dipole from Z*·dr (``md.integrators._move``), and ε on the fly (``md.observables``)."""

from .state import MDState  # noqa: F401
