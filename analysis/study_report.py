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
column holds one metric, named in its header. The summaries are analysis/study_summaries.py's,
the claims' verdicts analysis/study_claims.py's, the figures analysis/study_figures.py's.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from stats import paired
from study import (
    COMPARABLE_MARGIN,
    SEEDS,
    TUNE_SEEDS,
    TUNED,
    best_value,
    cells,
    tune_cells,
    tuning_scores,
)
from study_claims import claims, fedmrl_key, per_seed, stat
from study_figures import COMPARE_ORDER, FEDMRL_ORDER, KOALA_ORDER, figures
from study_summaries import CLIENT, GLOBAL, LAST, TARGETS, collect, refresh

from mpifl.arguments import refuse_any

BEGIN, END = "<!-- study:begin -->", "<!-- study:end -->"


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
    """The tuned cells (TUNED: KOALA's arms' fine-tuning learning rate, FedYogi's server
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
    planned, tuning = cells(), tune_cells()  # (each reads every tuning summary: once)
    for cell, seeds in [(c, SEEDS) for c in planned] + [(c, TUNE_SEEDS) for c in tuning]:
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
        - {f"{c.experiment} / {c.setting} / {c.method}" for c in planned}
    )
    if waiting:
        lines.append(f"\nPlanned once their tuning runs are summarised: {', '.join(waiting)}.")
    tuning_now = {c.setting for c in tuning}
    based = sorted(f"{name} (after {t.base})" for name, t in TUNED.items()
                   if t.base and name not in tuning_now)  # fmt: skip
    if based:
        lines.append(f"\nTuning runs that wait for another cell's tuned value: {', '.join(based)}.")
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
    for setting in sorted(set(probes.setting), key=fedmrl_key):
        sel = probes[probes.setting == setting]
        for features, g in sel.groupby("features", sort=False):
            lines.append(f"| {setting} | {features} | {g['dims'].iloc[0]} | {len(g)} | "
                         f"{stat(g['pooled_probe'])} |")  # fmt: skip
        wide = sel.pivot(index="seed", columns="features", values="pooled_probe")
        gap = paired((wide[FEDAVG_FEATURES] - wide[SHARED]).to_numpy())
        as_is = sel[sel.features == FEDAVG_FEATURES].set_index("seed")["as_is"]
        ours, tuned = (per_seed(fedmrl, "fedmrl", setting, m, "client")
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
            "Anything else cannot be told with these seeds; such a row says how many seeds "
            "would decide it if its differences kept their mean and spread (for planning "
            "another study: this one does not add seeds after looking, which would need a "
            "sequential design). "
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
    if (df.experiment == "compare").any():
        parts.append(
            "![accuracy against rounds, every compare method](figures/study_compare.png)\n"
        )
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
                     "fine-tuning: it happens at evaluation and is not emulated.\n\n"
                     "![FedMRL and its baselines](figures/study_fedmrl.png)\n")  # fmt: skip
        for setting in sorted(set(fedmrl.setting), key=fedmrl_key):
            cell = fedmrl[fedmrl.setting == setting]
            parts += [f"### {setting}\n", sizes(cell), table(cell, PERSONAL_COLUMNS, FEDMRL_ORDER),
                      ""]  # fmt: skip
        parts += probe_section(data / PROBES, fedmrl)
    koala = df[df.experiment == "koala"]
    if len(koala):
        parts.append("## KOALA fine-tuning a pre-trained large model\n\n"
                     "![KOALA's arms against rounds](figures/study_koala.png)\n")  # fmt: skip
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
