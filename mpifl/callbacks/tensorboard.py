"""TensorBoard event files of the run's figures, written by rank 0 (`tensorboard --logdir
DIR` shows the curves). Needs the `tensorboard` package, an optional extra of mpifl: this
module is imported only when [callbacks.tensorboard] is enabled."""

from __future__ import annotations

import math
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from mpifl.callbacks.base import Callback, Metrics, RunInfo


class TensorBoardLog(Callback):
    """[callbacks.tensorboard]: every finite figure as a scalar, the round as its step.

    Every start writes a new event file that purges the steps from round 1 on (`purge_step`)
    and holds the history again, so a resumed run shows no round past its checkpoint."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.writer: SummaryWriter | None = None

    def on_train_begin(self, run: RunInfo) -> None:
        self.writer = SummaryWriter(str(self.logdir), purge_step=1)
        for round_, metrics in run.history:
            self._add(round_, metrics)
        self.writer.flush()

    def after_round(self, round_: int, metrics: Metrics) -> bool | str:
        self._add(round_, metrics)
        self.writer.flush()  # a run that fails keeps its curves
        return False

    def on_train_end(self, status: str) -> None:
        self.writer.close()

    def _add(self, round_: int, metrics: Metrics) -> None:
        for name, value in metrics.items():
            if math.isfinite(value):
                self.writer.add_scalar(name, value, round_)
