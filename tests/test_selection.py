"""Client selection: uniform (unchanged), power-of-choice and Oort from what a server knows
of past rounds, identical on every rank count and across a resume; plugins and refusals."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mpifl.engine import checkpoint
from mpifl.engine.selection import Oort, PowerOfChoice, Selector, build_selector
from mpifl.errors import ConfigError
from mpifl.jobs import load_job
from mpifl.results.schema import PARTICIPATION_DTYPE, Status
from tests.conftest import ROOT, assert_same_results, env, in_process, mpifl, run_here, run_ok

N_TRAIN = np.arange(10, 110)  # client k holds 10 + k samples


def config(**selection):
    sets = [f"selection.{k}={v!r}" if isinstance(v, str) else f"selection.{k}={v}"
            for k, v in selection.items()]  # fmt: skip
    return load_job(ROOT / "jobs/quickstart.toml", sets)


def rows(round_: int, clients, loss, duration=1.0, status=Status.TRAINED) -> np.ndarray:
    out = np.zeros(len(clients), PARTICIPATION_DTYPE)
    out["round"], out["client"], out["status"] = round_, clients, status
    out["loss"], out["compute_time"], out["comm_time"] = loss, duration, 0.0
    return out


def test_power_of_choice_keeps_the_highest_last_losses():
    selector = PowerOfChoice(config(name="power_of_choice", candidates=3.0), N_TRAIN)
    first = selector.select(0, 10)  # no history: 10 of the 30 candidates
    assert len(first) == 10 and len(np.unique(first)) == 10 and np.all(np.diff(first) > 0)
    assert np.array_equal(first, selector.select(0, 10))  # keyed by (seed, round)
    seen = np.arange(100)
    selector.observe(rows(1, seen, loss=seen / 100.0))  # client k's loss: k / 100
    chosen = selector.select(1, 10)
    drawn = PowerOfChoice(config(name="power_of_choice", candidates=3.0), N_TRAIN)
    candidates = drawn.rng(1).choice(100, 30, replace=False, p=N_TRAIN / N_TRAIN.sum())
    assert np.array_equal(chosen, np.sort(candidates)[-10:])  # the highest losses
    selector.observe(rows(2, [chosen[0]], np.nan, status=Status.LATE))  # no loss learnt
    assert selector.history.loss[chosen[0]] == np.float32(chosen[0] / 100.0)


def test_oort_exploits_useful_fast_clients_and_explores_the_rest():
    selector = Oort(config(name="oort", exploration=0.5, exploration_decay=1.0,
                           exploration_min=0.5), N_TRAIN)  # fmt: skip
    assert len(selector.select(0, 20)) == 20  # all unexplored: explored by size
    trained = np.arange(50)
    loss = np.where(trained < 10, 5.0, 0.1)  # clients 0-9: high loss
    duration = np.where(trained % 2 == 0, 1.0, 100.0)  # odd ones are stragglers
    selector.observe(rows(1, trained, loss, duration))
    picks = [selector.select(t, 20) for t in range(1, 30)]
    exploited = np.concatenate([selector_exploited(selector, t) for t in range(1, 30)])
    counts = np.bincount(exploited, minlength=100)
    assert counts[[0, 2, 4, 6, 8]].min() > counts[[1, 3, 5, 7, 9]].max()  # fast ones
    assert counts[[0, 2, 4, 6, 8]].mean() > 1.5 * counts[20:50:2].mean()  # useful ones
    for chosen in picks:
        assert len(np.unique(chosen)) == 20
        assert (chosen >= 50).sum() >= 10  # the explored half: never trained clients


def selector_exploited(selector: Oort, round_: int) -> np.ndarray:
    selector.select(round_, 20)
    return selector.exploited


def test_oorts_exploration_decays_to_its_floor_and_ends_with_no_one_to_explore():
    selector = Oort(config(name="oort"), N_TRAIN)
    selector.observe(rows(1, np.arange(60), np.linspace(0.1, 2, 60)))  # 40 never trained
    selector.select(1, 20)
    early = len(selector.exploited)
    selector.select(200, 20)
    assert early < len(selector.exploited) == int(20 * (1 - 0.2))
    selector.observe(rows(2, np.arange(60, 100), 1.0))
    selector.select(201, 20)
    assert len(selector.exploited) == 20  # nothing left to explore: exploit only


def test_unknown_and_bad_plugin_selectors_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="selection.name"):
        build_selector(config(name="best"), N_TRAIN, None)
    (tmp_path / "mysel.py").write_text("class NotOne:\n    pass\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="subclass"):
        build_selector(config(name="mysel:NotOne"), N_TRAIN, None)


def test_a_plugin_selector_chooses_the_clients(tmp_path, monkeypatch):
    (tmp_path / "firsts.py").write_text(
        "import numpy as np\nfrom mpifl.engine.selection import Selector\n"
        "class Firsts(Selector):\n"
        "    def select(self, round_, n):\n"
        "        return np.arange(round_, round_ + n)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = load_job(ROOT / "jobs/quickstart.toml",
                   ["run.rounds=2", "selection.name='firsts:Firsts'"])  # fmt: skip
    engine, code = in_process(cfg, tmp_path / "out.h5")
    assert code == 0 and isinstance(engine.selector, Selector)
    from mpifl.results import read_run

    part = read_run(tmp_path / "out.h5").tables["participation"]
    assert sorted(part["client"][part["round"] == 2]) == list(range(1, 31))


def test_an_asynchronous_method_refuses_selection(tmp_path):
    proc = mpifl("run", "jobs/fedbuff_digits.toml", "--set", "selection.name='oort'",
                 "--output", str(tmp_path / "x.h5"))  # fmt: skip
    assert proc.returncode == 2 and "selection.name" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("name", ["oort", "power_of_choice"])
def test_a_resumed_run_selects_as_the_uninterrupted_one(name, tmp_path):
    cfg = load_job(ROOT / "jobs/quickstart.toml",
                   ["run.rounds=4", f"selection.name='{name}'", "checkpoint.every=1"])  # fmt: skip
    assert in_process(cfg, tmp_path / "ref.h5")[1] == 0
    out = tmp_path / "run.h5"
    interrupted, code = in_process(cfg, out, abandon_at=3)
    assert code == 3
    assert in_process(cfg, out, resume=checkpoint.load(out, interrupted.run_id))[1] == 0
    assert_same_results(tmp_path / "ref.h5", out)


@pytest.mark.mpi
@pytest.mark.parametrize("name", ["oort", "power_of_choice"])
def test_selection_is_the_same_on_one_rank_and_four(name, tmp_path):
    sets = ("run.rounds=3", f"selection.name='{name}'")
    run_here("jobs/quickstart.toml", tmp_path / "one.h5", *sets, "train.group=1")
    run_ok("jobs/quickstart.toml", tmp_path / "four.h5", *sets, ranks=4)
    assert_same_results(tmp_path / "one.h5", tmp_path / "four.h5")


def test_the_selection_table_smoke_run(tmp_path):
    """analysis/selection.py (the time-to-accuracy table in docs/methods.md)."""
    cmd = [sys.executable, "analysis/selection.py", "--smoke", "--seeds", "0", "--out",
           str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(name in proc.stdout for name in ("uniform", "oort", "power_of_choice"))


class FirstClients(Selector):
    """A plugin that needs no history: every rank selects alone."""

    uses_history = False

    def select(self, round_, n):
        return np.arange(n) + round_


class Duplicates(Selector):
    def select(self, round_, n):
        return np.zeros(n, dtype=np.int64)


def test_a_selector_without_history_is_asked_on_every_rank_and_bad_picks_are_refused(
    tmp_path,
):
    from mpifl.engine.selection import checked_selection
    from mpifl.errors import MethodError

    cfg = config()
    assert np.array_equal(checked_selection(FirstClients(cfg, N_TRAIN), 2, 5), np.arange(2, 7))
    with pytest.raises(MethodError, match="distinct client ids"):
        checked_selection(Duplicates(cfg, N_TRAIN), 0, 5)
    cfg = load_job(ROOT / "jobs/quickstart.toml", ["run.rounds=1"])
    engine, _ = in_process(cfg, tmp_path / "u.h5")
    engine.selector = FirstClients(cfg, engine.data.n_train)
    plan = engine.plan(3)
    assert np.array_equal(np.sort(plan.rows["client"]), np.arange(3, 33))
