"""Faster training on CPU: freed tensor memory kept in the process's heap for the next step.

glibc's malloc hands every block above its mmap threshold (at most 32 MB) straight back to the system when
it is freed, and trims the heap's free top. A training step on CPU allocates and frees activations of tens of
MB (batch 11 at 160 x 192 px, 32 feature maps: 43 MB each) many times, so each step maps fresh memory that the
kernel zeroes page by page. Served from a heap that is never trimmed, the same memory is reused: on the 2-core
machine a step of nnU-Net's default network took 4.24 s instead of 5.26 s, the T-Unet's 5.56 s instead of 7.12 s
(medians of five rounds), and an nnU-Net training epoch of the bundled network at 256 px 126 s instead of 177 s,
for 20-33 % more peak memory, which the process then keeps until it exits
(docs/benchmarks.md, "Freed memory kept for the next step"). The plug-in trainers apply it on CPU unless
:data:`OPT_OUT` is switched off (``0``).
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
NEVER = 2**31 - 1  # mallopt takes an int: 2 GiB, above any block a training allocates
OPT_OUT = "NNUNET_TONGUE_REUSE_FREED_MEMORY"  # 0 / false / no / off: the trainers leave malloc as it is


def reuse_freed_memory() -> bool:
    """Serve large blocks from the heap and never trim it (glibc only; elsewhere nothing changes).

    Returns whether both settings took effect. Applies to the calling process from now on.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    return bool(mallopt(M_MMAP_THRESHOLD, NEVER)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER))
