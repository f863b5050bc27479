"""Tables, the claims table and figures of the comparison study (runs of analysis/study.py).

    python analysis/study_report.py [results/study] [--data docs/study] [--docs docs]
        [--readme README.md]

Summarises every finished run under results/study into a small JSON file under
docs/study/ (its table figures and its per-round curves; committed, so that the report
regenerates on a fresh clone without the HDF5 files: run without a results folder), then
writes docs/study/per_seed.csv (every run's figures, diverged runs flagged),
docs/study.md (every table), docs/figures/study_*.png, and the block of README.md
between the study markers (claims and headline tables). Every accuracy is the mean over
a run's last 5 evaluations, then mean ± the 95% t interval's half-width over seeds; each
column holds one metric, named in its header.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from stats import diverged, equivalent, paired, seeds_needed, verdict  # noqa: E402
from study import (  # noqa: E402
    COMPARABLE_MARGIN,
    PRETRAIN_SAMPLES,
    SEEDS,
    TUNE_SEEDS,
    TUNED,
    best_value,
    cells,
    stale,
    summarised,
    tune_cells,
    tuned,
    tuning_scores,
)

from mpifl.arguments import exit_with, refuse_any  # noqa: E402
from mpifl.results import read_run  # noqa: E402
from mpifl.results.opening import read_attrs  # noqa: E402

LAST = 5  # evaluations averaged per run
MIN_SEEDS = 5  # a verdict on fewer seeds is marked preliminary
GLOBAL, CLIENT, POOLED = "test_accuracy", "client_accuracy", "client_accuracy_pooled"
TARGETS = {
    "mnist": 0.90,
    "mnist-stragglers": 0.90,
    "synthetic": 0.50,
    "constrained": 0.93,
    "unconstrained": 0.93,
}
BEGIN, END = "<!-- study:begin -->", "<!-- study:end -->"


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
    if pretrained:
        (data / "koala").mkdir(parents=True, exist_ok=True)
        (data / "koala" / "pretrained.json").write_text(json.dumps(pretrained) + "\n")
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
    found = data / "koala" / "pretrained.json"
    pretrained = (
        {int(k): v for k, v in json.loads(found.read_text()).items()} if found.exists() else {}
    )
    curve = pd.concat(curves, ignore_index=True)
    curve["round"] = curve["round"].astype(int)
    return pd.DataFrame(rows), curve, pretrained


def pretrained_accuracy(root: Path) -> dict[int, float]:
    """Global test accuracy of each seed's pre-trained large model (from its pretrain log;
    L as the study now pre-trains it: study.pretrained_file)."""
    found = {}
    name = f"large_{PRETRAIN_SAMPLES}_seed_"
    for log in sorted((root / "koala" / "pretrained").glob(f"{name}*.log")):
        match = re.search(r"global test accuracy ([0-9.]+)", log.read_text())
        if match:
            found[int(log.stem.removeprefix(name))] = float(match.group(1))
    return found


@dataclass(frozen=True)
class Stat:
    """Mean over seeds and the half-width of its 95% t interval (0 with one seed)."""

    mean: float
    half: float
    n: int

    def __str__(self) -> str:
        if self.n == 0 or np.isnan(self.mean):
            return "n/a"
        return f"{self.mean:.3f} ± {self.half:.3f}" if self.n > 1 else f"{self.mean:.3f}"


def stat(values: pd.Series) -> Stat:
    """Mean ± 95% t half-width of the finite values (analysis/stats.py's interval)."""
    v = values.dropna()
    p = paired(v.to_numpy())
    return Stat(float(v.mean()) if len(v) else np.nan, p.high - p.mean if p else 0.0, len(v))


def _work(col: str, fmt: str) -> Callable[[pd.DataFrame], str]:
    """A client-work column: "—" for a method without client training (majority,
    centralized), whose client-rounds are only the fleet's schedule."""
    return lambda g: "—" if not g["MFLOP"].mean() > 0 else format(g[col].mean(), fmt)


def _on(g: pd.DataFrame, col: str, metric: str, show: Callable[[pd.Series], str]) -> str:
    """A method's figure `col` (auc or a to-target one) read on `metric`, shown by `show`;
    "—" where it has none (a global-acc figure of a method without a global model), "n/a"
    where its seeds' summaries disagree on their metric or lack the client-mean figures.
    Summaries keep it on the run's own metric (target_metric) and, for a run whose own
    metric is global accuracy, on the client mean too (client_COL)."""
    own = g["target_metric"]
    if (own == metric).all():
        return show(g[col])
    if (own == CLIENT).all():
        return "—"  # (no global model: no global-acc figures)
    if (own == GLOBAL).all() and "client_auc" in g and g["client_auc"].notna().all():
        return show(g[f"client_{col}"])
    return "n/a"


def _reached(col: str, metric: str) -> Callable[[pd.DataFrame], str]:
    """A to-target column: "—" for a method without client training or without the metric."""

    def show(values: pd.Series) -> str:
        hit = values.dropna()
        if not len(hit):
            return f"not reached (0/{len(values)})"
        text = f"{hit.mean():.1f}" if col == "vtime_to_target" else f"{hit.mean():.2f}"
        return text if len(hit) == len(values) else f"{text} ({len(hit)}/{len(values)} seeds)"

    def cell(g: pd.DataFrame) -> str:
        if not g["MFLOP"].mean() > 0:
            return "—"
        if col == "J_to_target" and not g["energy_recorded"].all():
            return "not recorded"
        return _on(g, col, metric, show)

    return cell


COLUMNS: dict[str, tuple[str, Callable[[pd.DataFrame], str]]] = {
    "global": ("global model on global test: acc, last 5",  # (—: the method has none)
               lambda g: "—" if (g["target_metric"] == CLIENT).all() and g["global"].isna().all()
               else str(stat(g["global"]))),
    "client": ("client's model on own test: acc, client mean, last 5",
               lambda g: str(stat(g["client"]))),
    "pooled": ("client's model on own test: acc, pooled samples, last 5",
               lambda g: str(stat(g["pooled"]))),
    "client_mcu": ("microcontrollers' own model on own test: acc, client mean, last 5",
                   lambda g: str(stat(g["client_mcu"]))),
    "client_no_mcu": ("clients but microcontrollers, own model on own test: acc, client "
                      "mean, last 5",  # (n/a in a summary written before it)
                      lambda g: str(stat(g.get("client_no_mcu", g["client"] * np.nan)))),
    "auc": ("area under the global-acc curve / rounds (mean of every evaluation)",
            lambda g: _on(g, "auc", GLOBAL, lambda v: str(stat(v)))),
    "client_auc": ("area under the client-mean-acc curve / rounds (mean of every evaluation)",
                   lambda g: _on(g, "auc", CLIENT, lambda v: str(stat(v)))),
    "trained": ("trained client-rounds", _work("trained", ".0f")),
    "infeasible": ("infeasible client-rounds", _work("infeasible", ".0f")),
    "late": ("late client-rounds (dropped)", _work("late", ".0f")),
    "partial": ("partial client-rounds (aggregated)", _work("partial", ".0f")),
    "kB_down": ("kB down / round", lambda g: f"{g['kB_down'].mean():.1f}"),
    "kB_up": ("kB up / round", lambda g: f"{g['kB_up'].mean():.1f}"),
    "MFLOP": ("MFLOP / trained client-round", _work("MFLOP", ".2f")),
    "storage_kB": ("kB uploaded / trained client-round", _work("storage_kB", ".1f")),
    "never": ("clients never trained", lambda g: f"{g['never_trained'].mean():.0f} of "
              f"{g['clients'].iloc[0]}"),
    "vtime": ("virtual s to global acc ≥ {target}", _reached("vtime_to_target", GLOBAL)),
    "MB": ("MB down+up to global acc ≥ {target}", _reached("MB_to_target", GLOBAL)),
    "J": ("J of client work to global acc ≥ {target}", _reached("J_to_target", GLOBAL)),
    "client_vtime": ("virtual s to client-mean acc ≥ {target}",
                     _reached("vtime_to_target", CLIENT)),
    "client_MB": ("MB down+up to client-mean acc ≥ {target}", _reached("MB_to_target", CLIENT)),
    "client_J": ("J of client work to client-mean acc ≥ {target}",
                 _reached("J_to_target", CLIENT)),
    "wall": ("wall s of its rounds / run (2 ranks)", lambda g: f"{g['wall_s'].mean():.0f}"),
}  # fmt: skip


def sizes(df: pd.DataFrame) -> str:
    """One line: clients, their median training / test samples and the test samples in
    all (medians over seeds)."""
    total = df["test_total"].median()
    return (
        f"{df['clients'].iloc[0]} clients; median {df['train_median'].median():.0f} "
        f"training and {df['test_median'].median():.0f} test samples per client; {total:.0f} "
        f"client test samples in all (one is {100 / total:.2f} points of their pooled accuracy).\n"
    )


def table(df: pd.DataFrame, columns: list[str], order: list[str]) -> str:
    """Markdown table: one row per method (in `order`), seeds, then `columns` (each reads
    one metric; the to-target ones at the setting's target)."""
    target = f"{TARGETS.get(df['setting'].iloc[0], 0.9):g}"
    heads = [COLUMNS[c][0].format(target=target) for c in columns]
    lines = ["| method | seeds | " + " | ".join(heads) + " |", "|" + "---|" * (len(columns) + 2)]
    for method in [m for m in order if m in set(df["method"])]:
        g = df[df["method"] == method]
        cells = [COLUMNS[c][1](g) for c in columns]
        lines.append(f"| {method} | {len(g)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


COMPARE_SETTINGS = ("mnist", "synthetic", "mnist-stragglers")
COMPARE_ORDER = ["majority", "local", "centralized", "fedavg", "fedavg-ft", "fedprox",
                 "fedprox-mu0", "fednova",
                 "scaffold", "fedyogi", "submodel-prefix", "submodel-rolling",
                 "submodel-magnitude", "reft", "reft-proxy250", "reft-proxy100", "reft-average",
                 "koala-homo",
                 "koala-hetero", "fedmrl", "fedmrl-eighth"]  # fmt: skip
FEDMRL_ORDER = ["majority", "standalone", "fedavg-ft", "fedmrl"]
KOALA_ORDER = ["koala-pretrained", "koala-pretrained-warm", "koala-scratch",
               "fedavg-L-pretrained", "fedavg-small", "L", "small"]  # fmt: skip
ALL_COLUMNS = ["global", "auc", "client", "client_auc", "pooled", "client_mcu",
               "client_no_mcu", "never",
               "trained", "infeasible", "kB_down", "kB_up", "MFLOP", "storage_kB", "vtime",
               "MB", "J", "client_vtime", "client_MB", "client_J", "wall"]  # fmt: skip
STRAGGLER_COLUMNS = ["global", "auc", "client", "pooled", "never", "trained", "infeasible",
                     "late", "partial", "kB_down", "kB_up", "MFLOP", "vtime", "MB", "J",
                     "wall"]  # fmt: skip
PERSONAL_COLUMNS = ["client", "client_auc", "pooled", "global", "never", "trained", "kB_down",
                    "kB_up", "MFLOP", "client_vtime", "client_MB", "client_J",
                    "wall"]  # fmt: skip


def _per_seed(df: pd.DataFrame, experiment: str, setting: str, method: str, col: str) -> pd.Series:
    sel = df[(df.experiment == experiment) & (df.setting == setting) & (df.method == method)]
    return sel.set_index("seed")[col].dropna()


def _shared(*series: pd.Series) -> list[pd.Series]:
    """Each series on the seeds they all have: a claim compares its methods on the runs it
    pairs, not on whichever seeds each has run so far."""
    seeds = sorted(set.intersection(*(set(s.index) for s in series)))
    return [s.reindex(seeds) for s in series]


def _cell(df: pd.DataFrame, experiment: str, setting: str, method: str, col: str) -> Stat:
    return stat(_per_seed(df, experiment, setting, method, col))


def differences(curves: pd.DataFrame, a: tuple, b: tuple, column: str) -> pd.DataFrame:
    """Rounds x seeds: the paired difference a - b of each run's mean over its last LAST
    evaluations up to that round (a, b: (experiment, setting, method)); rows where no
    seed has both are dropped."""
    sides = []
    for experiment, setting, method in (a, b):
        g = curves[(curves.experiment == experiment) & (curves.setting == setting)
                   & (curves.method == method)]  # fmt: skip
        wide = g.pivot_table(index="round", columns="seed", values=column).dropna(how="all")
        sides.append(wide.rolling(LAST, min_periods=LAST).mean())
    return (sides[0] - sides[1]).dropna(how="all")


def settled(d: pd.DataFrame, kind: str) -> str:
    """Where the verdict read on the curves of `d` (rounds x seeds) stopped changing:
    "settled from round R of N", or "not settled" if it last changed in the final fifth."""
    margin = COMPARABLE_MARGIN if kind == "comparable" else 0.0
    rounds = list(d.index)
    if len(rounds) < 2:
        return ""
    found = [verdict(d.loc[r].to_numpy(), kind, margin) for r in rounds]
    changes = [r for r, v, before in zip(rounds[1:], found[1:], found, strict=False) if v != before]
    since, last = (changes[-1] if changes else rounds[0]), rounds[-1]
    late = sum(r > rounds[0] + 0.5 * (last - rounds[0]) for r in changes)
    flips = f", after {late} changes in the second half of the rounds" if late > 1 else ""
    if since > rounds[0] + 0.8 * (last - rounds[0]):
        return f"; not settled: changed at round {since} of {last}{flips}"
    return f"; settled from round {since} of {last}{flips}"


def _paired(a: pd.Series, b: pd.Series, kind: str, curve: pd.DataFrame | None = None) -> str:
    """Verdict for "a comparable to b" (kind "comparable": a at most COMPARABLE_MARGIN
    lower) or "a better than b" ("better"), on the seeds both have: the runs of one seed
    share data, fleet and client sampling, so the per-seed differences are paired
    (analysis/stats.py: a 95% t interval; comparable: its one-sided test against the
    margin). A row that cannot be told says how many seeds would decide it if the
    differences kept their mean and spread."""
    d = (a - b).dropna().to_numpy()
    margin = COMPARABLE_MARGIN if kind == "comparable" else 0.0
    found, interval = verdict(d, kind, margin), paired(d)
    if interval is None:
        seeds = f"{len(d)} paired seed{'s' if len(d) != 1 else ''}"
        return f"preliminary, {len(d)} of {MIN_SEEDS} seeds: cannot tell ({seeds})"
    more = ""
    same = equivalent(d, COMPARABLE_MARGIN) if kind == "better" else None
    if found == "cannot tell" and same is not None:
        more = (f"; equivalent within ±{COMPARABLE_MARGIN:g} (two one-sided tests, 90% "
                f"interval [{same.low:+.3f}, {same.high:+.3f}])")  # fmt: skip
    elif found == "cannot tell":
        need = seeds_needed(d, kind, margin)
        more = f"; ~{need} seeds would decide it" if need else "; on the bound"
    if curve is not None:
        more += settled(curve, kind)
    if interval.n < MIN_SEEDS:
        found = f"preliminary, {interval.n} of {MIN_SEEDS} seeds: {found}"
    return f"{found} ({interval}{more})"


def _cheaper(
    df: pd.DataFrame, curves: pd.DataFrame, data: str, method: str, cost: str, cost_name: str,
    claim: str, note: str,
) -> tuple[str, ...]:  # fmt: skip
    """A claims row "`method` keeps FedAvg's global accuracy at a lower `cost`": holds only
    if the accuracy is comparable (paired over seeds) and the cost lower."""
    mine, fedavg = _shared(
        *(_per_seed(df, "compare", data, m, "global") for m in (method, "fedavg"))
    )
    here, base = (_per_seed(df, "compare", data, m, cost).reindex(mine.index).mean()
                  for m in (method, "fedavg"))  # fmt: skip
    curve = differences(curves, ("compare", data, method), ("compare", data, "fedavg"), GLOBAL)
    verdict = _paired(mine, fedavg, "comparable", curve)
    if verdict.startswith("holds") and not here < base:
        verdict = "does not hold" + verdict.removeprefix("holds")
    ours = (f"global acc {stat(mine)} vs FedAvg {stat(fedavg)}; {cost_name} {here:.1f} vs "
            f"{base:.1f}")  # fmt: skip
    mcu, served = _shared(*(_per_seed(df, "compare", data, m, "client_mcu")
                            for m in (method, "fedavg")))  # fmt: skip
    if len(mcu):
        ours += (f"; microcontrollers' own accuracy {stat(mcu)} (FedAvg's global model, "
                 f"which most of them cannot train, scores {stat(served)} on their test "
                 "data)")  # fmt: skip
    return claim, "qualitative", ours, f"compare / {data}{note}", verdict


def claims(df: pd.DataFrame, curves: pd.DataFrame, pretrained: dict[int, float]) -> str:
    """The claims table: paper claim, paper figure, ours, setting, verdict. Verdicts pair
    the runs of one seed; the verdict cell gives the mean paired difference, its 95%
    interval and the round from which the verdict no longer changes."""
    lines = ["| claim | paper's figure | ours (mean ± 95% interval over seeds) | setting | verdict "
             "(paired difference [95% interval]) |", "|---|---|---|---|---|"]  # fmt: skip
    lines += ["| " + " | ".join(r) + " |" for r in claims_rows(df, curves, pretrained)]
    return "\n".join(lines)


def claims_rows(
    df: pd.DataFrame, curves: pd.DataFrame, pretrained: dict[int, float]
) -> list[tuple[str, ...]]:
    """The claims table's rows (see `claims`); a claim whose runs are not there yet has
    none."""
    rows = []
    have = set(zip(df.experiment, df.setting, df.method, strict=True))
    for data in ("mnist", "synthetic"):
        if ("compare", data, "fedavg") not in have:
            continue
        if ("compare", data, "submodel-prefix") in have:
            rows.append(_cheaper(
                df, curves, data, "submodel-prefix", "infeasible", "infeasible client-rounds",
                "Sub-models (Zhang & Kim 2021): compressed local models let constrained "
                "devices train without losing accuracy", ""))  # fmt: skip
        if ("compare", data, "reft") in have:
            rows.append(_cheaper(
                df, curves, data, "reft", "kB_down", "kB down/round",
                "REFT (Desai et al. 2023): accuracy kept while download traffic drops",
                ", capability = quantile, downloads every 5 rounds (ours), distillation "
                f"learning rate {tuned(f'reft-{data}'):g} (ours, tuned on held-out "
                "data)"))  # fmt: skip
    rows += _stragglers_rows(df, curves, have)
    rows += _koala_rows(df, curves, pretrained, have)
    for setting in sorted(set(df[df.experiment == "fedmrl"]["setting"]), key=_fedmrl_key):
        fm = _per_seed(df, "fedmrl", setting, "fedmrl", "client")
        cell = df[(df.experiment == "fedmrl") & (df.setting == setting)]
        n_clients = _fedmrl_key(setting)[1]  # CIFAR-10: 50,000 less 10,000 to validate
        where = (
            f"fedmrl / {setting}: median {cell['train_median'].median():.0f} training samples "
            f"per client (CIFAR-10 in the official code: ~{40_000 // n_clients})"
        )
        for method, claim, figure in (
            ("standalone", "FedMRL (Yi et al. 2024): more accurate personal models than its "
             "paper's Standalone (each client's own model alone)",
             "Standalone is one of the 7 baselines it beats (up to +8.48 points over the "
             "best)"),
            ("fedavg-ft", "Ours, not the paper's: FedMRL's personal models more accurate "
             "than a global model (FedAvg on the job's CNN: 27k parameters, no clip) "
             "fine-tuned per client for 2 epochs (the standard personalisation baseline)",
             "(not in the paper)"),
        ):  # fmt: skip
            if ("fedmrl", setting, method) not in have:
                continue
            mine, other = _shared(fm, _per_seed(df, "fedmrl", setting, method, "client"))
            curve = differences(curves, ("fedmrl", setting, "fedmrl"),
                                ("fedmrl", setting, method), CLIENT)  # fmt: skip
            verdict_cell = _paired(mine, other, "better", curve) + _area(df, setting, method)
            ours = f"client-mean acc {stat(mine)} vs {stat(other)}"
            rows.append((claim, figure, ours, where, verdict_cell))
    return rows


def _stragglers_rows(df: pd.DataFrame, curves: pd.DataFrame, have: set) -> list[tuple[str, ...]]:
    """FedProx's claim in its stragglers setting: FedProx against FedAvg, which drops them."""
    cells = [("compare", "mnist-stragglers", m) for m in ("fedprox", "fedavg")]
    if not set(cells) <= have:
        return []
    curve = differences(curves, *cells, GLOBAL)
    prox, avg = _shared(*(_per_seed(df, *cell, "global") for cell in cells))
    return [(
        "FedProx (Li et al. 2020): with stragglers, more accurate than FedAvg, which drops "
        "them", "+22 points of test accuracy on average in highly heterogeneous "
        "settings (abstract)", f"global acc {stat(prox)} vs {stat(avg)}",
        "compare / mnist-stragglers: about half of the client-rounds that can train late, "
        f"mu = {tuned('fedprox-mnist-stragglers'):g} (tuned on held-out data), partial work",
        _paired(prox, avg, "better", curve))]  # fmt: skip


def _area(df: pd.DataFrame, setting: str, method: str) -> str:
    """FedMRL's paired difference from `method` in area under the client-mean accuracy
    curve per round (early rounds count as much as late ones), for the verdict cell."""
    a, b = (_per_seed(df, "fedmrl", setting, m, "auc") for m in ("fedmrl", method))
    found = paired((a - b).dropna().to_numpy())
    return f"; area under the curve per round: {found}" if found else ""


def _koala_rows(
    df: pd.DataFrame, curves: pd.DataFrame, pretrained: dict[int, float], have: set
) -> list[tuple[str, ...]]:
    """KOALA's claims: accuracy against FedAvg on L, the small model and the pre-trained
    L, and the client storage and FLOPs it saves."""
    if ("koala", "constrained", "koala-pretrained") not in have:
        return []
    rows = []
    mine = ("koala", "constrained", "koala-pretrained")
    koala = _per_seed(df, *mine, "global")
    against = [
        (
            f"FedAvg on L on the {fleet} fleet",
            "similar accuracy to FedAvg on the large model",
            "similar (abstract)",
            "comparable",
            ("koala", fleet, "fedavg-L-pretrained"),
        )
        for fleet in ("constrained", "unconstrained")
    ]
    against.append(("FedAvg on the small model", "the fine-tuned L beats what the clients' "
                    "small model reaches by itself", "(the method's purpose)", "better",
                    ("koala", "constrained", "fedavg-small")))  # fmt: skip
    for name, claim, figure, kind, other in against:
        if other not in have:
            continue
        theirs = _per_seed(df, *other, "global")
        curve = differences(curves, mine, other, GLOBAL)
        rows.append((f"KOALA (Chen et al. 2024): {claim}", figure,
                     f"L acc {stat(koala)} (constrained fleet) vs {name} {stat(theirs)}",
                     f"koala / {other[1]}, L pre-trained on {PRETRAIN_SAMPLES} labels, "
                     "each arm's tuned lr", _paired(koala, theirs, kind, curve)))  # fmt: skip
    if pretrained:
        pre = pd.Series(pretrained, dtype=float)
        rows.append((
            "KOALA: fine-tuning through small client models improves the pre-trained L",
            "(the method's purpose)", f"L acc {stat(koala)} after fine-tuning vs {stat(pre)} "
            "pre-trained", "koala / constrained", _paired(koala, pre, "better")))  # fmt: skip
    sel = df[(df.experiment == "koala") & (df.setting == "constrained")]
    store = {m: sel[sel.method == m]["storage_kB"].mean()
             for m in ("koala-pretrained", "fedavg-L-pretrained")}  # fmt: skip
    flops = {m: sel[sel.method == m]["MFLOP_sample"].mean() for m in store}
    cut_s = 1 - store["koala-pretrained"] / store["fedavg-L-pretrained"]
    cut_f = 1 - flops["koala-pretrained"] / flops["fedavg-L-pretrained"]
    rows.append((
        "KOALA: far less client storage and compute than FedAvg on L",
        "97.2-97.6% less storage, 98.4-98.6% fewer FLOPs",
        f"{100 * cut_s:.1f}% less storage per trained client, {100 * cut_f:.1f}% fewer "
        "training FLOPs per sample",
        "koala / constrained",
        "cannot tell" if np.isnan(cut_s) or np.isnan(cut_f)
        else "holds by construction (the ratio of the model sizes: L ~40x the small model, "
        "as the paper's pairs)"))  # fmt: skip
    return rows


def _fedmrl_key(setting: str) -> tuple[int, int]:
    n, _, classes = setting.partition("-")[0], None, setting.rsplit("-", 1)[-1]
    return int(classes.removesuffix("cls")), int(n.removeprefix("N"))


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
        settings = sorted(set(fedmrl.setting), key=_fedmrl_key)
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
        fig, ax = plt.subplots(figsize=(8, 4.8))
        for k, (setting, method) in enumerate(
            (s, m) for s in ("constrained", "unconstrained", "centralized") for m in KOALA_ORDER
        ):
            g = koala[(koala.setting == setting) & (koala.method == method)]
            if len(g):
                band(ax, g, GLOBAL, f"{method} ({setting})", k)
        if pretrained:
            label = f"pre-trained L, before fine-tuning ({len(pretrained)} seeds)"
            ax.axhline(np.mean(list(pretrained.values())), color="k", ls="--", lw=1, label=label)
        ax.set_xlabel("round")
        ax.set_ylabel(
            "global test accuracy of each row's model\n(KOALA: L; FedAvg: the model named)"
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        written.append(_save(fig, folder / "study_koala.png"))
    fedmrl_pairs = [
        (f"FedMRL vs {name}, {setting}", "better", CLIENT, ("fedmrl", setting, "fedmrl"),
         ("fedmrl", setting, method))
        for setting in sorted(set(df[df.experiment == "fedmrl"]["setting"]), key=_fedmrl_key)
        for name, method in (("Standalone", "standalone"), ("FedAvg-ft", "fedavg-ft"))
    ]  # fmt: skip
    paired_figure = paired_against_rounds(curves, [*PAIRS, *fedmrl_pairs],
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
    *((f"KOALA's L vs {against}", kind, GLOBAL, ("koala", "constrained", "koala-pretrained"),
       ("koala", "constrained", method))
      for against, kind, method in (("FedAvg on L (constrained)", "comparable",
                                     "fedavg-L-pretrained"),
                                    ("FedAvg on the small model", "better", "fedavg-small"))),
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
        ax.set_title(f"{claim} ({kind}; {int(d.iloc[-1].notna().sum())} seeds)", fontsize=9)
        ax.set_xlabel("round")
        metric = "client-mean acc" if column == CLIENT else "global acc"
        ax.set_ylabel(f"{metric}: first minus second\n(paired, last-{LAST} mean)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(found) :]:
        ax.set_visible(False)
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_legend_handles_labels()[0]}
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=3, fontsize=8)
    return _save(fig, path)


def _late_range(rounds: pd.Index, intervals: list, kind: str) -> tuple[float, float]:
    """y limits that show the intervals after the first quarter of the rounds, and the
    verdict's bound(s): where a verdict settles is read there (the early rounds, far from
    it, may run off the axis)."""
    late = [p for r, p in zip(rounds, intervals, strict=True)
            if r >= rounds[0] + 0.25 * (rounds[-1] - rounds[0])]  # fmt: skip
    bounds = [0.0, -COMPARABLE_MARGIN] if kind == "comparable" else [0.0]
    low = min([p.low for p in late] + bounds)
    high = max([p.high for p in late] + bounds)
    pad = 0.1 * (high - low or 0.01)
    return low - pad, high + pad


def apart(df: pd.DataFrame) -> str:
    """The diverged runs, which no table, verdict or figure includes: a Markdown list."""
    gone = df[df["diverged"]]
    if not len(gone):
        return "No run diverged (non-finite loss, or at chance after its first quarter).\n"
    lines = [
        f"{len(gone)} runs diverged (a non-finite training loss, or at chance after "
        "their first quarter) and are left out of every table, verdict and figure:\n"
    ]
    lines += [f"- {r.experiment} / {r.setting} / {r.method}, seed {r.seed}: last-{LAST} "
              f"accuracy {r.global_ if np.isfinite(r.global_) else r.client:.3f}"
              for r in gone.rename(columns={"global": "global_"}).itertuples()]  # fmt: skip
    return "\n".join(lines) + "\n"


def tuning(df: pd.DataFrame, data: Path) -> str:
    """The tuned cells (TUNED: KOALA's arms' client learning rate, FedYogi's server
    learning rate, FedProx's mu, REFT's distillation learning rate): accuracy on held-out
    data (mean of the last evaluations; `tune_cells` says which) per value of the grid,
    and the value chosen, marked if it lies at an end of the grid; a table per tuned key."""
    tune = df[df.experiment == "tune"]
    if not len(tune):
        return "No tuning run is summarised yet.\n"
    tables: dict[tuple[str, tuple[float, ...]], list[str]] = {}
    for name, t in TUNED.items():
        runs = tune[tune.setting == name]
        if not len(runs):
            continue
        lines = tables.setdefault((t.label, t.grid), [
            f"| tuned cell ({t.key}) | " + " | ".join(f"{v:g}" for v in t.grid) + " | chosen |",
            "|---|" + "---|" * (len(t.grid) + 1)])  # fmt: skip
        scores = [str(stat(runs[runs.method == f"{t.label}={v:g}"]["global"])) for v in t.grid]
        found = tuning_scores(name, data)
        chosen = best_value(found) if found else None
        edge = " (an end of the grid)" if chosen in (t.grid[0], t.grid[-1]) else ""
        shown = "pending" if chosen is None else f"{chosen:g}{edge}"
        if found and chosen is None:
            shown = "none: every value diverged or has no accuracy (the cell does not run)"
        lines.append(f"| {name} | " + " | ".join(scores) + f" | {shown} |")
    return "\n\n".join("\n".join(lines) for lines in tables.values()) + "\n"


def progress(df: pd.DataFrame) -> str:
    """Which cells have how many seeds: a study still running says so."""
    done = df[df.experiment != "tune"].groupby(["experiment", "setting"])
    lines = ["| experiment / setting | methods (seeds done) |", "|---|---|"]
    for (experiment, setting), g in done:
        counts = g.groupby("method")["seed"].nunique()
        lines.append(f"| {experiment} / {setting} | "
                     + ", ".join(f"{m} ({n})" for m, n in counts.items()) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def still_to_do(df: pd.DataFrame) -> str:
    """The study's cells (analysis/study.py) that lack some of their seeds, per experiment
    and setting, with the wall time they need at the mean of the cell's finished runs;
    the tuned cells (TUNED) join once their values are tuned."""
    key = ["experiment", "setting", "method"]
    have = df.groupby(key)["seed"].agg(set).to_dict()
    wall = df.groupby(key)["wall_s"].mean().to_dict()
    todo: dict[tuple[str, str], dict[tuple[int, ...], list[str]]] = {}
    seconds: dict[tuple[str, str], float] = {}
    untimed: dict[tuple[str, str], int] = {}
    planned = [(c, SEEDS) for c in cells()] + [(c, TUNE_SEEDS) for c in tune_cells()]
    for cell, seeds in planned:
        at = (cell.experiment, cell.setting)
        left = sorted(set(seeds) - have.get((*at, cell.method), set()))
        if left:
            todo.setdefault(at, {}).setdefault(tuple(left), []).append(cell.method)
            timed = wall.get((*at, cell.method), math.nan)
            if math.isfinite(timed):
                seconds[at] = seconds.get(at, 0.0) + timed * len(left)
            else:
                untimed[at] = untimed.get(at, 0) + len(left)
    if not todo:
        return "None: every planned run is summarised.\n"
    lines = ["| experiment / setting | methods (seeds still to run) | wall time they need "
             "(2 ranks, at the mean of the cell's finished runs) |", "|---|---|---|"]  # fmt: skip
    for at, by_seeds in todo.items():
        runs = "; ".join(f"{', '.join(methods)} (seeds {', '.join(map(str, left))})"
                         for left, methods in by_seeds.items())  # fmt: skip
        need = [f"{seconds[at] / 3600:.1f} h"] if at in seconds else []
        need += [f"{untimed[at]} runs not timed yet"] if at in untimed else []
        lines.append(f"| {' / '.join(at)} | {runs} | {' + '.join(need)} |")
    lines.append(f"\nIn all: {sum(seconds.values()) / 3600:.1f} h for the runs whose cell has a "
                 f"finished run, and {sum(untimed.values())} runs of cells with none "
                 "(docs/study_design.md estimates them).")  # fmt: skip
    waiting = sorted(
        {f"{t.experiment} / {t.setting} / {m}" for t in TUNED.values() for m in t.methods}
        - {f"{c.experiment} / {c.setting} / {c.method}" for c in cells()}
    )
    if waiting:
        lines.append(f"\nPlanned once their tuning runs are summarised: {', '.join(waiting)}.")
    return "\n".join(lines) + "\n"


PROBES = "fedmrl_probes.csv"  # analysis/fedmrl_probe.py writes it beside the summaries
SHARED = "FedMRL G, hidden layer"  # FedMRL's shared features against FedAvg's, paired
FEDAVG_FEATURES = "FedAvg CNN, hidden layer"


def probe_section(path: Path, fedmrl: pd.DataFrame) -> list[str]:
    """docs/study.md's setting check of FedMRL: linear probes of its shared model's features
    against FedAvg's (analysis/fedmrl_probe.py), per setting, beside the claims' accuracy
    difference; says which seeds the probes lack."""
    head = ("### A setting check: the features FedMRL's shared model learns\n\n"
            "A linear probe (logistic regression on standardised frozen features, fitted on "
            "every client's training split and scored on every client's test split; "
            "`analysis/fedmrl_probe.py`) asks how well the final shared model's features "
            "separate the 10 digits: FedMRL's G against the hidden layer of FedAvg's final "
            "global model, on the same clients and seeds. FedMRL never predicts from G's "
            "features alone (its headers read P_k(concat(G, F_k))), so the probe describes "
            "what the shared model learns, not why a personal model wins or loses: each "
            "setting's gap is shown beside the claims' accuracy difference.\n")  # fmt: skip
    if not path.exists():
        return [head, "No probe yet: run `python analysis/fedmrl_probe.py`.\n"]
    probes = pd.read_csv(path)
    lines = [head, "| setting | features | dims | seeds | pooled probe: acc on every "
             "client's test |", "|---|---|---|---|---|"]  # fmt: skip
    notes = []
    for setting in sorted(set(probes.setting), key=_fedmrl_key):
        sel = probes[probes.setting == setting]
        for features, g in sel.groupby("features", sort=False):
            lines.append(f"| {setting} | {features} | {g['dims'].iloc[0]} | {len(g)} | "
                         f"{stat(g['pooled_probe'])} |")  # fmt: skip
        wide = sel.pivot(index="seed", columns="features", values="pooled_probe")
        gap = paired((wide[FEDAVG_FEATURES] - wide[SHARED]).to_numpy())
        as_is = sel[sel.features == FEDAVG_FEATURES].set_index("seed")["as_is"]
        ours, tuned = (_per_seed(fedmrl, "fedmrl", setting, m, "client")
                       for m in ("fedmrl", "fedavg-ft"))  # fmt: skip
        probed = as_is.index  # (the seeds where both runs are there)
        loss = paired((ours - tuned).reindex(probed).dropna().to_numpy())
        notes.append(f"- {setting}: probe, FedAvg's hidden layer minus G's: "
                     f"{gap or 'one seed'}; client-mean accuracy, FedMRL minus FedAvg-ft: "
                     f"{loss or 'one seed'}. FedAvg's final global model as it is (no "
                     f"fine-tuning): client-mean acc on own test {stat(as_is)} (final round; "
                     f"fine-tuned, last {LAST} evaluations: "
                     f"{stat(tuned.reindex(probed))}).")  # fmt: skip
        missing = sorted(set(ours.index) & set(tuned.index) - set(sel.seed))
        if missing:
            notes.append(f"  Seeds {', '.join(map(str, missing))} are not probed yet: run "
                         "`python analysis/fedmrl_probe.py`.")  # fmt: skip
    return [*lines, "", *notes, ""]


def report(
    df: pd.DataFrame, curves: pd.DataFrame, pretrained: dict[int, float], data: Path
) -> tuple[str, str]:
    """(the full Markdown report, the README block) of the runs that did not diverge
    (`df` holds them all; `apart` lists the others)."""
    everything, df = df, df[~df["diverged"]]
    tune, df = df[df.experiment == "tune"], df[df.experiment != "tune"]
    seeds = sorted(set(df.seed))
    wall = df["wall_s"].sum() / 60
    head = (
        f"Generated by `python analysis/study_report.py results/study` from {len(df)} runs "
        f"(seeds {', '.join(map(str, seeds))}; {wall:.0f} min of wall time in their rounds "
        "on 2 ranks; "
        f"and {len(tune)} tuning runs). "
        f"Accuracies: mean of each run's last {LAST} evaluations, then mean ± the half-width "
        "of its 95% t interval over seeds. Time and bytes to target: until the mean of the "
        "last 5 evaluations first reaches it. —: no client training (the client-rounds of "
        "majority and centralized are only the fleet's schedule), or no global model (the "
        "global-acc columns of majority, local-only and FedMRL; their client-mean-acc columns "
        "compare them with the rest). The client columns score every "
        "client, including those that never trained, with the model it would use (see the "
        "README). FedMRL trains two extractors (G and the client's own F_k) and has no model "
        "that predicts alone: no microcontroller of the compare fleets holds it as its "
        "paper sizes it, so it serves them nothing; fedmrl-eighth, every layer at an eighth "
        "(ours), fits two thirds of them, and the column of the clients but microcontrollers "
        "compares every method on the clients the paper-sized FedMRL serves "
        "(docs/study_design.md)."
    )
    table_of_claims = claims(df, curves, pretrained)
    rule = (f"Verdicts pair the runs of one seed (same data, fleet and client sampling): the "
            "mean paired difference and its 95% t interval over seeds. \"Better\" holds if the "
            "interval lies above 0 and does not hold if it lies below. \"Comparable\" allows "
            f"{COMPARABLE_MARGIN * 100:.0f} points less (a margin fixed before running, in "
            "analysis/study.py): it holds if the one-sided 95% bound lies above -margin, does "
            "not hold if the whole interval lies below it (non-inferiority). A \"better\" "
            "that cannot be told is also tested for equivalence within the same margin (two "
            "one-sided tests: the 90% interval inside ±margin); near 97% accuracy 2 points is "
            "much of the remaining error, so an equivalence rules out only a larger difference. "
            "Anything else cannot be told with these seeds. "
            f"{len(table_of_claims.splitlines()) - 2} rows are tested.")  # fmt: skip
    settle = ("Where each verdict settles: every claim's paired difference (mean over seeds, "
              "95% interval) against rounds; each point is a running mean of 5 evaluations, so "
              "neighbours are not independent; each panel's y axis spans its last three "
              "quarters of rounds (earlier rounds may run off it).\n\n"
              "![paired differences against rounds](figures/study_paired.png)\n")  # fmt: skip
    parts = [f"# Study results\n\n{head}\n", "## Claims\n", table_of_claims, "", rule,
             "", settle, "## Runs done\n", progress(df), "## Runs still to do\n",
             still_to_do(everything), "## Diverged runs\n",
             apart(everything), "## Values tuned on held-out data "
             "(KOALA's arms, FedYogi, FedProx, REFT)\n", tuning(tune, data)]  # fmt: skip
    block = [head, "", table_of_claims, "", rule, "",
             "Every table, curve, caveat and the runs still to do: docs/study.md.", ""]  # fmt: skip
    for dataset in ("mnist", "synthetic"):
        sub = df[(df.experiment == "compare") & (df.setting == dataset)]
        if len(sub):
            parts += [f"## Every method on one heterogeneous fleet: {dataset}\n", sizes(sub),
                      table(sub, ALL_COLUMNS, COMPARE_ORDER), ""]  # fmt: skip
    sub = df[(df.experiment == "compare") & (df.setting == "mnist-stragglers")]
    if len(sub):
        parts += ["## Stragglers: FedProx's setting on mnist\n\nThe compare job's fleet with "
                  "a deadline at which about half of the client-rounds that can train are late: "
                  "FedAvg drops them; FedProx (its tuned mu, and mu = 0: partial work alone) and "
                  "FedNova aggregate the local steps they fit before it.\n", sizes(sub),
                  table(sub, STRAGGLER_COLUMNS, COMPARE_ORDER), ""]  # fmt: skip
    fedmrl = df[df.experiment == "fedmrl"]
    if len(fedmrl):
        parts.append("## FedMRL in its official setting, against the per-client baselines\n\n"
                     "fedavg-ft's cost columns (bytes, MFLOP, J, virtual seconds) leave out its "
                     "fine-tuning: it happens at evaluation and is not emulated.\n")  # fmt: skip
        for setting in sorted(set(fedmrl.setting), key=_fedmrl_key):
            cell = fedmrl[fedmrl.setting == setting]
            parts += [f"### {setting}\n", sizes(cell), table(cell, PERSONAL_COLUMNS, FEDMRL_ORDER),
                      ""]  # fmt: skip
        parts += probe_section(data / PROBES, fedmrl)
    koala = df[df.experiment == "koala"]
    if len(koala):
        parts.append("## KOALA fine-tuning a pre-trained large model\n")
        if pretrained:
            parts.append(
                f"Pre-trained L before any round (global test accuracy): "
                f"{stat(pd.Series(pretrained))} over {len(pretrained)} seeds.\n"
            )
        for setting in ("constrained", "unconstrained", "centralized"):
            sub = koala[koala.setting == setting]
            if len(sub):
                parts += [f"### {setting}\n", sizes(sub), table(sub, ALL_COLUMNS, KOALA_ORDER),
                          ""]  # fmt: skip
    return "\n".join(parts) + "\n", "\n".join(block)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, nargs="?",
                   help="the study's runs (results/study): summarise the finished ones into "
                   "--data first; without it, report from the summaries alone")  # fmt: skip
    p.add_argument("--data", type=Path, default=Path("docs/study"), help="run summaries")
    p.add_argument("--docs", type=Path, default=Path("docs"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    args = p.parse_args()
    folder = args.docs / "figures"
    problems = {f"{args.results} is not a folder of study runs":
                args.results is not None and not args.results.is_dir(),
                f"no README at {args.readme} (--readme)": not args.readme.is_file(),
                f"no folder {args.docs} (--docs)": not args.docs.is_dir(),
                f"{folder} is a file, not the figures' folder":
                folder.exists() and not folder.is_dir()}  # fmt: skip
    refuse_any(problems, "study_report")
    if args.results is not None:
        print(f"summarised {refresh(args.results, args.data)} runs into {args.data}")
    df, curves, pretrained = collect(args.data)
    keys = ["experiment", "setting", "method", "seed"]
    df.sort_values(keys).to_csv(args.data / "per_seed.csv", index=False, float_format="%.6g")
    gone = df[df["diverged"]][keys]
    kept = curves.merge(gone, on=keys, how="left", indicator=True)
    kept = kept[kept["_merge"] == "left_only"].drop(columns="_merge")
    full, block = report(df, kept, pretrained, args.data)
    (args.docs / "study.md").write_text(full)
    print(full)
    for path in figures(df[~df["diverged"]], kept, pretrained, args.docs / "figures"):
        print(f"wrote {path}")
    readme = args.readme.read_text()
    if BEGIN in readme and END in readme:
        before, rest = readme.split(BEGIN, 1)
        args.readme.write_text(f"{before}{BEGIN}\n{block}\n{END}{rest.split(END, 1)[1]}")
        print(f"updated the study block of {args.readme}")


if __name__ == "__main__":
    main()
