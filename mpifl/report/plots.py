"""Figures of one or more runs: accuracy, participation by device class, rank wall time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mpifl.report.labels import legend  # noqa: E402
from mpifl.report.summary import STATUSES, by_device_class  # noqa: E402
from mpifl.results.reader import Run  # noqa: E402

COLOURS = {
    "trained": "#2a9d8f", "unavailable": "#adb5bd", "infeasible": "#e76f51", "late": "#f4a261",
    "rejected": "#6d597a", "dropped": "#8d99ae", "surplus": "#b5e48c", "oom": "#9d0208",
    "partial": "#e9c46a", "low_battery": "#264653",
}  # fmt: skip


def _finish(fig: plt.Figure, title: str, path: Path, key: list[str]) -> None:
    """Title, the key of short setting names (if any) below the panels, save, close."""
    fig.suptitle(title)
    if key:
        text = "\n".join(["settings:", *key])
        fig.supxlabel(text, ha="left", multialignment="left", x=0.01, fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


TAB10 = plt.get_cmap("tab10").colors


def _colours(labels: list[str]) -> dict[str, str]:
    """One colour per setting, the same in every panel and figure."""
    palette = TAB10 if len(set(labels)) <= 10 else plt.get_cmap("tab20").colors
    return {label: palette[i % len(palette)] for i, label in enumerate(dict.fromkeys(labels))}


def _round_axis(ax: plt.Axes) -> None:
    """An x axis of rounds: whole numbers only."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round (1 = the first)")


def _settings(runs: list[Run], labels: list[str]) -> dict[str, list[Run]]:
    """Runs grouped by label (the seeds of one setting), in first-seen order."""
    groups: dict[str, list[Run]] = {}
    for run, label in zip(runs, labels, strict=True):
        groups.setdefault(label, []).append(run)
    return groups


METRICS = (
    ("test_accuracy", "accuracy: global model\non the global test set"),
    ("client_accuracy", "accuracy: each client's model\non its own test split (mean)"),
)


def accuracy(runs: list[Run], labels: list[str], path: Path, key: list[str]) -> None:
    """Accuracy against round, virtual time, cumulative bytes (down + up) and cumulative
    energy of the clients' work (the last two on a log scale when the settings differ by
    more than 20x), one row per metric the runs have: the global model on the global test
    set, each client's model on its own test split. Per setting the mean over its seeds,
    with a band from the lowest to the highest seed; one legend beside the panels."""
    groups, colours = _settings(runs, labels), _colours(labels)
    rows = [m for m in METRICS if any(g.tables["rounds"][m[0]].notna().any() for g in runs)]
    fig, axes = plt.subplots(len(rows) or 1, 4, figsize=(20, 4.2 * max(len(rows), 1)),
                             sharey="row", squeeze=False, layout="constrained")  # fmt: skip
    totals: dict[int, list[float]] = {2: [], 3: []}
    for i, (column, what) in enumerate(rows):
        for label, group in groups.items():
            tables = [g.tables["rounds"] for g in group]
            n = min(len(t) for t in tables)
            acc = np.stack([t[column].to_numpy()[:n] for t in tables])
            ok = ~np.isnan(acc).any(axis=0)
            if not ok.any():
                continue
            xs = (
                tables[0]["round"].to_numpy()[:n],
                np.mean([t["virtual_time"].to_numpy()[:n] for t in tables], axis=0),
                np.mean([((t["bytes_down"] + t["bytes_up"]).cumsum() / 1e6).to_numpy()[:n]
                         for t in tables], axis=0),
                np.mean([t["energy"].cumsum().to_numpy()[:n] for t in tables], axis=0),
            )  # fmt: skip
            for k in totals:
                totals[k].append(xs[k][-1])
            seeds = f" ({len(group)} seeds)" if len(group) > 1 else ""
            for ax, x in zip(axes[i], xs, strict=True):
                if np.isnan(x).all():  # energy: not recorded before format 8
                    continue
                colour = colours[label]
                ax.plot(x[ok], acc.mean(axis=0)[ok], marker=".", label=label + seeds, color=colour)
                if len(group) > 1:
                    low, high = acc.min(axis=0)[ok], acc.max(axis=0)[ok]
                    ax.fill_between(x[ok], low, high, color=colour, alpha=0.2, lw=0)
        axes[i][0].set_ylabel(what, fontsize=9)
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines()}
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside right upper", fontsize=8)
    names = ("round (1 = the first)", "virtual time (s)", "cumulative traffic, down + up (MB)",
             "cumulative energy of client work: training + radio (J)")  # fmt: skip
    for row in axes:
        for ax, name in zip(row, names, strict=True):
            ax.set_xlabel(name)
            ax.grid(alpha=0.3)
        row[0].xaxis.set_major_locator(MaxNLocator(integer=True))
        for k, values in totals.items():
            positive = [t for t in values if t > 0]
            if positive and max(positive) > 20 * min(positive):
                row[k].set_xscale("log")
                row[k].set_xlabel(names[k] + ", log scale")
    _finish(fig, "Accuracy (mean over seeds, band: lowest to highest seed)", path, key)


def eval_groups(runs: list[Run], labels: list[str], path: Path, key: list[str]) -> None:
    """Every evaluated model of the `eval` table against round (global model, sub-model
    tiers, pruned models, KOALA families, client scores), one panel per setting, the mean
    over its seeds; each group keeps its colour in every panel, one legend beside them."""
    groups = _settings(runs, labels)
    tables = {
        label: pd.concat([g.tables["eval"] for g in group]) for label, group in groups.items()
    }
    names = list(dict.fromkeys(n for t in tables.values() for n in t["group"]))
    colours = _colours(names)
    fig, axes = _panels(len(groups))
    for ax, (label, table) in zip(axes, tables.items(), strict=True):
        for name, rows in table.groupby("group", sort=False):
            mean = rows.groupby("round")["accuracy"].mean()
            ax.plot(mean.index, mean.to_numpy(), marker=".", label=name, color=colours[name])
        ax.set_title(label, fontsize=9)
        _round_axis(ax)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (eval group: what was scored on what)")
    handles = {h.get_label(): h for ax in axes for h in ax.get_lines()}
    fig.legend(handles.values(), handles.keys(), loc="outside right upper", fontsize=8)
    _finish(fig, "Every evaluated model (docs/results.md, eval groups)", path, key)


def _panels(n: int) -> tuple[plt.Figure, np.ndarray]:
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 4), squeeze=False, sharey=True,
                             layout="constrained")  # fmt: skip
    return fig, axes[0]


def participation(runs: list[Run], labels: list[str], path: Path, key: list[str]) -> None:
    """Client-rounds per device class, stacked by status, one panel per setting (mean over
    its seeds); shared y-axis, legend beside the panels."""
    groups = _settings(runs, labels)
    fig, axes = _panels(len(groups))
    tallest = 0.0
    for ax, (label, group) in zip(axes, groups.items(), strict=True):
        table = pd.concat([by_device_class(g) for g in group]).groupby("class", sort=False)
        table = table[STATUSES].mean().reset_index()
        bottom = np.zeros(len(table))
        for status in STATUSES:
            values = table[status].to_numpy()
            if values.any():
                ax.bar(table["class"], values, bottom=bottom, label=status, color=COLOURS[status])
                bottom += values
        for x, (trained, total) in enumerate(zip(table["trained"], bottom, strict=True)):
            share = f"{trained / total:.0%} trained" if total else ""
            ax.annotate(share, (x, total), ha="center", va="bottom", fontsize=8)
        tallest = max(tallest, bottom.max(initial=0.0))
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("device class")
    axes[0].set_ylim(0, 1.15 * tallest or 1.0)  # room for the labels under the titles
    axes[0].set_ylabel("client-rounds (mean over seeds)\nlabel: share trained")
    handles = {h.get_label(): h for ax in axes for h in ax.containers}
    fig.legend(handles.values(), handles.keys(), loc="outside right center")
    _finish(fig, "Participation by device class", path, key)


def rank_time(runs: list[Run], labels: list[str], path: Path, key: list[str]) -> None:
    """Mean wall seconds per round on each rank: client training, collectives, I/O, and
    the rest (server step such as distillation, evaluation, planning); one panel per
    setting (mean over its seeds), shared y-axis."""
    groups = _settings(runs, labels)
    fig, axes = _panels(len(groups))
    columns = ["train_time", "comm_time", "io_time", "wall_time"]
    for ax, (label, group) in zip(axes, groups.items(), strict=True):
        mean = pd.concat([g.tables["ranks"] for g in group]).groupby("rank")[columns].mean()
        other = (mean["wall_time"] - mean[columns[:3]].sum(axis=1)).clip(lower=0)
        parts = {"client training": mean["train_time"], "collectives": mean["comm_time"],
                 "I/O (rank 0 writes the file)": mean["io_time"],
                 "other: server step (distillation...),\nevaluation, planning": other}  # fmt: skip
        bottom = np.zeros(len(mean))
        for (name, values), colour in zip(parts.items(), TAB10, strict=False):
            ax.bar(mean.index.astype(str), values, bottom=bottom, label=name, color=colour)
            bottom += values.to_numpy()
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("rank")
    axes[0].set_ylabel("wall seconds per round (mean)")
    handles = {h.get_label(): h for h in axes[0].containers}
    fig.legend(handles.values(), handles.keys(), loc="outside right center")
    _finish(fig, "Wall-time split per rank", path, key)


def _class_energy(run: Run, name: str) -> pd.DataFrame:
    """The `energy` rows of device class `name` with `days`: the round's end on the
    virtual clock, in the run's days (emulation.diurnal_period); rounds not yet in the
    `rounds` table (a run still writing) left out."""
    rows = run.tables["energy"]
    rows = rows[rows["device_class"] == name].merge(
        run.tables["rounds"][["round", "virtual_time"]], on="round"
    )
    day = float(run.config.get("emulation", {}).get("diurnal_period", 86400.0))
    return rows.assign(days=rows["virtual_time"] / day)


def batteries(runs: list[Run], labels: list[str], path: Path, key: list[str]) -> None:
    """Per setting (the mean over its seeds), against virtual time in days (each run's
    emulation.diurnal_period): each device class's mean state of charge (solid, left
    axis) and its devices below the threshold (dashed, right axis, the same scale in
    every panel), from the `energy` table."""
    groups = _settings(runs, labels)
    fig, axes = _panels(len(groups))
    twins = [ax.twinx() for ax in axes]
    for ax, twin, (label, group) in zip(axes, twins, groups.items(), strict=True):
        for name in group[0].class_names:
            rows = [_class_energy(g, name) for g in group]
            n = min(len(r) for r in rows)
            charge = np.mean([r["charge"].to_numpy()[:n] for r in rows], axis=0)
            if not n or np.isnan(charge).all():
                continue
            days = np.mean([r["days"].to_numpy()[:n] for r in rows], axis=0)
            line = ax.plot(days, charge, label=f"{name}: mean charge")[0]
            low = np.mean([r["low_battery"].to_numpy()[:n] for r in rows], axis=0)
            twin.plot(days, low, ls="--", color=line.get_color(), label=f"{name}: below threshold")
        ax.set_ylim(0, 1)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("virtual time (days)")
        ax.grid(alpha=0.3)
        twin.set_ylabel("devices below the threshold\n(declining)")
        lines = ax.get_lines() + twin.get_lines()
        ax.legend(lines, [h.get_label() for h in lines], fontsize=7, loc="lower left")
    top = max((line.get_ydata().max() for t in twins for line in t.get_lines()), default=0)
    for twin in twins:
        twin.set_ylim(0, max(1.0, 1.1 * top))
    axes[0].set_ylabel("mean state of charge (fraction)\nof battery-powered devices")
    _finish(fig, "Batteries by device class (energy table)", path, key)


def write_all(runs: list[Run], labels: list[str], folder: Path) -> list[Path]:
    """Every figure into `folder` (runs grouped by `labels`, long labels shown as S1, S2,
    ... with a key under the panels); returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    labels, key = legend(labels, longest=40)
    files = []
    for name, draw in (
        ("accuracy", accuracy),
        ("eval_groups", eval_groups),
        ("participation", participation),
        ("ranks", rank_time),
        ("batteries", batteries),
    ):
        path = folder / f"{name}.png"
        draw(runs, labels, path, key)
        files.append(path)
    return files
