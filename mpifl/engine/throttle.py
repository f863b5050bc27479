"""Throttled emulation: run a client at its device's speed, and measure its memory growth."""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable

import psutil

from mpifl.errors import ConfigError

SAMPLE_INTERVAL_S = 0.001


class MemoryProbe:
    """Context manager: peak RSS growth of this process while the block runs (a sampler
    thread reads psutil every millisecond; torch releases the GIL in its kernels)."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.baseline = 0
        self.peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> MemoryProbe:
        self.baseline = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth(self) -> int:
        """Peak RSS minus RSS at entry, bytes."""
        return self.peak - self.baseline


STOP_POLL_S = 0.05  # how often a throttled sleep looks for a stop request


def sleep_until(
    started: float, target_seconds: float, stopped: Callable[[], bool] = lambda: False
) -> None:
    """Sleep so that `target_seconds` of wall time have passed since `started`, or until
    `stopped()` (the round is being abandoned: the rest of the emulated work is moot)."""
    end = started + target_seconds
    while (remaining := end - time.perf_counter()) > 0 and not stopped():
        time.sleep(min(remaining, STOP_POLL_S))


RLIMIT_HEADROOM = 256 * 2**20  # what set-up and one round need beyond today's data segment


def limit_data_segment(limit_bytes: int) -> None:
    """Set RLIMIT_DATA (a backstop: allocations past it fail with a catchable error).
    ConfigError if the limit leaves the process too little room to run at all."""
    used = psutil.Process().memory_info().data
    if limit_bytes < used + RLIMIT_HEADROOM:
        raise ConfigError(
            "emulation.rlimit_data",
            limit_bytes,
            f"must be 0 or >= {used + RLIMIT_HEADROOM} (this rank already uses "
            f"{used / 2**20:.0f} MiB of data segment, plus {RLIMIT_HEADROOM // 2**20} MiB)",
        )
    resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))


def is_allocation_failure(exc: BaseException) -> bool:
    """True for Python's MemoryError and torch's CPU allocator failure."""
    return isinstance(exc, MemoryError) or "can't allocate memory" in str(exc)
