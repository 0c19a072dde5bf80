"""CPU MD keeps its activation buffers: no per-step page faults when a bigger run follows a smaller one."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from helpers import ALLEGRO, ROOT, require_shared

# A 1080-atom run, then a 3645-atom run in the same process (as a benchmark or a study's scan does). With a finite
# glibc trim threshold (1 GiB before this test) the second run faulted ~175,000 pages (~0.7 GiB) in every step;
# with trimming off it faults ~1,300 (the MD state's own small allocations).
SCRIPT = textwrap.dedent("""
    import resource, sys, tempfile, warnings
    warnings.filterwarnings("ignore")
    import ase.io, torch
    from ferronn.models.loading import load
    from ferronn.md.config import MDConfig
    from ferronn.md.engine import Simulation

    energy = load(sys.argv[1]).to(dtype=torch.float32)
    frame = ase.io.read(sys.argv[2], 0)

    def run(repeat, steps):
        cfg = MDConfig(ensemble="nve", steps=0, equilibration_steps=0, log_every=10 ** 9, trajectory_every=0,
                       restart_every=0, device="cpu", dtype="float32", fields=[[0.0, 0.0, 0.0]], seed=0)
        sim = Simulation(cfg, energy, None, frame.repeat(repeat), out=tempfile.mkdtemp())
        sim.run(steps, progress=False)
        return sim

    run(2, 3)
    big = run(3, 2)  # its first steps grow the heap
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    big.run(3, progress=False)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3)
""")


@pytest.mark.slow  # subprocess, 3645-atom MD
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator settings are Linux-only")
def test_a_bigger_run_after_a_smaller_one_does_not_fault_its_buffers_in_every_step():
    require_shared()
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT / "checkpoints" / "batio3-allegro-pol" /
                                                               "energy.ckpt"), str(ALLEGRO)],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    faults_per_step = float(result.stdout.strip().splitlines()[-1])
    # One 3645-atom step allocates ~1.3 GB (~330,000 pages); re-faulting even a tenth of it would be caught.
    assert faults_per_step < 20_000, f"{faults_per_step:.0f} page faults per MD step: buffers left the heap"
