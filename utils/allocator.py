"""Keep freed memory in the process instead of handing it back to the OS after every training step.

glibc serves blocks over its mmap threshold (128 KiB, adjusted upward on the fly) with fresh pages from
the kernel and trims the heap whenever its free top exceeds the trim threshold. A training step
allocates and frees activations of up to about 2 MB each, so every step page-faulted its memory in
again. With these settings a one-epoch run has a seventh of the page faults and a faster loop, for a few
tens of MB held (docs/performance.md).
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # mallopt parameters, from glibc's malloc.h
MMAP_THRESHOLD = 32 << 20  # the largest glibc accepts on 64-bit systems
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 64 << 20  # grow the heap in large steps: fewer, larger requests to the kernel


def keep_freed_memory() -> bool:
    """Tune glibc's malloc for training (see above). Elsewhere (macOS, musl) nothing to do: False."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)
