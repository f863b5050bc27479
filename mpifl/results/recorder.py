"""Rank 0's record of a run: what goes into the result file, row by row, and the summary.

The Recorder owns the file's root attributes, the per-round tables (`rounds`,
`participation`, `ranks`, `eval`, `server`, `client_metrics`) and each round's figures by name (what
callbacks see), the final state and status, and the end-of-run summary; ResultsWriter
below it owns HDF5 (SWMR, flushing, free space).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mpifl.results.metrics import metric_history, round_metrics
from mpifl.results.schema import (
    EVAL_DTYPE,
    ROUNDS_DTYPE,
    SERVER_DTYPE,
    WORK_ENERGY,
    Status,
    contributes,
)
from mpifl.results.writer import ClientMetrics, ResultsWriter


class Scored(Protocol):
    """One evaluation: a model (group) on a data set (kit.evaluate.EvalResult)."""

    group: str
    loss: float
    accuracy: float
    samples: int


class Recorder:
    """Appends a run's rounds to its result file and keeps what the summary needs."""

    def __init__(self, writer: ResultsWriter, class_names: list[str]) -> None:
        self.writer, self.class_names = writer, class_names
        self.by_class = np.zeros((len(class_names), len(Status)), dtype=np.int64)
        self.energy_by_class = np.zeros(len(class_names))  # J of work (training + radio)
        self._rounds: list[np.ndarray] = []
        self.history: list[tuple[int, dict[str, float]]] = []  # figures kept on a resume
        self.latest: dict[str, float] = {}  # figures of the last round recorded
        self.stopped: tuple[int, str] | None = None  # (round, reason) of a callback's stop
        self.earlier_wall = 0.0  # s: the wall time of the rounds earlier parts of a run ran

    @classmethod
    def create(
        cls,
        output: Path,
        attrs: dict[str, Any],
        fleet_rows: np.ndarray,
        class_names: list[str],
        client_metrics: ClientMetrics | None = None,
    ) -> Recorder:
        """A new result file with the run's attributes, its fleet and the method's declared
        per-client figures (name -> (unit, description))."""
        writer = ResultsWriter(output, True, attrs, fleet_rows, class_names, client_metrics)
        return cls(writer, class_names)

    @classmethod
    def resume(
        cls,
        output: Path,
        next_round: int,
        part: dict[str, Any],
        class_names: list[str],
        client_metrics: ClientMetrics | None = None,
    ) -> Recorder:
        """The result file of a run resumed before round `next_round` (from 0) by a part
        with attributes `part` (see `ResultsWriter.reopen`): rows of later rounds dropped,
        the counts so far restored (the declared per-client figures are the file's;
        `client_metrics` for a file of a format without them)."""
        writer, kept = ResultsWriter.reopen(output, next_round, part, client_metrics)
        self = cls(writer, class_names)
        part = kept["participation"]
        self.kept_participation = part  # what a resumed selector replays
        np.add.at(self.by_class, (part["device_class"], part["status"]), 1)
        energy = kept["energy"]
        np.add.at(self.energy_by_class, energy["device_class"],
                  energy["energy_train"] + energy["energy_radio"])  # fmt: skip
        if len(kept["rounds"]):
            self._rounds.append(kept["rounds"])
            self.earlier_wall = float(kept["rounds"]["wall_time"].sum())
        self.history = metric_history(kept)
        return self

    @property
    def attrs(self) -> dict[str, Any]:
        """The file's root attributes."""
        return self.writer.attrs

    @property
    def rounds(self) -> np.ndarray:
        """Every `rounds` row recorded (including those kept on a resume)."""
        return np.concatenate(self._rounds) if self._rounds else np.zeros(0, ROUNDS_DTYPE)

    def record_round(
        self,
        round_: int,
        duration: float,
        virtual_time: float,
        participation: np.ndarray,
        rank_rows: np.ndarray,
        evals: list[Scored],
        metrics: dict[str, float],
        wall_start: float,
        client_metrics: np.ndarray | None = None,
        energy: np.ndarray | None = None,
    ) -> np.void:
        """Record round `round_` (from 0): its participation rows (every sampled client),
        the ranks' telemetry, the evaluations, the server step's metrics, the trained
        clients' `client_metrics` rows (each client's in the method's order; sorted by
        client here, so that the bytes do not depend on the ranks) and the round's
        `energy` rows per device class; returns the `rounds` row."""
        participation = np.sort(participation, order="client")
        status = participation["status"]
        np.add.at(self.by_class, (participation["device_class"], status), 1)
        row = np.zeros(1, dtype=ROUNDS_DTYPE)[0]
        row["round"], row["duration"], row["virtual_time"] = round_ + 1, duration, virtual_time
        row["sampled"] = len(participation)
        for s in Status:
            row[s.name.lower()] = int((status == s).sum())
        row["bytes_down"] = participation["bytes_down"].sum()
        row["bytes_up"] = participation["bytes_up"].sum()
        row["energy"] = sum(participation[k].sum() for k in WORK_ENERGY)
        ok = contributes(status)
        samples = participation["samples"][ok].astype(np.float64)
        losses = participation["loss"][ok].astype(np.float64)
        row["train_loss"] = (samples @ losses) / samples.sum() if ok.any() else math.nan
        groups = {e.group: e for e in evals}
        for column, group, field in (
            ("test_loss", "global", "loss"),
            ("test_accuracy", "global", "accuracy"),
            ("client_accuracy", "clients/mean", "accuracy"),
            ("client_accuracy_pooled", "clients/pooled", "accuracy"),
        ):
            row[column] = getattr(groups[group], field) if group in groups else math.nan
        eval_rows = np.array(
            [(round_ + 1, e.group.encode(), e.loss, e.accuracy, e.samples) for e in evals],
            dtype=EVAL_DTYPE,
        )
        server_rows = np.array(
            [(round_ + 1, name.encode(), value) for name, value in metrics.items()],
            dtype=SERVER_DTYPE,
        )
        self.writer.append("participation", participation)
        self.writer.append("eval", eval_rows)
        self.writer.append("server", server_rows)
        if energy is not None:
            self.writer.append("energy", energy)
            self.energy_by_class += energy["energy_train"] + energy["energy_radio"]
        if client_metrics is not None and len(client_metrics):
            order = np.argsort(client_metrics["client"], kind="stable")
            self.writer.append("client_metrics", client_metrics[order])
        row["wall_time"] = time.perf_counter() - wall_start
        self.writer.append("rounds", np.array([row]))
        rank_rows["io_time"][0] = self.writer.seconds
        self.writer.seconds = 0.0
        self.writer.append("ranks", rank_rows)  # last: a reader takes it as the round's end
        self._rounds.append(np.array([row]))
        self.latest = round_metrics(row, eval_rows, server_rows)
        return row

    def run_wall(self, wall: float) -> float:
        """The run's wall time: this part's round loop (`wall`) and earlier parts' rounds."""
        return self.earlier_wall + wall

    def complete(self, final_state: dict[str, np.ndarray], wall: float) -> None:
        """Record the final state and the status `complete` (with the round and reason of
        a callback's stop, if one stopped the run); close the file. `wall`: this part's
        round loop (a resumed run's wall_seconds adds its earlier parts' rounds)."""
        extra = {}
        if self.stopped is not None:
            extra = {"stopped_round": self.stopped[0], "stop_reason": self.stopped[1]}
        self.writer.close(
            "complete", final_state, end_time=time.time(), wall_seconds=self.run_wall(wall), **extra
        )

    def interrupted(self, next_round: int) -> None:
        """Record the status `interrupted` before round `next_round` (from 0); close."""
        self.writer.close("interrupted", end_time=time.time(), next_round=next_round + 1)

    def fail(self, error: str) -> bool:
        """Mark the run `failed`, as far as the disk allows (never raises)."""
        return self.writer.fail(error, end_time=time.time())

    @property
    def path(self) -> Path:
        """The result file."""
        return self.writer.path

    def summary(self, name: str, n_ranks: int, wall: float) -> str:
        """The end-of-run summary table."""
        rounds, by_class = self.rounds, self.by_class
        lines = [
            f"mpifl run '{name}' complete: {len(rounds)} rounds, {n_ranks} "
            f"rank{'s' if n_ranks != 1 else ''}, {self.run_wall(wall):.1f} s wall"
            + (f" ({wall:.1f} s in this part)" if self.earlier_wall else "")
        ]
        if self.stopped is not None:
            lines.append(f"  stopped early   after round {self.stopped[0]}: {self.stopped[1]}")
        for label, key in (
            ("final accuracy ", "test_accuracy"),
            ("client accuracy", "client_accuracy"),
        ):
            acc = rounds[key]
            evaluated = np.flatnonzero(~np.isnan(acc))
            if len(evaluated):
                last, best = evaluated[-1], evaluated[np.argmax(acc[evaluated])]
                lines.append(
                    f"  {label} {acc[last]:.4f} (round {rounds['round'][last]})   "
                    f"best {acc[best]:.4f} (round {rounds['round'][best]})"
                )
        lines.append(
            "    (accuracy: global model, global test set; client accuracy: each client's"
            " model, own test split, mean over clients)"
        )
        mb = lambda n: f"{n / 1e6:.2f} MB"  # noqa: E731
        energy = rounds["energy"]
        lines += [
            f"  virtual time    {rounds['virtual_time'][-1]:.1f} s",
            f"  bytes down/up   {mb(rounds['bytes_down'].sum())} / {mb(rounds['bytes_up'].sum())}",
            f"  energy          {np.nansum(energy):.4g} J of client work (training + radio), "
            f"{np.nanmean(energy) if len(energy) else 0.0:.4g} J per round",
            "  participation by device class (energy: J of client work):",
        ]
        header = ["class", "sampled"] + [s.name.lower() for s in Status] + ["energy"]
        widths = [max(8, len(h) + 2) for h in header[:-1]] + [12]
        lines.append("    " + "".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
        rows = [*zip(self.class_names, by_class, self.energy_by_class, strict=True)]
        for name_, counts, joules in [
            *rows,
            ("all", by_class.sum(axis=0), self.energy_by_class.sum()),
        ]:
            cells = (
                [name_, str(int(counts.sum()))] + [str(int(c)) for c in counts] + [f"{joules:.4g}"]
            )
            lines.append("    " + "".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)))
        lines.append(f"  results         {self.path}")
        return "\n".join(lines)
