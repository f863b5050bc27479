"""Early stopping: stop once a figure reaches a target, or after `patience` evaluations
without improvement."""

from __future__ import annotations

import math
import sys

from mpifl.callbacks.base import Callback, Metrics, RunInfo
from mpifl.config.sections import CallbacksEarlyStoppingConfig


class EarlyStopping(Callback):
    """[callbacks.early_stopping]. Rounds whose figures lack the metric, or hold NaN
    (not evaluated), are skipped; its state is rebuilt from the history on a resume."""

    def __init__(self, settings: CallbacksEarlyStoppingConfig) -> None:
        self.metric, self.target = settings.metric, settings.target
        self.patience, self.min_delta = settings.patience, settings.min_delta
        self.sign = 1.0 if settings.mode == "max" else -1.0  # compare as "higher is better"
        self._clear()

    def _clear(self) -> None:
        """No figure seen yet."""
        self.best, self.best_round, self.waited, self.seen = -math.inf, 0, 0, False

    def on_train_begin(self, run: RunInfo) -> None:
        self._clear()
        for round_, metrics in run.history:
            self.after_round(round_, metrics)

    def after_round(self, round_: int, metrics: Metrics) -> bool | str:
        value = metrics.get(self.metric, math.nan)
        if math.isnan(value):
            return False
        self.seen = True
        if self.sign * value > self.best + self.min_delta:
            self.best, self.best_round, self.waited = self.sign * value, round_, 0
        else:
            self.waited += 1
        if math.isfinite(self.target) and self.sign * value >= self.sign * self.target:
            return f"early stopping: {self.metric} = {value:.6g} reached the target {self.target:g}"
        if self.patience and self.waited >= self.patience:
            return (
                f"early stopping: {self.metric} did not improve by more than {self.min_delta:g} "
                f"in {self.waited} evaluations (best {self.sign * self.best:.6g} in round "
                f"{self.best_round})"
            )
        return False

    def on_train_end(self, status: str) -> None:
        if status == "complete" and not self.seen:
            print(
                f"mpifl: warning: callbacks.early_stopping.metric {self.metric!r} was in no "
                "round's figures (docs/results.md, Callbacks, lists the names)",
                file=sys.stderr,
                flush=True,
            )
