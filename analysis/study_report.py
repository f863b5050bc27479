"""Tables and figures of the comparison study (results of analysis/study.py).

    python analysis/study_report.py results/study [--figures docs/figures] [--target 0.9]

Prints a Markdown table per data set: mean (and spread over seeds) of participation,
accuracy, traffic per round, client FLOPs and client storage; writes accuracy-against-
round and participation figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mpifl.report.summary import summarize  # noqa: E402
from mpifl.results import read_run  # noqa: E402


def collect(root: Path, target: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one summary row per finished run, every run's rounds table), keyed by data/method."""
    rows, curves = [], []
    for path in sorted(root.glob("*/task_*.h5")):
        run = read_run(path)
        if run.attrs.get("status") != "complete":
            continue
        data, method = path.parent.name.split("-", 1)
        part = run.tables["participation"]
        trained = part[part["status"] == "trained"]
        row = summarize(run, target) | {"data": data, "method": method}
        row["storage_kB"] = trained["bytes_up"].mean() / 1e3 if len(trained) else np.nan
        row["kB_down_per_round"] = row["MB_down"] * 1e3 / row["rounds"]
        row["kB_up_per_round"] = row["MB_up"] * 1e3 / row["rounds"]
        rows.append(row)
        curve = run.tables["rounds"][["round", "test_accuracy"]].assign(data=data, method=method)
        curves.append(curve)
    if not rows:
        raise SystemExit(f"no finished runs under {root}")
    df = pd.DataFrame(rows)
    order = ORDER + sorted(set(df["method"]) - set(ORDER))
    df["method"] = pd.Categorical(df["method"], order, ordered=True)
    curves = pd.concat(curves, ignore_index=True)
    curves["method"] = pd.Categorical(curves["method"], order, ordered=True)
    return df.sort_values(["data", "method"]), curves


ORDER = ["fedavg", "submodel-prefix", "submodel-rolling", "submodel-magnitude", "reft",
         "koala-homo", "koala-hetero", "fedmrl"]  # fmt: skip
COLUMNS = {
    "trained": "trained", "infeasible": "infeasible",
    "final_global_test_acc": "final acc (global model, global test)",
    "final_client_acc_mean": "final acc (client's model, own test, client mean)",
    "kB_down_per_round": "kB down/round", "kB_up_per_round": "kB up/round",
    "client_MFLOP": "MFLOP/client", "storage_kB": "client storage kB",
}  # fmt: skip


def table(df: pd.DataFrame, data: str) -> str:
    """Markdown: mean over seeds, with the spread (max - min) of the accuracies."""
    sub = df[df["data"] == data]
    grouped = sub.groupby("method", observed=True)
    lines = [
        "| method | seeds | " + " | ".join(COLUMNS.values()) + " |",
        "|" + "---|" * (len(COLUMNS) + 2),
    ]
    for method, g in grouped:
        cells = []
        for col in COLUMNS:
            mean = g[col].mean()
            if "_acc" in col:
                cells.append(f"{mean:.4f} ± {(g[col].max() - g[col].min()) / 2:.4f}")
            elif col in ("trained", "infeasible"):
                cells.append(f"{mean:.0f}")
            else:
                cells.append(f"{mean:.2f}")
        lines.append(f"| {method} | {len(g)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figures(df: pd.DataFrame, curves: pd.DataFrame, folder: Path) -> list[Path]:
    """Accuracy against round (mean over seeds) and participation, per data set."""
    folder.mkdir(parents=True, exist_ok=True)
    datasets = list(dict.fromkeys(df["data"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.5), squeeze=False)
    for ax, data in zip(axes[0], datasets, strict=True):
        sub = curves[curves["data"] == data]
        for method, g in sub.groupby("method", observed=True):
            mean = g.groupby("round")["test_accuracy"].mean()
            ax.plot(mean.index + 1, mean.values, label=method)
        ax.set_title(data)
        ax.set_xlabel("round")
        ax.set_ylabel("test accuracy of the headline model (mean over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    acc = folder / "study_accuracy.png"
    fig.savefig(acc, dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.5), squeeze=False)
    for ax, data in zip(axes[0], datasets, strict=True):
        sub = (
            df[df["data"] == data]
            .groupby("method", sort=False)[["trained", "infeasible", "late"]]
            .mean()
        )
        bottom = np.zeros(len(sub))
        for col, colour in (("trained", "#2a9d8f"), ("infeasible", "#e76f51"), ("late", "#f4a261")):
            ax.bar(sub.index, sub[col], bottom=bottom, label=col, color=colour)
            bottom += sub[col].to_numpy()
        ax.set_title(data)
        ax.set_ylabel("client-rounds over the run (mean over seeds)")
        ax.tick_params(axis="x", rotation=35)
        ax.legend(fontsize=8)
    fig.tight_layout()
    part = folder / "study_participation.png"
    fig.savefig(part, dpi=110)
    plt.close(fig)
    return [acc, part]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("--figures", type=Path, default=None, help="default: ROOT/figures")
    p.add_argument("--target", type=float, default=0.9)
    args = p.parse_args()
    df, curves = collect(args.root, args.target)
    for data in dict.fromkeys(df["data"]):
        print(f"\n{data}\n")
        print(table(df, data))
    for path in figures(df, curves, args.figures or args.root / "figures"):
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
