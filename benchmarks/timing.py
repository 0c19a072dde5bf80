"""Interleaved timing shared by the benchmarks: machine noise hits every contender alike."""

from __future__ import annotations

import os
import statistics
import time
import warnings
from typing import Callable, Dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The peers' BaTiO3 frames (../shared/data beside the checkout); frame 0 is the 135-atom cell every MD benchmark uses.
STRUCTURE = os.path.join(ROOT, "..", "shared", "data", "batio3-allegro-pol", "BaTiO3.xyz")
FIELD = 0.005  # V/Å along z: the field of recipes/batio3_dielectric.yaml, small enough to stay linear


def quiet_threads(threads: int) -> None:
    """Every contender on ``threads`` torch CPU threads (0: torch's default), with library warnings off."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")


def interleaved_medians(contenders: Dict[str, Callable[[], object]], repeats: int, device) -> Dict[str, float]:
    """Median wall time (s) of each callable over ``repeats`` rounds, after two warm-up calls each (the first
    calls build e3nn/opt_einsum paths); CUDA is synchronised around every call so the time is the work's."""
    import torch

    def sync():
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()

    for fn in contenders.values():
        fn(), fn()
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
