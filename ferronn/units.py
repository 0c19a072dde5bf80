"""Units and physical constants: the one place where they live.

Internal units are eV, Å, fs, e, V/Å, amu, K (docs/conventions.md). Every constant is derived from the
exact/CODATA 2018 SI values below, never typed in as a converted number.
"""

from __future__ import annotations

import math

# --- CODATA 2018 SI values -------------------------------------------------------------------------------------
ELEMENTARY_CHARGE_C = 1.602176634e-19  # C (exact)
BOLTZMANN_J_PER_K = 1.380649e-23  # J/K (exact)
VACUUM_PERMITTIVITY_F_PER_M = 8.8541878128e-12  # F/m
ATOMIC_MASS_UNIT_KG = 1.66053906660e-27  # kg
ANGSTROM_M = 1e-10  # m
FEMTOSECOND_S = 1e-15  # s
SPEED_OF_LIGHT_M_PER_S = 299792458.0  # m/s (exact)

# --- derived, in ferronn's units -------------------------------------------------------------------------------
#: Boltzmann constant in eV/K.
KB_EV_PER_K = BOLTZMANN_J_PER_K / ELEMENTARY_CHARGE_C
#: Vacuum permittivity in e/(V·Å).
EPSILON0_E_PER_V_A = VACUUM_PERMITTIVITY_F_PER_M * ANGSTROM_M / ELEMENTARY_CHARGE_C
#: ASE's internal time unit Å·sqrt(amu/eV), expressed in fs (≈ 10.1805 fs).
ASE_TIME_UNIT_FS = ANGSTROM_M * math.sqrt(ATOMIC_MASS_UNIT_KG / ELEMENTARY_CHARGE_C) / FEMTOSECOND_S
#: Kinetic energy: 1 amu·Å²/fs² in eV (≈ 103.6427), so that ½mv² with m in amu and v in Å/fs is in eV.
AMU_A2_PER_FS2_IN_EV = ATOMIC_MASS_UNIT_KG * ANGSTROM_M**2 / FEMTOSECOND_S**2 / ELEMENTARY_CHARGE_C
#: Polarization: 1 e/Å² in μC/cm² (1 C/m² = 100 μC/cm²).
E_PER_A2_TO_UC_PER_CM2 = ELEMENTARY_CHARGE_C / ANGSTROM_M**2 * 100.0
#: Electric field: 1 V/Å in kV/cm.
V_PER_A_TO_KV_PER_CM = 1.0 / ANGSTROM_M / 1e5
V_PER_A_TO_MV_PER_CM = V_PER_A_TO_KV_PER_CM / 1e3
#: Spectroscopy: angular frequency ω (rad/fs) of 1 cm⁻¹ (ω = 2πc·ν̃), and 1 THz in cm⁻¹ (≈ 33.356).
RAD_PER_FS_PER_WAVENUMBER = 2 * math.pi * SPEED_OF_LIGHT_M_PER_S * 100.0 * FEMTOSECOND_S
WAVENUMBER_PER_THZ = 1e12 / (SPEED_OF_LIGHT_M_PER_S * 100.0)
#: Stress: 1 eV/Å³ in GPa.
EV_PER_A3_TO_GPA = ELEMENTARY_CHARGE_C / ANGSTROM_M**3 / 1e9

#: Conversions used when reporting metrics.
MEV_PER_EV = 1000.0

#: The unit system written into every checkpoint, so incompatible files are caught at load time.
UNIT_SYSTEM = {
    "energy": "eV",
    "length": "Angstrom",
    "force": "eV/Angstrom",
    "stress": "eV/Angstrom^3",
    "charge": "e",
    "field": "V/Angstrom",
    "time": "fs",
}


def atomic_masses() -> "list[float]":
    """Atomic masses in amu indexed by atomic number (ASE's table, used everywhere in ferronn)."""
    from ase.data import atomic_masses as _masses

    return [float(m) for m in _masses]
