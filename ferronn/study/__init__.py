"""Studies on top of the MD engine: each one command over a recipe, leaving a CSV and a PNG per study.

    python -m ferronn.study dielectric --config recipes/study_dielectric.yaml   # ε_ab(T), both estimators, Curie–Weiss
    python -m ferronn.study hysteresis --config recipes/study_hysteresis.yaml   # P–E loop, P_r and E_c
    python -m ferronn.study phases     --config recipes/study_phases.yaml      # heating/cooling ramp, R/O/T/C
    python -m ferronn.study spectrum   --config recipes/study_spectrum.yaml    # χ(ω) from ⟨δM(0)δM(t)⟩

Every study writes ``study.json`` (the finished temperatures/cycles, atomically after each) in its output folder
and resumes from it after a kill, continuing an unfinished unit from that unit's MD restart file.
"""
