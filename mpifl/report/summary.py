"""Per-run summary metrics and the participation-by-device-class table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mpifl.results.reader import Run
from mpifl.results.schema import WORK_ENERGY, Status

STATUSES = [s.name.lower() for s in Status]


LAST = 5  # evaluations averaged by the last-5 columns


def _final(values: pd.Series) -> float:
    evaluated = values.dropna()
    return float(evaluated.iloc[-1]) if len(evaluated) else math.nan


def _last(values: pd.Series) -> float:
    evaluated = values.dropna()
    return float(evaluated.tail(LAST).mean()) if len(evaluated) else math.nan


def summarize(run: Run, target: float) -> dict[str, object]:
    """Headline figures of one run; `target` is the accuracy for time-to-target columns."""
    rounds, part = run.tables["rounds"], run.tables["participation"]
    acc = rounds["test_accuracy"].to_numpy()
    evaluated = ~np.isnan(acc)
    reached = np.flatnonzero(evaluated & (acc >= target))
    trained = part[part["status"].isin(["trained", "partial"])]  # aggregated
    row: dict[str, object] = {
        "run": run.name,
        "algorithm": run.config["algorithm"]["name"],
        "status": run.attrs.get("status"),
        "rounds": len(rounds),
        "final_global_test_acc": float(acc[evaluated][-1]) if evaluated.any() else math.nan,
        "best_global_test_acc": float(np.nanmax(acc)) if evaluated.any() else math.nan,
        "last5_global_test_acc": _last(rounds["test_accuracy"]),
        "final_client_acc_mean": _final(rounds["client_accuracy"]),
        "last5_client_acc_mean": _last(rounds["client_accuracy"]),
        "final_client_acc_pooled": _final(rounds["client_accuracy_pooled"]),
        f"rounds_to_{target:g}": int(reached[0]) + 1 if len(reached) else math.nan,
        **_to_target(rounds, reached, target),
        "MB_down": rounds["bytes_down"].sum() / 1e6,
        "MB_up": rounds["bytes_up"].sum() / 1e6,
        "energy_J": rounds["energy"].sum(skipna=False),
        "J_per_round": rounds["energy"].mean(skipna=False),
        "client_MFLOP": trained["flops"].mean() / 1e6 if len(trained) else math.nan,
        "client_footprint_kB": trained["footprint"].mean() / 1e3 if len(trained) else math.nan,
    }
    counts = part["status"].value_counts()
    row.update({s: int(counts.get(s, 0)) for s in STATUSES})
    row["wall_s"] = float(run.attrs.get("wall_seconds", rounds["wall_time"].sum()))
    return row


def _to_target(rounds: pd.DataFrame, reached: np.ndarray, target: float) -> dict[str, float]:
    """Virtual seconds, MB (down + up) and J of client work until the first round that
    reached `target` (NaN if none did; J: NaN in files without energy)."""
    if not len(reached):
        return {f"vtime_to_{target:g}_s": math.nan, f"MB_to_{target:g}": math.nan,
                f"J_to_{target:g}": math.nan}  # fmt: skip
    upto = rounds.iloc[: reached[0] + 1]
    return {
        f"vtime_to_{target:g}_s": float(upto["virtual_time"].iloc[-1]),
        f"MB_to_{target:g}": float((upto["bytes_down"] + upto["bytes_up"]).sum() / 1e6),
        f"J_to_{target:g}": float(upto["energy"].sum(skipna=False)),
    }


ACCURACY_COLUMNS = ("final_global_test_acc", "best_global_test_acc", "last5_global_test_acc",
                    "final_client_acc_mean", "last5_client_acc_mean",
                    "final_client_acc_pooled")  # fmt: skip


def by_setting(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per label (setting): `seeds` and the mean over its runs of every numeric
    column, with `<acc>_sd` (sample standard deviation over seeds) after each accuracy."""
    numeric = [c for c in rows.columns if c not in ("run", "label", "seed")
               and pd.api.types.is_numeric_dtype(rows[c])]  # fmt: skip
    groups = rows.groupby("label", sort=False)
    out = groups[numeric].mean()
    reach = [c for c in numeric if "_to_" in c]  # unknown unless every seed reached the target
    out[reach] = groups[reach].agg(lambda v: v.mean(skipna=False))
    for col in ACCURACY_COLUMNS:
        if col in out:
            out.insert(out.columns.get_loc(col) + 1, f"{col}_sd", groups[col].std())
    out.insert(0, "seeds", groups.size())
    return out.rename_axis("run").reset_index()


def by_device_class(run: Run, label: str | None = None) -> pd.DataFrame:
    """Client-rounds per device class and status, and the J of their work (column `run`:
    `label` or the run's name)."""
    part = run.tables["participation"]
    sampled = [n for n in run.class_names if (part["device_class"] == n).any()]
    table = pd.crosstab(part["device_class"], part["status"], dropna=False).reindex(
        index=sampled, columns=STATUSES, fill_value=0
    )
    table.insert(0, "sampled", table.sum(axis=1))
    work = part[list(WORK_ENERGY)].sum(axis=1, min_count=len(WORK_ENERGY))
    table["energy_J"] = work.groupby(part["device_class"], observed=False).sum(min_count=1)
    table = table.rename_axis("class").reset_index()
    table.insert(0, "run", run.name if label is None else label)
    return table


COUNTS = ("seeds", "seed", "rounds", *STATUSES)
# the default text and Markdown columns (--wide: all); `rounds_to_<target>` too
COMPACT = ("run", "file", "setting", "seeds", "seed", "status", "rounds",
           "last5_global_test_acc", "final_global_test_acc", "last5_client_acc_mean",
           "final_client_acc_mean", "MB_down", "MB_up", "energy_J", "trained",
           "wall_s")  # fmt: skip


def compact(df: pd.DataFrame) -> pd.DataFrame:
    """The COMPACT columns of a summary (with their `_sd` and the rounds to target)."""
    keep = [c for c in df.columns
            if c.removesuffix("_sd") in COMPACT or c.startswith("rounds_to_")]  # fmt: skip
    return df[keep]


def typed(df: pd.DataFrame) -> pd.DataFrame:
    """Counts (COUNTS, `rounds_to_*`) whose values are whole numbers as integers (NaN kept
    as missing), so that a CSV holds 12, not 12.0; means of counts stay fractional."""
    out = df.copy()
    for col in out.columns:
        counts = col in COUNTS or col.startswith("rounds_to_")
        if counts and out[col].dtype.kind == "f":
            values = out[col].dropna()
            if (values == values.round()).all():
                out[col] = out[col].astype("Int64")
    return out


def render(df: pd.DataFrame, fmt: str, width: int | None = None) -> str:
    """A frame as an aligned text table (wrapped into blocks of columns at `width`
    characters; columns with no value left out), CSV or Markdown."""
    if fmt == "csv":
        return typed(df).to_csv(index=False)
    text = typed(df).dropna(axis=1, how="all")
    for col in text.columns:
        if text[col].dtype.kind == "f":
            text[col] = text[col].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    text = text.astype(object).where(text.notna(), "")
    if fmt == "markdown":
        lines = ["| " + " | ".join(map(str, text.columns)) + " |", "|" + "---|" * len(text.columns)]
        lines += ["| " + " | ".join(map(str, r)) + " |" for r in text.itertuples(index=False)]
        return "\n".join(lines) + "\n"
    return text.to_string(index=False, line_width=width) + "\n"
