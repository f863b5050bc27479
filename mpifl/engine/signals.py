"""SIGTERM (what SLURM sends at a time limit or on preemption) as a request to stop after
the current round with a checkpoint."""

from __future__ import annotations

import signal
from types import FrameType

INTERRUPTED = 3  # exit code: stopped by SIGTERM, checkpoint written, resumable


class StopSignal:
    """Context manager: while active, SIGTERM sets `requested` instead of killing."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: object = None

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True

    def __enter__(self) -> StopSignal:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self._previous)
