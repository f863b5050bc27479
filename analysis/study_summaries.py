"""The study's run summaries: each finished run under results/study summarised into a
small JSON file under docs/study/ (the figures of its table row, its per-round curve and
its job; committed, so the report regenerates on a fresh clone without the HDF5 files),
and read back as one row per run for analysis/study_report.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from stats import diverged
from study import PRETRAINED_NAME, cells, stale, summarised, tune_cells

from mpifl.arguments import exit_with
from mpifl.results import read_run
from mpifl.results.opening import read_attrs

LAST = 5  # evaluations averaged per run
GLOBAL, CLIENT, POOLED = "test_accuracy", "client_accuracy", "client_accuracy_pooled"
TARGETS = {
    "mnist": 0.90,
    "mnist-stragglers": 0.90,
    "synthetic": 0.50,
    "constrained": 0.93,
    "unconstrained": 0.93,
}


def last_mean(rounds: pd.DataFrame, column: str) -> float:
    """Mean of the last LAST evaluated values of a rounds column (NaN if never evaluated)."""
    values = rounds[column].dropna()
    return float(values.tail(LAST).mean()) if len(values) else np.nan


def to_target(rounds: pd.DataFrame, column: str, target: float) -> tuple[float, float, float]:
    """(virtual seconds, MB down + up, J of client work) until the mean of the last LAST
    evaluations of `column` first reaches `target` (a single noisy spike does not count);
    NaN if never (J: also in files from before energy was recorded)."""
    evaluated = rounds[column].dropna()  # (every run.eval_every rounds)
    smooth = evaluated.rolling(LAST, min_periods=LAST).mean()
    hit = smooth.index[smooth.to_numpy() >= target]
    if not len(hit):
        return np.nan, np.nan, np.nan
    upto = rounds.loc[: hit[0]]
    traffic = float((upto["bytes_down"] + upto["bytes_up"]).sum()) / 1e6
    return float(upto["virtual_time"].iloc[-1]), traffic, float(upto["energy"].sum(skipna=False))


def area(rounds: pd.DataFrame, column: str) -> float:
    """Area under the accuracy curve of `column` / rounds: the mean of every evaluation."""
    return float(rounds[column].mean()) if rounds[column].notna().any() else np.nan


CURVE = ("round", GLOBAL, CLIENT, POOLED, "virtual_time", "energy")  # kept per round


def summarize(path: Path, key: dict[str, object]) -> dict[str, object]:
    """One finished run's summary: the figures of its row in the tables (`row`), the
    per-round figures its curves need (`curve`), rounded to what the report prints, and
    the run's job (`config`, TOML: analysis/study.py skips a run summarised with its job)."""
    run = read_run(path)
    rounds, part = run.tables["rounds"], run.tables["participation"]
    trained = part[part["status"].isin(["trained", "partial"])]  # aggregated
    target = TARGETS.get(str(key["setting"]), 0.90)
    personal = key["experiment"] == "fedmrl" or rounds[GLOBAL].isna().all()  # no global model
    metric = CLIENT if personal else GLOBAL
    vtime, mb, joules = to_target(rounds, metric, target)
    fleet = run.tables["fleet"]
    data = run.config["data"]
    classes = data["synthetic"]["classes"] if data["name"] == "synthetic" else 10
    if metric == CLIENT and data["partition"] == "fedmrl":  # a client holds only a few
        classes = data["classes_per_client"]
    trains = (part["flops"] > 0).any()  # majority and centralized train no client
    losses = rounds["train_loss"][rounds["trained"] + rounds["partial"] > 0].to_numpy()
    losses = losses if trains else losses[:0]
    row = key | {
        "diverged": run.config["algorithm"]["name"] != "majority"  # (learns nothing)
        and diverged(losses, rounds[metric].to_numpy(), chance=1.0 / classes),
        "never_trained": int(len(fleet) - trained["client"].nunique()),
        "clients": int(len(fleet)), "train_median": float(fleet["n_train"].median()),
        "test_median": float(fleet["n_test"].median()), "test_total": int(fleet["n_test"].sum()),
        "global": last_mean(rounds, GLOBAL), "client": last_mean(rounds, CLIENT),
        "pooled": last_mean(rounds, POOLED),
        "trained": int(len(trained)), "infeasible": int((part["status"] == "infeasible").sum()),
        "late": int((part["status"] == "late").sum()),
        "partial": int((part["status"] == "partial").sum()),
        "kB_down": rounds["bytes_down"].mean() / 1e3, "kB_up": rounds["bytes_up"].mean() / 1e3,
        "MFLOP": trained["flops"].mean() / 1e6 if len(trained) else np.nan,
        # per training sample (all local epochs): a ratio free of which clients trained
        "MFLOP_sample": trained["flops"].sum() / trained["samples"].sum() / 1e6
        if len(trained) else np.nan,
        "storage_kB": trained["bytes_up"].mean() / 1e3 if len(trained) else np.nan,
        "target_metric": metric, "vtime_to_target": vtime, "MB_to_target": mb,
        "J_to_target": joules, "energy_recorded": bool(rounds["energy"].notna().all()),
        "wall_s": float(rounds["wall_time"].sum()),  # (every part of a resumed run)
    }  # fmt: skip
    evals = run.tables["eval"]
    mcu = evals[evals["group"] == "clients/mean/mcu"].set_index("round")["accuracy"]
    row["client_mcu"] = float(mcu.tail(LAST).mean()) if len(mcu) else np.nan
    row["client_no_mcu"] = other_classes_mean(evals, "mcu")
    row["auc"] = area(rounds, metric)
    if metric == GLOBAL:  # the client mean too, to compare with methods that have no global
        vtime, mb, joules = to_target(rounds, CLIENT, target)  # model (table: own columns)
        row |= {"client_vtime_to_target": vtime, "client_MB_to_target": mb,
                "client_J_to_target": joules, "client_auc": area(rounds, CLIENT)}  # fmt: skip
    curve = rounds.reindex(columns=list(CURVE))
    return {
        "row": {k: _rounded(v) if isinstance(v, float) else v for k, v in row.items()},
        "curve": {c: [_rounded(float(v)) for v in curve[c]] for c in CURVE},
        "config": str(run.attrs["config"]),
    }


def _rounded(value: float) -> float | None:
    """A figure as the summaries keep it: 6 significant digits; None for NaN."""
    return None if not np.isfinite(value) else float(f"{value:.6g}")


def other_classes_mean(evals: pd.DataFrame, left_out: str) -> float:
    """The client-mean accuracy over the clients of every device class but `left_out`
    (each class's client mean weighted by its clients), mean of the last LAST evaluations;
    NaN without per-class groups. FedMRL cannot fit the compare fleet's microcontrollers
    at all: this scores every method on the clients it can serve."""
    groups = evals["group"]
    per_class = evals[
        groups.str.startswith("clients/mean/") & (groups != f"clients/mean/{left_out}")
    ]
    if not len(per_class):
        return np.nan
    clients = per_class["samples"].astype(np.float64)
    weighted = (per_class["accuracy"] * clients).groupby(per_class["round"]).sum()
    return float((weighted / clients.groupby(per_class["round"]).sum()).tail(LAST).mean())


def refresh(results: Path, data: Path) -> int:
    """Write the summary of every finished run under `results` (and the pre-trained
    models' accuracies) into `data`, as JSON beside the run's place in the tree; returns
    how many runs it summarised. A summary already there is rewritten."""
    done = 0
    for path in sorted(results.glob("*/*/*/seed_*/task_0.h5")):
        try:
            status = read_attrs(path).get("status")
        except OSError as exc:
            print(f"left out {path}: it cannot be read ({exc})")
            continue
        if status != "complete":
            continue
        why = stale(path, path.with_suffix(".toml"))
        if why is not None:  # a run of an older study design: never mixed in
            print(f"left out {path}: stale ({why}); rerun analysis/study.py")
            continue
        experiment, setting, method = path.parts[-5:-2]
        seed = int(path.parent.name.removeprefix("seed_"))
        key = {"experiment": experiment, "setting": setting, "method": method, "seed": seed}
        out = data / experiment / setting / method / f"seed_{seed}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summarize(path, key), allow_nan=False) + "\n")
        done += 1
    pretrained = pretrained_accuracy(results)
    if pretrained:  # (added to the seeds another machine summarised, if pre-trained alike)
        path = data / "koala" / "pretrained.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        merged = read_pretrained(data) | pretrained
        kept = {"name": PRETRAINED_NAME, "accuracy": {str(k): merged[k] for k in sorted(merged)}}
        path.write_text(json.dumps(kept) + "\n")
    return done


def collect(data: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[int, float]]:
    """(one row per summarised run, every run's curve keyed by experiment, setting,
    method and seed, each seed's pre-trained L accuracy) from the summaries in `data`.
    A summary of a job the study no longer runs (an older design of its cell, which
    analysis/study.py runs again, or a cell it dropped) is left out, and said so."""
    rows, curves = [], []
    planned = {(c.experiment, c.setting, c.method): c for c in cells() + tune_cells()}
    for path in sorted(data.glob("*/*/*/seed_*.json")):
        cell = planned.get(tuple(path.parts[-4:-1]))
        if cell is None or not summarised(cell, int(path.stem.removeprefix("seed_")), data):
            why = "the study has no such cell now" if cell is None else "an older design"
            print(f"left out {path}: {why} (analysis/study.py runs what the study lacks)")
            continue
        summary = json.loads(path.read_text())
        row = {"diverged": False} | {
            k: np.nan if v is None else v for k, v in summary["row"].items()
        }
        key = {k: row[k] for k in ("experiment", "setting", "method", "seed")}
        rows.append(row)
        curves.append(pd.DataFrame(summary["curve"], dtype=float).assign(**key))
    if not rows:
        exit_with(f"study_report: no study summaries under {data} (run with a results folder)")
    curve = pd.concat(curves, ignore_index=True)
    curve["round"] = curve["round"].astype(int)
    return pd.DataFrame(rows), curve, read_pretrained(data)


def read_pretrained(data: Path) -> dict[int, float]:
    """Each seed's pre-trained L accuracy kept in `data` (none if L was pre-trained
    otherwise than the study now does: study.PRETRAINED_NAME)."""
    path = data / "koala" / "pretrained.json"
    if not path.exists():
        return {}
    try:
        kept = json.loads(path.read_text())
        if kept["name"] == PRETRAINED_NAME:
            return {int(seed): float(accuracy) for seed, accuracy in kept["accuracy"].items()}
        why = f"its L was pre-trained otherwise ({kept['name']}*, now {PRETRAINED_NAME}*)"
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        why = f"it cannot be read ({exc!r})"
    print(f"left out {path}: {why}")
    return {}


def pretrained_accuracy(root: Path) -> dict[int, float]:
    """Global test accuracy of each seed's pre-trained large model (from its pretrain log;
    L as the study now pre-trains it: study.pretrained_file)."""
    found = {}
    for log in sorted((root / "koala" / "pretrained").glob(f"{PRETRAINED_NAME}*.log")):
        match = re.search(r"global test accuracy ([0-9.]+)", log.read_text())
        if match:
            found[int(log.stem.removeprefix(PRETRAINED_NAME))] = float(match.group(1))
    return found
