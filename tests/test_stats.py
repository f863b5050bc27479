"""analysis/stats.py: the study's paired intervals, verdicts, seeds needed, divergence."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy import stats as scipy_stats

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "analysis"))
from stats import diverged, equivalent, paired, seeds_needed, verdict  # noqa: E402


def test_the_interval_is_the_95_percent_t_interval():
    d = np.array([0.01, 0.03, -0.005, 0.02, 0.015])
    p = paired(d)
    low, high = scipy_stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=scipy_stats.sem(d))
    assert (p.low, p.high, p.n) == (pytest.approx(low), pytest.approx(high), 5)
    assert paired(np.array([0.1, np.nan])) is None  # one finite seed: no interval


def test_better_holds_fails_or_cannot_be_told():
    assert verdict(np.array([0.02, 0.03, 0.025, 0.028, 0.022]), "better") == "holds"
    assert verdict(np.array([-0.02, -0.03, -0.025, -0.028, -0.022]), "better") == "does not hold"
    assert verdict(np.array([0.05, -0.04, 0.01, -0.02, 0.03]), "better") == "cannot tell"


def test_comparable_is_a_one_sided_test_against_the_margin():
    tight = np.array([-0.005, -0.01, 0.0, -0.008, -0.002])
    assert verdict(tight, "comparable", 0.02) == "holds"
    assert verdict(tight + 0.5, "comparable", 0.02) == "holds"  # better is comparable too
    assert verdict(tight - 0.05, "comparable", 0.02) == "does not hold"
    assert verdict(np.array([0.02, -0.06, 0.01, -0.05, 0.0]), "comparable", 0.02) == "cannot tell"
    with pytest.raises(ValueError):
        verdict(tight, "worse")


def test_seeds_needed_decides_a_row_that_cannot_be_told():
    rng = np.random.default_rng(0)
    d = 0.01 + 0.02 * rng.standard_normal(3)
    n = seeds_needed(d, "better")
    assert n is not None and n > 3
    p = paired(d)
    longer = np.full(n, p.mean) + p.sd * np.resize([1.0, -1.0], n) * np.sqrt((n - 1) / n)
    assert verdict(longer, "better") != "cannot tell"  # same mean and sd, n seeds: decided
    assert seeds_needed(np.array([0.0, 0.0]), "better") is None


def test_a_run_at_chance_or_with_an_infinite_loss_diverged():
    acc = np.array([0.3, 0.1, 0.1, 0.11, np.nan, 0.1, 0.09, 0.1])  # chance after the first
    assert diverged(np.ones(8), acc, chance=0.1)
    assert not diverged(np.ones(8), np.linspace(0.2, 0.9, 8), chance=0.1)
    assert diverged(np.array([1.0, np.inf]), np.linspace(0.2, 0.9, 8), chance=0.1)


def test_equivalence_is_the_90_percent_interval_inside_the_margin():
    """Two one-sided 5% tests: the 90% t interval within (-margin, +margin)."""
    d = np.array([0.004, -0.003, 0.001, 0.006, -0.002])
    low, high = scipy_stats.t.interval(0.90, len(d) - 1, loc=d.mean(), scale=scipy_stats.sem(d))
    found = equivalent(d, 0.02)
    assert (found.low, found.high) == (pytest.approx(low), pytest.approx(high))
    assert equivalent(d, 0.004) is None  # the interval reaches past a narrower margin
    assert equivalent(d + 0.016, 0.02) is None  # close to the margin: not shown equivalent
    assert equivalent(np.array([0.001]), 0.02) is None  # one seed
