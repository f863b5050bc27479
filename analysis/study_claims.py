"""The study's claims table: each paper claim's verdict from paired per-seed differences
(analysis/stats.py), on the seeds both methods have, with where the verdict settles."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from stats import MOST_SEEDS, equivalent, paired, seeds_needed, verdict
from study import CLAIMED, COMPARABLE_MARGIN, PRETRAIN_SAMPLES, tuned
from study_summaries import CLIENT, GLOBAL, LAST

MIN_SEEDS = 5  # a verdict on fewer seeds is marked preliminary


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


def per_seed(df: pd.DataFrame, experiment: str, setting: str, method: str, col: str) -> pd.Series:
    sel = df[(df.experiment == experiment) & (df.setting == setting) & (df.method == method)]
    return sel.set_index("seed")[col].dropna()


def shared(*series: pd.Series) -> list[pd.Series]:
    """Each series on the seeds they all have: a claim compares its methods on the runs it
    pairs, not on whichever seeds each has run so far."""
    seeds = sorted(set.intersection(*(set(s.index) for s in series)))
    return [s.reindex(seeds) for s in series]


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
    margin). A row that cannot be told says whether it is equivalent within the margin
    (a "better" row) and how many seeds would decide it if the differences kept their
    mean and spread."""
    d = (a - b).dropna().to_numpy()
    margin = COMPARABLE_MARGIN if kind == "comparable" else 0.0
    found, interval = verdict(d, kind, margin), paired(d)
    if interval is None:
        seeds = f"{len(d)} paired seed{'s' if len(d) != 1 else ''}"
        return f"preliminary, {len(d)} of {MIN_SEEDS} seeds: cannot tell ({seeds})"
    more = ""
    if found == "cannot tell":
        same = equivalent(d, COMPARABLE_MARGIN) if kind == "better" else None
        if same is not None:
            more = (f"; equivalent within ±{COMPARABLE_MARGIN:g} (two one-sided tests, 90% "
                    f"interval [{same.low:+.3f}, {same.high:+.3f}])")  # fmt: skip
        need = seeds_needed(d, kind, margin)
        if need:
            more += f"; ~{need} seeds would decide it"
        else:
            more += (
                "; on the bound"
                if interval.mean == -margin
                else f"; over {MOST_SEEDS} seeds would decide it"
            )
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
    mine, fedavg = shared(*(per_seed(df, "compare", data, m, "global") for m in (method, "fedavg")))
    here, base = (per_seed(df, "compare", data, m, cost).reindex(mine.index).mean()
                  for m in (method, "fedavg"))  # fmt: skip
    curve = differences(curves, ("compare", data, method), ("compare", data, "fedavg"), GLOBAL)
    verdict = _paired(mine, fedavg, "comparable", curve)
    if verdict.startswith("holds") and not here < base:
        verdict = "does not hold" + verdict.removeprefix("holds")
    ours = (f"global acc {stat(mine)} vs FedAvg {stat(fedavg)}; {cost_name} {here:.1f} vs "
            f"{base:.1f}")  # fmt: skip
    mcu, served = shared(*(per_seed(df, "compare", data, m, "client_mcu")
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
    for setting in sorted(set(df[df.experiment == "fedmrl"]["setting"]), key=fedmrl_key):
        fm = per_seed(df, "fedmrl", setting, "fedmrl", "client")
        cell = df[(df.experiment == "fedmrl") & (df.setting == setting)]
        n_clients = fedmrl_key(setting)[1]  # CIFAR-10: 50,000 less 10,000 to validate
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
            mine, other = shared(fm, per_seed(df, "fedmrl", setting, method, "client"))
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
    prox, avg = shared(*(per_seed(df, *cell, "global") for cell in cells))
    ours = f"global acc {stat(prox)} vs {stat(avg)}"
    alone = ("compare", "mnist-stragglers", "fedprox-mu0")
    if alone in have:  # what partial work does without the proximal term, on the same seeds
        mu0 = per_seed(df, *alone, "global").reindex(prox.index)
        ours += f"; mu = 0 (partial work alone): {stat(mu0)}"
    return [(
        "FedProx (Li et al. 2020): with stragglers, more accurate than FedAvg, which drops "
        "them", "+22 points of test accuracy on average in highly heterogeneous "
        "settings (abstract)", ours,
        "compare / mnist-stragglers: about half of the client-rounds that can train late, "
        f"mu = {tuned('fedprox-mnist-stragglers'):g} (tuned on held-out data), partial work",
        _paired(prox, avg, "better", curve))]  # fmt: skip


def _area(df: pd.DataFrame, setting: str, method: str) -> str:
    """FedMRL's paired difference from `method` in area under the client-mean accuracy
    curve per round (early rounds count as much as late ones), for the verdict cell."""
    a, b = (per_seed(df, "fedmrl", setting, m, "auc") for m in ("fedmrl", method))
    found = paired((a - b).dropna().to_numpy())
    return f"; area under the curve per round: {found}" if found else ""


KOALA = CLAIMED  # the KOALA arm the claims read (analysis/study.py: why)
PRETRAINED_L = "L before fine-tuning"  # the pre-trained L as a curve, flat over the rounds
SIMILAR = ("similar accuracy to FedAvg on the large model", "similar (abstract)", "comparable")
KOALA_AGAINST = (  # (fleet, method, its name, claim, paper's figure, kind): KOALA on the fleet
    ("constrained", "fedavg-L-pretrained", "FedAvg on L", *SIMILAR),
    ("unconstrained", "fedavg-L-pretrained", "FedAvg on L", *SIMILAR),
    ("constrained", "fedavg-small", "FedAvg on the small model", "the fine-tuned L beats what "
     "the clients' small model reaches by itself", "(the method's purpose)", "better"),
)  # fmt: skip


def with_pretrained(curves: pd.DataFrame, pretrained: dict[int, float]) -> pd.DataFrame:
    """`curves` and, for each seed with a pre-trained L, its accuracy as a flat curve over
    the rounds of that seed's KOALA run on the constrained fleet (method PRETRAINED_L): the
    baseline of the claim that fine-tuning improves it."""
    koala = curves[(curves.experiment == "koala") & (curves.setting == "constrained")
                   & (curves.method == KOALA) & curves.seed.isin(list(pretrained))]  # fmt: skip
    flat = koala[["experiment", "setting", "seed", "round"]].assign(method=PRETRAINED_L)
    flat[GLOBAL] = flat.seed.map(pretrained).astype(float)
    return pd.concat([curves, flat], ignore_index=True)


def _koala_rows(
    df: pd.DataFrame, curves: pd.DataFrame, pretrained: dict[int, float], have: set
) -> list[tuple[str, ...]]:
    """KOALA's claims, on its warm-started arm: accuracy against FedAvg on L (on each
    fleet, both arms on the same clients), against the small model and the pre-trained
    L, and the client storage and FLOPs it saves."""
    rows, curves = [], with_pretrained(curves, pretrained)
    for fleet, method, name, claim, figure, kind in KOALA_AGAINST:
        mine, other = ("koala", fleet, KOALA), ("koala", fleet, method)
        if not {mine, other} <= have:
            continue
        koala, theirs = shared(per_seed(df, *mine, "global"), per_seed(df, *other, "global"))
        curve = differences(curves, mine, other, GLOBAL)
        rows.append((f"KOALA (Chen et al. 2024): {claim}", figure,
                     f"L acc {stat(koala)} vs {name} {stat(theirs)}",
                     f"koala / {fleet} fleet, both arms; L pre-trained on {PRETRAIN_SAMPLES} "
                     "labels, warm start (ours), each arm's tuned fine-tuning learning rate "
                     "(KOALA's clients: fedavg-small's)",
                     _paired(koala, theirs, kind, curve)))  # fmt: skip
    mine = ("koala", "constrained", KOALA)
    if pretrained and mine in have:
        koala, pre = shared(per_seed(df, *mine, "global"), pd.Series(pretrained, dtype=float))
        curve = differences(curves, mine, ("koala", "constrained", PRETRAINED_L), GLOBAL)
        rows.append((
            "KOALA: fine-tuning through small client models improves the pre-trained L",
            "(the method's purpose)", f"L acc {stat(koala)} after fine-tuning vs {stat(pre)} "
            "pre-trained", "koala / constrained, warm start (ours)",
            _paired(koala, pre, "better", curve)))  # fmt: skip
    if {mine, ("koala", "constrained", "fedavg-L-pretrained")} <= have:
        sel = df[(df.experiment == "koala") & (df.setting == "constrained")]
        store = {
            m: sel[sel.method == m]["storage_kB"].mean() for m in (KOALA, "fedavg-L-pretrained")
        }
        flops = {m: sel[sel.method == m]["MFLOP_sample"].mean() for m in store}
        cut_s = 1 - store[KOALA] / store["fedavg-L-pretrained"]
        cut_f = 1 - flops[KOALA] / flops["fedavg-L-pretrained"]
        rows.append((
            "KOALA: far less client storage and compute than FedAvg on L",
            "97.2-97.6% less storage, 98.4-98.6% fewer FLOPs",
            f"{100 * cut_s:.1f}% less model storage per trained client (the model it holds "
            f"and uploads), {100 * cut_f:.1f}% fewer training FLOPs per sample",
            "koala / constrained",
            "cannot tell" if np.isnan(cut_s) or np.isnan(cut_f)
            else "holds by construction (the ratio of the model sizes: L ~40x the small model; "
            "the paper's pairs, by their storage, 36-42x)"))  # fmt: skip
    return rows


def fedmrl_key(setting: str) -> tuple[int, int]:
    n, _, classes = setting.partition("-")[0], None, setting.rsplit("-", 1)[-1]
    return int(classes.removesuffix("cls")), int(n.removeprefix("N"))
