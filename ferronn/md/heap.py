"""CPU memory for MD: keep the step's large buffers on glibc's heap instead of fresh page-faulted mmaps.

Moved out of ``ferronn.config`` (recipes) because it is a process-wide allocator setting that only the MD engine
makes (``cpu_heap_allocations`` in an MD recipe).
"""

from __future__ import annotations

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h> mallopt parameters
NEVER = -1  # as a trim threshold: (size_t)-1, no automatic trimming


def keep_large_allocations_on_the_heap(threshold_bytes: int = 1 << 30) -> bool:
    """Let glibc serve allocations below ``threshold_bytes`` from its heap instead of fresh mmaps, and never trim
    the heap's top back to the kernel: the process keeps its peak CPU memory until it exits, as PyTorch's CUDA
    caching allocator keeps GPU memory.

    A CPU MD step frees and re-allocates the same large activation buffers every step; by default each is a new
    mmap that the kernel zero-fills page by page (measured, 8640 atoms: 5–6 s of system time in a 12 s step, 2×
    slower per atom than 135 atoms). The mmap threshold alone is not enough: when the free top of the heap
    exceeds the trim threshold, glibc gives back all of it (not just the excess), so the next step faults the
    same pages in again. A finite threshold only moves the problem: with 1 GiB, an 8640-atom run started after a
    1080-atom run in the same process (a benchmark, a study's scan) faulted ~490,000 pages (~1.9 GiB) and spent
    1.2–1.8 s in the kernel every step (343–388 µs per atom-step); with trimming off, 0 faults and 218–279 µs
    (tests/test_cpu_memory.py checks a 1080-then-3645-atom sequence). The price is memory: a loop allocating and
    freeing one 256 MiB buffer settles at 1.76 GiB resident (1.50 with a 1 GiB trim threshold, 0.22 with glibc's
    defaults); MD's ``cpu_heap_allocations: false`` opts out. Process-wide and harmless for correctness;
    returns False (and changes nothing) where there is no glibc.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    # mallopt takes a C int; glibc stores the trim threshold as size_t, so -1 means "never trim".
    return bool(mallopt(M_MMAP_THRESHOLD, int(threshold_bytes))) and bool(mallopt(M_TRIM_THRESHOLD, NEVER))
