"""Figures of one or more runs: accuracy, participation by device class, rank wall time."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mpifl.report.summary import STATUSES, by_device_class  # noqa: E402
from mpifl.results.reader import Run  # noqa: E402

COLOURS = {
    "trained": "#2a9d8f", "unavailable": "#adb5bd", "infeasible": "#e76f51", "late": "#f4a261",
    "rejected": "#6d597a", "dropped": "#8d99ae", "surplus": "#b5e48c", "oom": "#9d0208",
}  # fmt: skip


def _finish(fig: plt.Figure, title: str, path: Path) -> None:
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _settings(runs: list[Run], labels: list[str]) -> dict[str, list[Run]]:
    """Runs grouped by label (the seeds of one setting), in first-seen order."""
    groups: dict[str, list[Run]] = {}
    for run, label in zip(runs, labels, strict=True):
        groups.setdefault(label, []).append(run)
    return groups


def accuracy(runs: list[Run], labels: list[str], path: Path) -> None:
    """Global test accuracy against round, virtual time and cumulative bytes (down + up):
    per setting the mean over its seeds, with a band from the lowest to the highest seed."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    for label, group in _settings(runs, labels).items():
        tables = [g.tables["rounds"] for g in group]
        n = min(len(t) for t in tables)
        acc = np.stack([t["test_accuracy"].to_numpy()[:n] for t in tables])
        ok = ~np.isnan(acc).any(axis=0)
        if not ok.any():
            continue
        vtime = np.mean([t["virtual_time"].to_numpy()[:n] for t in tables], axis=0)
        mbytes = np.mean(
            [((t["bytes_down"] + t["bytes_up"]).cumsum() / 1e6).to_numpy()[:n] for t in tables],
            axis=0,
        )
        seeds = f" ({len(group)} seeds)" if len(group) > 1 else ""
        for ax, x in zip(axes, (np.arange(1, n + 1), vtime, mbytes), strict=True):
            line = ax.plot(x[ok], acc.mean(axis=0)[ok], marker=".", label=label + seeds)[0]
            if len(group) > 1:
                low, high = acc.min(axis=0)[ok], acc.max(axis=0)[ok]
                ax.fill_between(x[ok], low, high, color=line.get_color(), alpha=0.2, lw=0)
    names = ("round (1 = the first)", "virtual time (s)", "cumulative traffic, down + up (MB)")
    for ax, name in zip(axes, names, strict=True):
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("global model: global test accuracy")
    if axes[0].lines:
        axes[0].legend(fontsize=8)
    _finish(fig, "Accuracy on the global test set (mean over seeds, band: min-max)", path)


def _panels(n: int) -> tuple[plt.Figure, np.ndarray]:
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 4), squeeze=False, sharey=True)
    return fig, axes[0]


def participation(runs: list[Run], labels: list[str], path: Path) -> None:
    """Client-rounds per device class, stacked by status, one panel per setting (mean over
    its seeds); shared y-axis, legend beside the panels."""
    groups = _settings(runs, labels)
    fig, axes = _panels(len(groups))
    for ax, (label, group) in zip(axes, groups.items(), strict=True):
        table = pd.concat([by_device_class(g) for g in group]).groupby("class", sort=False)
        table = table[STATUSES].mean().reset_index()
        bottom = np.zeros(len(table))
        for status in STATUSES:
            values = table[status].to_numpy()
            if values.any():
                ax.bar(table["class"], values, bottom=bottom, label=status, color=COLOURS[status])
                bottom += values
        ax.set_title(textwrap.fill(label, 45), fontsize=9)
        ax.set_xlabel("device class")
    axes[0].set_ylabel("client-rounds (mean over seeds)")
    handles = {h.get_label(): h for ax in axes for h in ax.containers}
    fig.legend(handles.values(), handles.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5))
    _finish(fig, "Participation by device class", path)


def rank_time(runs: list[Run], labels: list[str], path: Path) -> None:
    """Mean wall seconds per round on each rank: client training, collectives, I/O, and
    the rest (server step such as distillation, evaluation, planning); one panel per
    setting (mean over its seeds), shared y-axis."""
    groups = _settings(runs, labels)
    fig, axes = _panels(len(groups))
    columns = ["train_time", "comm_time", "io_time", "wall_time"]
    for ax, (label, group) in zip(axes, groups.items(), strict=True):
        mean = pd.concat([g.tables["ranks"] for g in group]).groupby("rank")[columns].mean()
        other = (mean["wall_time"] - mean[columns[:3]].sum(axis=1)).clip(lower=0)
        parts = {"training": mean["train_time"], "collectives": mean["comm_time"],
                 "I/O": mean["io_time"], "other": other}  # fmt: skip
        bottom = np.zeros(len(mean))
        for name, values in parts.items():
            ax.bar(mean.index.astype(str), values, bottom=bottom, label=name)
            bottom += values.to_numpy()
        ax.set_title(textwrap.fill(label, 45), fontsize=9)
        ax.set_xlabel("rank")
    axes[0].set_ylabel("wall seconds per round (mean)")
    handles = {h.get_label(): h for h in axes[0].containers}
    fig.legend(handles.values(), handles.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5))
    _finish(fig, "Wall-time split per rank", path)


def write_all(runs: list[Run], labels: list[str], folder: Path) -> list[Path]:
    """Every figure into `folder` (runs grouped by `labels`); returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, draw in (
        ("accuracy", accuracy),
        ("participation", participation),
        ("ranks", rank_time),
    ):
        path = folder / f"{name}.png"
        draw(runs, labels, path)
        files.append(path)
    return files
