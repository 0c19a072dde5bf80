"""DFT labels for new structures: Quantum ESPRESSO pw.x (energy, forces, stress) and ph.x at Γ (Born charges, ε∞)."""
