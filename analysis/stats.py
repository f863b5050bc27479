"""The study's statistics: paired per-seed differences, their 95% t intervals, verdicts on
"better" and "comparable" (non-inferiority: one-sided against a margin fixed before
running), equivalence within that margin (two one-sided tests), the seeds a
still-undecided row would need, and runs that diverged.

The runs of one seed share data, fleet and client sampling, so a claim compares methods
through the per-seed differences d = a - b. With n seeds, mean(d) +- t(0.975, n-1) x
sd(d) / sqrt(n) is the 95% interval; "a better than b" holds if the interval lies above
0, fails if it lies below 0. "a comparable to b" (a at most `margin` lower) holds if the
one-sided 95% bound mean(d) - t(0.95, n-1) x se lies above -margin (TOST's lower test;
"comparable" here is one-sided: a may be better), fails if the whole 95% interval lies
below -margin. Anything else cannot be told with these seeds. "a equivalent to b"
(within +-margin) holds when both one-sided 95% tests do (TOST): the 90% t interval lies
inside (-margin, +margin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t  # (scikit-learn's dependency)

LEVEL = 0.95
MOST_SEEDS = 1000  # the most seeds `seeds_needed` looks at


@dataclass(frozen=True)
class Paired:
    """The per-seed differences' mean, its 95% t interval and the seeds paired."""

    mean: float
    low: float
    high: float
    n: int
    sd: float

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}], {self.n} seeds"


def paired(d: np.ndarray) -> Paired | None:
    """The 95% t interval of the mean of the finite differences `d` (None below 2 seeds)."""
    d = np.asarray(d, dtype=np.float64)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return None
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(student_t.ppf(0.5 + LEVEL / 2, len(d) - 1)) * sd / math.sqrt(len(d))
    return Paired(mean, mean - half, mean + half, len(d), sd)


def one_sided_half(p: Paired) -> float:
    """t(LEVEL, n-1) x se: the distance from the mean to its one-sided 95% bound."""
    return float(student_t.ppf(LEVEL, p.n - 1)) * p.sd / math.sqrt(p.n)


def verdict(d: np.ndarray, kind: str, margin: float = 0.0) -> str:
    """ "holds", "does not hold" or "cannot tell" for "a better than b" (kind "better")
    or "a at most `margin` below b" (kind "comparable"), from the differences d = a - b."""
    p = paired(d)
    if p is None:
        return "cannot tell"
    if kind == "better":
        return "holds" if p.low > 0 else "does not hold" if p.high < 0 else "cannot tell"
    if kind != "comparable":
        raise ValueError(f"unknown claim kind {kind!r}")
    if p.mean - one_sided_half(p) > -margin:
        return "holds"
    return "does not hold" if p.high < -margin else "cannot tell"


def equivalent(d: np.ndarray, margin: float) -> Paired | None:
    """The 90% t interval of the differences d if it lies inside (-margin, +margin) (TOST
    at 5%: equivalent within the margin), else None (also below 2 seeds)."""
    p = paired(d)
    if p is None:
        return None
    half = one_sided_half(p)
    inside = -margin < p.mean - half and p.mean + half < margin
    return Paired(p.mean, p.mean - half, p.mean + half, p.n, p.sd) if inside else None


def seeds_needed(d: np.ndarray, kind: str, margin: float = 0.0) -> int | None:
    """Seeds at which a row that cannot be told yet would be decided, if the differences
    kept their mean and sd: the least n whose interval half-width is below the distance
    from the mean to the decision bound (0 for "better", -margin for "comparable"); None
    if no n up to MOST_SEEDS would (a mean on the bound, or too close to it)."""
    p = paired(d)
    if p is None or p.sd == 0:
        return None
    bound = 0.0 if kind == "better" else -margin
    gap = abs(p.mean - bound)
    for n in range(max(p.n, 2), MOST_SEEDS + 1):
        quantile = LEVEL if kind == "comparable" and p.mean > bound else 0.5 + LEVEL / 2
        if float(student_t.ppf(quantile, n - 1)) * p.sd / math.sqrt(n) < gap:
            return n
    return None


def diverged(
    loss: np.ndarray, accuracy: np.ndarray, chance: float, tolerance: float = 0.02
) -> bool:
    """Whether a run diverged: a non-finite training loss (`loss`: of the rounds that
    trained a client), or an accuracy (NaN: not evaluated) at chance, within
    `tolerance`, at every evaluation after the first quarter of them."""
    loss, accuracy = np.asarray(loss, np.float64), np.asarray(accuracy, np.float64)
    if len(loss) and not np.all(np.isfinite(loss)):
        return True
    evaluated = accuracy[np.isfinite(accuracy)]
    late = evaluated[len(evaluated) // 4 :]
    return bool(len(late)) and bool(np.all(late <= chance + tolerance))
