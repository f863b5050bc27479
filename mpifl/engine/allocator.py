"""glibc malloc's thresholds for a run: what memory shows in RSS, against page faults.

glibc serves an allocation above its mmap threshold (128 KiB at first, then growing
after the first large free) with a fresh mapping, unmapped when freed, and returns a
free heap top above its trim threshold. Mapped memory leaves RSS as soon as it is
freed, so RSS follows what is in use; memory kept on the heap is reused without page
faults. A run picks one policy:

- measuring each client's memory (emulation.memory = measured or both): every
  allocation above 128 KiB is mapped, so a client's RSS growth is its own;
- keeping client states (a stateful method): states (MBs) are mapped, so evicted ones
  leave RSS; activations stay on the heap;
- otherwise freed memory is kept: a batched group's step frees activations of hundreds
  of KiB that the next step needs again, and mapping them anew cost a CNN group of 32
  2x its step time (docs/performance.md). RSS then stays at its peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
VISIBLE = 128 * 1024
STATES = 2**20
KEPT = (32 * 2**20, 2**30)  # glibc's largest mmap threshold; a trim threshold of 1 GiB


def malloc_thresholds(memory: str, keeps_states: bool) -> tuple[int, int]:
    """(mmap, trim) thresholds for emulation.memory = `memory`, with or without a client
    state store."""
    if memory != "analytic":
        return VISIBLE, VISIBLE
    if keeps_states:
        return STATES, STATES
    return KEPT


def set_malloc_thresholds(mmap: int, trim: int) -> bool:
    """Pin glibc's mmap and trim thresholds; False where glibc's mallopt is missing."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mapped, trimmed = mallopt(M_MMAP_THRESHOLD, mmap), mallopt(M_TRIM_THRESHOLD, trim)
    return bool(mapped and trimmed)
