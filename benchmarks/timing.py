"""Interleaved timing shared by the benchmarks: machine noise hits every contender alike."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Dict


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
