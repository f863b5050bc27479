"""SIGTERM (what SLURM sends at a time limit or on preemption) as a request to stop after
the current round with a checkpoint."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import FrameType

from mpifl.progress import stamp

INTERRUPTED = 3  # exit code: stopped by SIGTERM, checkpoint written, resumable


class StopSignal:
    """Context manager: while active, SIGTERM sets `requested` instead of killing; with
    `say` (rank 0), the first one is acknowledged on stderr at once, since stopping waits
    for the client under way (minutes, for a large model); `say()` tells whether a
    progress bar holds the line (the message then starts on a new one)."""

    def __init__(self, say: Callable[[], bool] | None = None) -> None:
        self.requested = False
        self.say = say
        self._previous: object = None

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        if self.say is not None and not self.requested:  # os.write: safe in a handler
            text = (f"[{stamp()}] mpifl: SIGTERM received: stopping once the client under "
                    "way is done, then writing a checkpoint\n")  # fmt: skip
            os.write(2, (("\n" if self.say() else "") + text).encode())
        self.requested = True

    def __enter__(self) -> StopSignal:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self._previous)
