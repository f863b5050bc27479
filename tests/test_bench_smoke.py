"""Tiny runs of the benchmark scripts' pieces, so a benchmark cannot rot unnoticed."""

from __future__ import annotations

from tests.conftest import ROOT


def test_w2_planning_runs_on_a_small_fleet(monkeypatch):
    from bench.w2 import plan_seconds

    monkeypatch.chdir(ROOT)
    fleet_s, data_s, plan_s = plan_seconds(2000, rounds=3)
    assert fleet_s >= 0 and data_s >= 0 and 0 < plan_s < 5
