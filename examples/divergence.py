"""A callback plugin: stop a run that has diverged, instead of spending its remaining
rounds (docs/plugins.md, A callback).

    [callbacks]
    plugins = ["examples.divergence:StopOnDivergence"]

It stops after a round in which more clients' updates were rejected (not finite) than
were aggregated, or whose training loss exceeds `factor` times the first one recorded:
signs of a learning rate that is too high. It needs nothing from mpifl at run time: a
callback is any class with the three hooks (or a subclass of mpifl.callbacks.Callback).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mpifl.callbacks import RunInfo


class StopOnDivergence:
    """Stops a diverging run; its state (the first loss) is rebuilt from the history on
    a resume."""

    factor = 10.0

    def on_train_begin(self, run: RunInfo) -> None:
        self.first = math.nan
        for round_, metrics in run.history:
            self.after_round(round_, metrics)

    def after_round(self, round_: int, metrics: Mapping[str, float]) -> bool | str:
        rejected, trained = metrics["rejected"], metrics["trained"]
        if rejected > trained:
            return f"divergence: {rejected:.0f} updates were not finite, {trained:.0f} were"
        loss = metrics["train_loss"]  # NaN in a round in which no client trained
        if math.isnan(self.first):
            self.first = loss
        if loss > self.factor * self.first:
            return f"divergence: train_loss {loss:.4g} > {self.factor:g} x {self.first:.4g}"
        return False

    def on_train_end(self, status: str) -> None:
        """Nothing to close."""
