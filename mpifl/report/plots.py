"""Figures of one or more runs: accuracy, participation by device class, rank wall time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mpifl.report.summary import STATUSES, by_device_class  # noqa: E402
from mpifl.results.reader import Run  # noqa: E402

COLOURS = {
    "trained": "#2a9d8f", "unavailable": "#adb5bd", "infeasible": "#e76f51", "late": "#f4a261",
    "rejected": "#6d597a", "dropped": "#8d99ae", "surplus": "#b5e48c", "oom": "#9d0208",
}  # fmt: skip


def _finish(fig: plt.Figure, title: str, path: Path) -> None:
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _label(ax: plt.Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def accuracy(runs: list[Run], path: Path) -> None:
    """Test accuracy against round, virtual time and cumulative bytes (down + up)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    for run in runs:
        r = run.tables["rounds"]
        ok = r["test_accuracy"].notna()
        mbytes = (r["bytes_down"] + r["bytes_up"]).cumsum() / 1e6
        for ax, x in zip(axes, (r["round"] + 1, r["virtual_time"], mbytes), strict=True):
            ax.plot(x[ok], r["test_accuracy"][ok], marker=".", label=run.name)
    labels = ("round", "virtual time (s)", "cumulative traffic, down + up (MB)")
    for ax, label in zip(axes, labels, strict=True):
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (headline model)")
    axes[0].legend(fontsize=8)
    _finish(fig, "Accuracy on the global test set", path)


def participation(runs: list[Run], path: Path) -> None:
    """Client-rounds per device class, stacked by status, one panel per run."""
    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 4), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        table = by_device_class(run)
        bottom = np.zeros(len(table))
        for status in STATUSES:
            values = table[status].to_numpy()
            if values.any():
                ax.bar(table["class"], values, bottom=bottom, label=status, color=COLOURS[status])
                bottom += values
        _label(ax, run.name, "device class", "client-rounds")
    _finish(fig, "Participation by device class", path)


def rank_time(runs: list[Run], path: Path) -> None:
    """Mean wall seconds per round on each rank: client training, collectives, I/O, and
    the rest (server step such as distillation, evaluation, planning)."""
    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 4), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        mean = (
            run.tables["ranks"]
            .groupby("rank")[["train_time", "comm_time", "io_time", "wall_time"]]
            .mean()
        )
        other = (mean["wall_time"] - mean[["train_time", "comm_time", "io_time"]].sum(axis=1)).clip(
            lower=0
        )
        parts = {
            "training": mean["train_time"],
            "collectives": mean["comm_time"],
            "I/O": mean["io_time"],
            "other": other,
        }
        bottom = np.zeros(len(mean))
        for label, values in parts.items():
            ax.bar(mean.index.astype(str), values, bottom=bottom, label=label)
            bottom += values.to_numpy()
        _label(ax, run.name, "rank", "wall seconds per round (mean)")
    _finish(fig, "Wall-time split per rank", path)


def write_all(runs: list[Run], folder: Path) -> list[Path]:
    """Every figure into `folder`; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, draw in (
        ("accuracy", accuracy),
        ("participation", participation),
        ("ranks", rank_time),
    ):
        path = folder / f"{name}.png"
        draw(runs, path)
        files.append(path)
    return files
