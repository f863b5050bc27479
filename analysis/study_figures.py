"""The study's figures: accuracy against rounds with seed bands, FedMRL against its
baselines, KOALA's arms, and every claim's paired difference against rounds."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from stats import paired  # noqa: E402
from study import COMPARABLE_MARGIN  # noqa: E402
from study_claims import (  # noqa: E402
    KOALA,
    KOALA_AGAINST,
    PRETRAINED_L,
    differences,
    fedmrl_key,
    stat,
    with_pretrained,
)
from study_summaries import CLIENT, GLOBAL, LAST  # noqa: E402

COMPARE_SETTINGS = ("mnist", "synthetic", "mnist-stragglers")
COMPARE_ORDER = ["majority", "local", "centralized", "fedavg", "fedavg-ft", "fedprox",
                 "fedprox-mu0", "fednova",
                 "scaffold", "fedyogi", "submodel-prefix", "submodel-rolling",
                 "submodel-magnitude", "reft", "reft-proxy250", "reft-proxy100", "reft-average",
                 "koala-homo",
                 "koala-hetero", "fedmrl", "fedmrl-eighth"]  # fmt: skip
FEDMRL_ORDER = ["majority", "standalone", "fedavg-ft", "fedmrl"]
KOALA_ORDER = [KOALA, "koala-pretrained", "koala-scratch",
               "fedavg-L-pretrained", "fedavg-small", "L", "small"]  # fmt: skip


def colour(k: int) -> tuple[float, ...]:
    """The k-th of 20 distinct colours (tab20's dark shades first)."""
    return plt.get_cmap("tab20")((2 * k) % 20 + (2 * k) // 20)


def band(ax: plt.Axes, g: pd.DataFrame, column: str, label: str, k: int) -> None:
    """Mean over seeds against round (colour k, dashed for odd k, so overlapping lines stay
    visible), with the band from the lowest to the highest seed (min-max, not sd)."""
    wide = g.pivot_table(index="round", columns="seed", values=column).dropna(how="all")
    if wide.empty:
        return
    x = wide.index  # rounds are numbered from 1
    style = {"color": colour(k), "ls": "--" if k % 2 else "-", "lw": 1.4}
    ax.plot(x, wide.mean(axis=1), label=f"{label} ({wide.shape[1]} seeds)", **style)
    ax.fill_between(x, wide.min(axis=1), wide.max(axis=1), color=colour(k), alpha=0.15, lw=0)


def _save(fig: plt.Figure, path: Path) -> Path:
    if fig.get_layout_engine() is None:  # (a constrained layout keeps its own)
        fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def figures(
    df: pd.DataFrame, curves: pd.DataFrame, pretrained: dict[int, float], folder: Path
) -> list[Path]:
    """Accuracy-against-round figures with seed bands, and FedMRL against the baselines."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    compare = curves[curves.experiment == "compare"]
    if len(compare):
        datasets = [d for d in COMPARE_SETTINGS if d in set(compare.setting)]
        fig, axes = plt.subplots(2, len(datasets), figsize=(7 * len(datasets), 10.5),
                                 squeeze=False, sharex=True, layout="constrained")  # fmt: skip
        for j, data in enumerate(datasets):
            sub = compare[compare.setting == data]
            panels = ((GLOBAL, "global model on global test"),
                      (CLIENT, "client's model on own test, client mean"))  # fmt: skip
            for i, (column, what) in enumerate(panels):
                ax = axes[i][j]
                for k, method in enumerate(COMPARE_ORDER):  # (one style per method)
                    if method in set(sub.method):
                        band(ax, sub[sub.method == method], column, method, k)
                ax.set_title(f"{data}: {what} (mean; band: min-max over seeds)", fontsize=9)
                ax.set_ylabel("accuracy")
                ax.grid(alpha=0.3)
            axes[1][j].set_xlabel("round")
        # one legend for every panel: a method's line is the same in each (seeds: the tables)
        lines = {h.get_label().split(" (")[0]: h for ax in axes.flat
                 for h in ax.get_legend_handles_labels()[0]}  # fmt: skip
        order = [m for m in COMPARE_ORDER if m in lines]
        fig.legend(
            [lines[m] for m in order], order, loc="outside lower center", ncols=7, fontsize=8
        )
        written.append(_save(fig, folder / "study_compare.png"))
    fedmrl = df[df.experiment == "fedmrl"]
    if len(fedmrl):
        settings = sorted(set(fedmrl.setting), key=fedmrl_key)
        fig, ax = plt.subplots(figsize=(10, 4.5))
        width = 0.8 / len(FEDMRL_ORDER)  # the methods' bars side by side, centred
        for k, method in enumerate(FEDMRL_ORDER):
            stats = [stat(fedmrl[(fedmrl.setting == s) & (fedmrl.method == method)]["client"])
                     for s in settings]  # fmt: skip
            x = np.arange(len(settings)) + (k - (len(FEDMRL_ORDER) - 1) / 2) * width
            errors = [s.half if s.n > 1 else np.nan for s in stats]  # (none with 1 seed)
            ax.bar(x, [s.mean for s in stats], width, yerr=errors, capsize=3, label=method,
                   color=colour(k))  # fmt: skip
        ticks = []
        for setting in settings:  # (its methods' seed counts: "1-2 seeds" while it runs)
            counts = fedmrl[fedmrl.setting == setting].groupby("method").seed.nunique()
            low, high = int(counts.min()), int(counts.max())
            ticks.append(f"{setting}\n{low if low == high else f'{low}-{high}'} seed"
                         + "s" * (high > 1))  # fmt: skip
        ax.set_xticks(np.arange(len(settings)), ticks)
        ax.set_ylabel(
            "client's model on own test: accuracy, client mean\n"
            "(last 5, mean ± 95% t interval over seeds)"
        )
        ax.set_ylim(0, 1.05)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        written.append(_save(fig, folder / "study_fedmrl.png"))
    koala = curves[curves.experiment == "koala"]
    if len(koala):
        fig, (ax, zoom) = plt.subplots(1, 2, figsize=(13, 4.8))
        for k, (setting, method) in enumerate(
            (s, m) for s in ("constrained", "unconstrained", "centralized") for m in KOALA_ORDER
        ):
            g = koala[(koala.setting == setting) & (koala.method == method)]
            if len(g):
                for a in (ax, zoom):
                    band(a, g, GLOBAL, f"{method} ({setting})", k)
        if pretrained:
            label = f"pre-trained L, before fine-tuning ({len(pretrained)} seeds)"
            ax.axhline(np.mean(list(pretrained.values())), color="k", ls="--", lw=1, label=label)
        ax.set_ylabel(
            "global test accuracy of each row's model\n(KOALA: L; FedAvg: the model named)"
        )
        ax.legend(fontsize=7, loc="lower right")
        zoom.set_xlim(*_late_rounds(koala))
        zoom.set_ylim(*_late_means(koala, GLOBAL))
        zoom.set_title("after the first quarter of the rounds, zoomed (a dip of one seed "
                       "may run off)", fontsize=9)  # fmt: skip
        for a in (ax, zoom):
            a.set_xlabel("round")
            a.grid(alpha=0.3)
        written.append(_save(fig, folder / "study_koala.png"))
    fedmrl_pairs = [
        (f"FedMRL vs {name}, {setting}", "better", CLIENT, ("fedmrl", setting, "fedmrl"),
         ("fedmrl", setting, method))
        for setting in sorted(set(df[df.experiment == "fedmrl"]["setting"]), key=fedmrl_key)
        for name, method in (("Standalone", "standalone"), ("FedAvg-ft", "fedavg-ft"))
    ]  # fmt: skip
    paired_figure = paired_against_rounds(with_pretrained(curves, pretrained),
                                          [*PAIRS, *fedmrl_pairs],
                                          folder / "study_paired.png")  # fmt: skip
    if paired_figure is not None:
        written.append(paired_figure)
    return written


PAIRS = (  # (claim, kind, column, (experiment, setting, method) of a, ... of b): a - b
    *((f"{name} vs FedAvg, {data}", "comparable", GLOBAL, ("compare", data, method),
       ("compare", data, "fedavg"))
      for data in ("mnist", "synthetic")
      for name, method in (("sub-models", "submodel-prefix"), ("REFT", "reft"))),
    ("FedProx vs FedAvg, mnist-stragglers", "better", GLOBAL,
     ("compare", "mnist-stragglers", "fedprox"), ("compare", "mnist-stragglers", "fedavg")),
    *((f"KOALA's L vs {name} ({fleet})", kind, GLOBAL, ("koala", fleet, KOALA),
       ("koala", fleet, method)) for fleet, method, name, *_, kind in KOALA_AGAINST),
    ("KOALA's L vs the pre-trained L", "better", GLOBAL, ("koala", "constrained", KOALA),
     ("koala", "constrained", PRETRAINED_L)),
)  # fmt: skip


def paired_against_rounds(curves: pd.DataFrame, pairs: list[tuple], path: Path) -> Path | None:
    """One panel per claim: the paired per-seed difference a - b of the mean of each
    run's last LAST evaluations up to each round, its mean over seeds and 95% t interval
    (analysis/stats.py) against rounds, with 0 and, for "comparable", -COMPARABLE_MARGIN:
    where the verdict settles."""
    found = []
    for claim, kind, column, a, b in pairs:
        d = differences(curves, a, b, column).dropna(axis=1, how="all")  # (paired seeds)
        if len(d) and d.shape[1] >= 2:
            found.append((claim, kind, column, d))
    if not found:
        return None
    cols = min(3, len(found))
    rows = -(-len(found) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows + 0.4), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax, (claim, kind, column, d) in zip(axes.flat, found, strict=False):
        intervals = [paired(d.loc[r].to_numpy()) for r in d.index]
        keep = [i for i, p in enumerate(intervals) if p is not None]
        x = d.index[keep]
        ax.plot(x, [intervals[i].mean for i in keep], color="C0", label="mean over seeds")
        ax.fill_between(x, [intervals[i].low for i in keep], [intervals[i].high for i in keep],
                        color="C0", alpha=0.2, lw=0, label="95% t interval")  # fmt: skip
        ax.axhline(0, color="k", lw=0.8)
        if kind == "comparable":
            ax.axhline(-COMPARABLE_MARGIN, color="C3", ls="--", lw=1, label="-margin")
        ax.set_ylim(*_late_range(x, [intervals[i] for i in keep], kind))
        title = f"{claim} ({kind}; {int(d.iloc[-1].notna().sum())} seeds)"
        ax.set_title(textwrap.fill(title, 56), fontsize=9)  # (a long one: two lines)
        ax.set_xlabel("round")
        metric = "client-mean acc" if column == CLIENT else "global acc"
        ax.set_ylabel(f"{metric}: first minus second\n(paired, last-{LAST} mean)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(found) :]:
        ax.set_visible(False)
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_legend_handles_labels()[0]}
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=3, fontsize=8)
    return _save(fig, path)


def _late_start(first: float, last: float) -> float:
    """Where the rounds after the first quarter of first..last begin."""
    return first + 0.25 * (last - first)


def _late_rounds(curves: pd.DataFrame) -> tuple[float, float]:
    """The rounds after the first quarter of `curves`' rounds."""
    first, last = curves["round"].min(), curves["round"].max()
    return _late_start(first, last), last


def _late_means(curves: pd.DataFrame, column: str) -> tuple[float, float]:
    """y limits that show the means over seeds of `column` after the first quarter of the
    rounds, each (setting, method)'s at each round, but the lowest 2% (one seed's dip)."""
    late = curves[curves["round"] >= _late_rounds(curves)[0]]
    means = late.groupby(["setting", "method", "round"])[column].mean()
    low, high = means.quantile(0.02), means.max()
    pad = 0.1 * (high - low or 0.01)
    return low - pad, high + pad


def _late_range(rounds: pd.Index, intervals: list, kind: str) -> tuple[float, float]:
    """y limits that show the intervals after the first quarter of the rounds, and the
    verdict's bound(s): where a verdict settles is read there (the early rounds, far from
    it, may run off the axis)."""
    late = [p for r, p in zip(rounds, intervals, strict=True)
            if r >= _late_start(rounds[0], rounds[-1])]  # fmt: skip
    bounds = [0.0, -COMPARABLE_MARGIN] if kind == "comparable" else [0.0]
    low = min([p.low for p in late] + bounds)
    high = max([p.high for p in late] + bounds)
    pad = 0.1 * (high - low or 0.01)
    return low - pad, high + pad
