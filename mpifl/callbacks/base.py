"""The callback protocol: hooks on the round loop, run on rank 0 (which writes the
results), and the list of a run's callbacks.

A round's figures (`Metrics`) are made from the rows recorded for it
(mpifl.results.metrics): the same for any rank count, and on a resume rebuilt from the
result file, so a callback with state (early stopping's best value) replays `history` in
`on_train_begin` instead of needing a checkpoint of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mpifl.config import Config

Metrics = Mapping[str, float]  # a round's figures by name (docs/results.md, Callbacks)
HOOKS = ("on_train_begin", "after_round", "on_train_end")


@dataclass(frozen=True)
class RunInfo:
    """What a callback learns as the run starts: the job, the result file, and the rounds
    recorded before this start (a resume's; empty on a fresh start), as (round, figures)."""

    config: Config
    output: Path
    history: Sequence[tuple[int, Metrics]] = ()


class Callback(Protocol):
    """Hooks on the round loop. Subclass it (every hook defaults to doing nothing), or
    write a class with the three methods."""

    def on_train_begin(self, run: RunInfo) -> None:
        """Before the first round of this start (fresh or resumed)."""

    def after_round(self, round_: int, metrics: Metrics) -> bool | str:
        """After round `round_` (from 1) is recorded: True, or a reason, to stop the run
        after it; False (or "") to go on."""
        return False

    def on_train_end(self, status: str) -> None:
        """Once the run ends `complete` (also when stopped early) or `interrupted`."""


class CallbackList:
    """A run's callbacks, called in order."""

    def __init__(self, callbacks: Iterable[Callback]) -> None:
        self.callbacks = list(callbacks)

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def on_train_begin(self, run: RunInfo) -> None:
        for callback in self.callbacks:
            callback.on_train_begin(run)

    def after_round(self, round_: int, metrics: Metrics) -> str:
        """Every callback's `after_round`; the first stop's reason, or "" to go on."""
        reasons = [stop_reason(c, c.after_round(round_, metrics)) for c in self.callbacks]
        return next((r for r in reasons if r), "")

    def on_train_end(self, status: str) -> None:
        for callback in self.callbacks:
            callback.on_train_end(status)


def stop_reason(callback: Callback, answer: bool | str) -> str:
    """A callback's `after_round` answer as a stop reason ("" = go on)."""
    if isinstance(answer, str):
        return answer
    return f"{type(callback).__name__} asked to stop" if answer else ""
