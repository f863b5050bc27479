"""A CSV log of the run's figures: one row per round, written by rank 0."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from mpifl.callbacks.base import Callback, Metrics, RunInfo
from mpifl.files import write_text


def cell(value: float) -> str:
    """A figure as CSV text: integers without a fraction, others in full (repr)."""
    return str(int(value)) if value.is_integer() else repr(value)


class CsvLog(Callback):
    """[callbacks.csv]: columns `round`, then every figure by name in the order they first
    appear (a figure a round lacks is left empty). Rewritten from the history at every
    start, so a resumed run's file holds no round past its checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns = ["round"]

    def on_train_begin(self, run: RunInfo) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = ["round"]
        self._write(self._row(r, m) for r, m in run.history)

    def after_round(self, round_: int, metrics: Metrics) -> bool | str:
        row = self._row(round_, metrics)
        if any(k not in self.columns for k in row):  # a new figure: a wider header
            with self.path.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
            self._write([*rows, row])
        else:
            with self.path.open("a", newline="") as fh:
                self._writer(fh).writerow(row)
        return False

    def _row(self, round_: int, metrics: Metrics) -> dict[str, str]:
        return {"round": str(round_), **{k: cell(v) for k, v in metrics.items()}}

    def _writer(self, stream: TextIO) -> csv.DictWriter:
        return csv.DictWriter(stream, self.columns, restval="", lineterminator="\n")

    def _write(self, rows: Iterable[dict[str, str]]) -> None:
        """The whole file: a header of every column so far and `rows`."""
        rows = list(rows)
        for row in rows:
            self.columns += [k for k in row if k not in self.columns]
        text = io.StringIO()
        writer = self._writer(text)
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path, text.getvalue(), "the CSV log")
