"""Callbacks on the round loop: early stopping, the CSV log, TensorBoard event files,
plugins, their config, and runs a callback stops (under mpiexec on 1 and 2 ranks, and
across a resume)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from mpifl.callbacks import CallbackList, RunInfo, build_callbacks
from mpifl.callbacks.csv_log import CsvLog
from mpifl.callbacks.early_stopping import EarlyStopping
from mpifl.config import schema
from mpifl.engine import checkpoint
from mpifl.engine.startup import _same_config
from mpifl.errors import ConfigError, InputError
from mpifl.jobs import load_job, validate_job
from mpifl.results import read_run
from mpifl.results.metrics import is_metric_name, metric_history, round_metrics
from mpifl.results.schema import EVAL_DTYPE, ROUNDS_DTYPE, SERVER_DTYPE
from tests.conftest import ROOT, env, in_process, mpifl, run_ok, set_args

NAN = math.nan
QUICKSTART = "jobs/quickstart.toml"


def stopping(**keys: object) -> EarlyStopping:
    return EarlyStopping(
        validate_job({"callbacks": {"early_stopping": keys}}).callbacks.early_stopping
    )


def first_stop(callback, values, metric="test_accuracy", start=1) -> tuple[int, str]:
    """(round, reason) of the first stop over `values` (rounds from `start`), or (0, "")."""
    for r, value in enumerate(values, start):
        reason = callback.after_round(r, {metric: value})
        if reason:
            return r, reason
    return 0, ""


def run_info(history=()) -> RunInfo:
    return RunInfo(validate_job({}), Path("out.h5"), list(history))


# --- early stopping ---------------------------------------------------------------------


def test_early_stopping_stops_once_the_target_is_reached():
    r, reason = first_stop(stopping(target=0.8), [0.5, NAN, 0.79, 0.81, 0.9])
    assert r == 4 and "test_accuracy = 0.81 reached the target 0.8" in reason
    low = stopping(metric="test_loss", mode="min", target=0.5)
    assert first_stop(low, [1.0, 0.6, 0.5, 0.4], "test_loss")[0] == 3


def test_early_stopping_counts_evaluations_without_improvement():
    """NaN (not evaluated) and absent figures are skipped; a gain within min_delta is none."""
    callback = stopping(patience=2, min_delta=0.01)
    values = [0.5, 0.6, NAN, 0.605, 0.7, 0.69, NAN, 0.705, 0.8]
    r, reason = first_stop(callback, values)
    assert r == 8, reason
    assert reason == (
        "early stopping: test_accuracy did not improve by more than 0.01 in 2 evaluations "
        "(best 0.7 in round 5)"
    )
    assert not stopping(patience=1).after_round(1, {"train_loss": 1.0})  # absent: skipped


def test_early_stopping_warns_of_a_metric_no_round_had(capsys):
    callback = stopping(metric="server/distil_loss", patience=1)
    callback.on_train_begin(run_info([(1, {"server/distill_loss": 0.5})]))
    callback.on_train_end("complete")
    assert "'server/distil_loss' was in no round's figures" in capsys.readouterr().err


def test_early_stopping_rebuilds_its_state_from_the_history():
    """A resumed run's early stopping replays the recorded rounds: it stops where an
    uninterrupted one does, wherever the run was resumed."""
    values = [0.3, 0.5, 0.45, NAN, 0.6, 0.58, 0.59, 0.61, 0.6, 0.6, 0.6]
    expected = first_stop(stopping(patience=3, min_delta=0.005), values)
    assert expected[0] == 11
    for k in range(expected[0]):
        resumed = stopping(patience=3, min_delta=0.005)
        resumed.on_train_begin(
            run_info((r, {"test_accuracy": v}) for r, v in enumerate(values[:k], 1))
        )
        assert first_stop(resumed, values[k:], start=k + 1) == expected, k


def test_a_callback_list_calls_every_callback_and_takes_the_first_reason():
    calls = []

    class Recorder:
        def __init__(self, answer):
            self.answer = answer

        def on_train_begin(self, run):
            calls.append(("begin", self.answer))

        def after_round(self, round_, metrics):
            calls.append((round_, self.answer))
            return self.answer

        def on_train_end(self, status):
            calls.append((status, self.answer))

    callbacks = CallbackList([Recorder(False), Recorder(True), Recorder("enough")])
    callbacks.on_train_begin(run_info())
    assert callbacks.after_round(3, {}) == "Recorder asked to stop"
    callbacks.on_train_end("complete")
    assert [c for c, _ in calls] == ["begin"] * 3 + [3] * 3 + ["complete"] * 3
    assert CallbackList([Recorder("")]).after_round(1, {}) == ""
    assert not CallbackList([])


# --- the CSV log and TensorBoard --------------------------------------------------------


def test_the_csv_log_widens_for_new_figures_and_restarts_from_the_history(tmp_path):
    path = tmp_path / "logs" / "m.csv"
    log = CsvLog(path)
    log.on_train_begin(run_info())
    assert path.read_text() == "round\n"
    log.after_round(1, {"trained": 12.0, "train_loss": 0.5})
    log.after_round(2, {"trained": 9.0, "train_loss": NAN, "eval/global/accuracy": 0.25})
    log.after_round(3, {"trained": 10.0, "train_loss": 1 / 3})
    assert path.read_text().splitlines() == [
        "round,trained,train_loss,eval/global/accuracy",
        "1,12,0.5,",
        "2,9,nan,0.25",
        f"3,10,{1 / 3!r},",
    ]
    df = pd.read_csv(path)
    assert df["train_loss"][2] == 1 / 3 and math.isnan(df["eval/global/accuracy"][0])
    resumed = CsvLog(path)  # a resume from a checkpoint after round 1
    resumed.on_train_begin(run_info([(1, {"trained": 12.0, "train_loss": 0.5})]))
    resumed.after_round(2, {"trained": 7.0, "train_loss": 0.25})
    assert path.read_text().splitlines() == ["round,trained,train_loss", "1,12,0.5", "2,7,0.25"]


def scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of every scalar tag in a TensorBoard log directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir))
    events.Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


def test_tensorboard_shows_no_round_past_a_resumed_runs_checkpoint(tmp_path):
    pytest.importorskip("tensorboard")
    from mpifl.callbacks.tensorboard import TensorBoardLog

    first = TensorBoardLog(tmp_path / "tb")
    first.on_train_begin(run_info())
    for r in range(1, 5):
        first.after_round(r, {"acc": r / 10, "loss": NAN if r % 2 else 1.0 / r})
    first.on_train_end("interrupted")
    resumed = TensorBoardLog(tmp_path / "tb")  # from a checkpoint after round 2
    resumed.on_train_begin(run_info([(1, {"acc": 0.1}), (2, {"acc": 0.2, "loss": 0.5})]))
    resumed.after_round(3, {"acc": 0.75, "loss": NAN})
    resumed.on_train_end("complete")
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 2
    got = scalars(tmp_path / "tb")
    assert got["acc"] == [(1, pytest.approx(0.1)), (2, pytest.approx(0.2)), (3, 0.75)]
    assert got["loss"] == [(2, 0.5)]  # NaN (not evaluated) is left out


# --- plugins ----------------------------------------------------------------------------

BAD_PLUGINS = """
class Lacking:
    def after_round(self, round_, metrics):
        return False


class Broken:
    def __init__(self):
        raise RuntimeError("no connection")


NOT_A_CLASS = 3
"""


def plugins_config(*refs: str):
    return validate_job({"callbacks": {"plugins": list(refs)}})


def test_a_plugin_callback_is_loaded_and_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    (found,) = build_callbacks(
        plugins_config("examples.divergence:StopOnDivergence"), tmp_path / "o.h5"
    ).callbacks
    assert type(found).__name__ == "StopOnDivergence"
    (tmp_path / "cb_bad.py").write_text(BAD_PLUGINS)
    monkeypatch.chdir(tmp_path)
    for ref, problem in (
        ("cb_bad:Lacking", "it lacks on_train_begin, on_train_end"),
        ("cb_bad:Broken", "creating it failed: RuntimeError: no connection"),
        ("cb_bad:NOT_A_CLASS", "must name a callback class"),
        ("cb_missing:Cb", "no module 'cb_missing'"),
        ("cb_bad:Absent", "has no 'Absent'"),
    ):
        with pytest.raises(ConfigError) as err:
            build_callbacks(plugins_config(ref), tmp_path / "o.h5")
        message = str(err.value)
        assert message.startswith(f"config error: callbacks.plugins = '{ref}'"), message
        assert problem in message and "\n" not in message, message


def test_the_example_plugin_stops_a_diverging_run():
    from examples.divergence import StopOnDivergence

    def figures(loss, trained=10, rejected=0):
        return {"train_loss": loss, "trained": trained, "rejected": rejected}

    callback = StopOnDivergence()
    callback.on_train_begin(run_info([(1, figures(NAN, trained=0)), (2, figures(2.0))]))
    assert not callback.after_round(3, figures(19.0))
    assert callback.after_round(4, figures(21.0)) == "divergence: train_loss 21 > 10 x 2"
    assert callback.after_round(5, figures(NAN, trained=3, rejected=7)).startswith(
        "divergence: 7 updates were not finite"
    )


# --- figures and config -----------------------------------------------------------------


def test_figures_are_made_from_the_recorded_rows():
    rounds = np.zeros(2, ROUNDS_DTYPE)
    rounds["round"], rounds["test_accuracy"], rounds["trained"] = [1, 2], [NAN, 0.5], [3, 4]
    evals = np.array(
        [(2, b"global", 1.5, 0.5, 100), (2, b"clients/mean", 1.0, 0.6, 20)], EVAL_DTYPE
    )
    server = np.array([(1, b"distill_loss", 0.25)], SERVER_DTYPE)
    history = metric_history({"rounds": rounds, "eval": evals, "server": server})
    assert [r for r, _ in history] == [1, 2]
    one, two = history[0][1], history[1][1]
    assert one["server/distill_loss"] == 0.25 and "eval/global/accuracy" not in one
    assert math.isnan(one["test_accuracy"]) and one["trained"] == 3.0 and "round" not in one
    assert two["eval/clients/mean/accuracy"] == 0.6 and two["eval/global/loss"] == 1.5
    assert two == round_metrics(rounds[1], evals, server[:0])
    for name in ("test_accuracy", "train_loss", "eval/clients/mean/accuracy", "server/x"):
        assert is_metric_name(name), name
    for name in ("round", "accuracy", "eval/global/samples", "eval/accuracy", "server/"):
        assert not is_metric_name(name), name


def test_callbacks_are_off_by_default_and_logs_go_beside_the_result(tmp_path):
    out = tmp_path / "run.h5"
    assert not build_callbacks(validate_job({}), out)
    cfg = validate_job({"callbacks": {"csv": {"enabled": True}}})
    assert [c.path for c in build_callbacks(cfg, out).callbacks] == [tmp_path / "run.csv"]
    cfg = validate_job(
        {"run": {"name": "exp"}, "callbacks": {"csv": {"enabled": True, "path": "logs/{name}.csv"}}}
    )
    assert cfg.callbacks.csv.path == "logs/exp.csv"
    pytest.importorskip("tensorboard")
    cfg = validate_job({"callbacks": {"tensorboard": {"enabled": True}}})
    assert [c.logdir for c in build_callbacks(cfg, out).callbacks] == [tmp_path / "run.tb"]


BAD_CONFIGS = {
    "unknown table": ({"early_stoping": {"patience": 2}}, "did you mean 'early_stopping'"),
    "unknown key": ({"early_stopping": {"patiense": 2}}, "callbacks.early_stopping.patiense"),
    "unknown metric": (
        {"early_stopping": {"metric": "acc", "patience": 2}},
        "must name a round's figure",
    ),
    "nan target": ({"early_stopping": {"target": NAN}}, "callbacks.early_stopping.target"),
    "-inf target": ({"early_stopping": {"target": -math.inf}}, "or inf (no target)"),
    "negative patience": (
        {"early_stopping": {"patience": -1}},
        "callbacks.early_stopping.patience",
    ),
    "bad mode": ({"early_stopping": {"mode": "maximum", "patience": 1}}, "did you mean 'max'"),
    "no rule": ({"early_stopping": {"metric": "train_loss"}}, "has no effect"),
    "path of a log that is off": ({"csv": {"path": "m.csv"}}, "callbacks.csv.enabled = true"),
    "malformed plugin": ({"plugins": ["mypkg.Cb"]}, "'package.module:Class'"),
    "plugins not a list": ({"plugins": "mypkg:Cb"}, "must be a list of str"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_callback_config_is_one_line(case):
    table, needle = BAD_CONFIGS[case]
    with pytest.raises(InputError) as err:
        validate_job({"callbacks": table})
    message = str(err.value)
    assert message.startswith("config error: callbacks.") and needle in message, message
    assert "\n" not in message


def test_tensorboard_without_the_package_is_a_config_error(monkeypatch):
    monkeypatch.setattr(schema, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        validate_job({"callbacks": {"tensorboard": {"enabled": True}}})


def test_only_the_logs_may_change_on_a_resume(tmp_path):
    def toml(**callbacks) -> str:
        return validate_job({"callbacks": callbacks}).to_toml()

    started = toml(early_stopping={"patience": 3})
    _same_config(
        tmp_path / "o.h5", started, toml(early_stopping={"patience": 3}, csv={"enabled": True})
    )
    with pytest.raises(InputError, match="callbacks.early_stopping.patience was 3, now 4"):
        _same_config(tmp_path / "o.h5", started, toml(early_stopping={"patience": 4}))


# --- runs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        (["callbacks.early_stopping.patiense=3"], "callbacks.early_stopping.patiense"),
        (["callbacks.plugins=['nowhere.mod:Cb']"], "no module 'nowhere'"),
    ],
)
def test_bad_callback_config_exits_2_with_one_line(small_job, tmp_path, sets, needle):
    proc = mpifl("run", str(small_job), *set_args(*sets))
    assert proc.returncode == 2, proc.stderr
    message = proc.stderr.strip()
    assert message.startswith("mpifl: config error: callbacks.") and needle in message, message
    assert "\n" not in message and not (tmp_path / "out.h5").exists()


def test_tensorboard_without_the_package_exits_2(small_job, tmp_path):
    args = ["run", str(small_job), "--set", "callbacks.tensorboard.enabled=true"]
    code = (
        "import sys; sys.modules['tensorboard'] = None; from mpifl.cli import main; "
        f"sys.exit(main({args!r}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env(),
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "mpifl: config error: callbacks.tensorboard.enabled = True: needs the tensorboard "
        "package, which is not installed: pip install tensorboard (or mpifl[tensorboard])"
    )
    assert not (tmp_path / "out.h5").exists()


TARGET = 0.75
STOPPED = [
    "run.rounds=10",
    f"callbacks.early_stopping.target={TARGET}",
    "callbacks.csv.enabled=true",
    "callbacks.tensorboard.enabled=true",
    "callbacks.plugins=['examples.divergence:StopOnDivergence']",
]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> dict[int, tuple[Path, str]]:
    """The quick start stopped at an accuracy target, with every built-in callback and
    the example plugin on: on 2 ranks (mpiexec) and 1 (plain python)."""
    pytest.importorskip("tensorboard")
    folder = tmp_path_factory.mktemp("stopped")
    return {
        ranks: (
            folder / f"q{ranks}.h5",
            run_ok(Path(QUICKSTART), folder / f"q{ranks}.h5", *STOPPED, ranks=ranks).stdout,
        )
        for ranks in (2, 0)
    }


@pytest.mark.mpi
def test_a_run_stops_where_the_rule_says(stopped):
    path, stdout = stopped[2]
    run = read_run(path)
    acc = run.tables["rounds"]["test_accuracy"].to_numpy()
    stop = len(acc)
    assert stop < 10, f"the quick start did not reach {TARGET} in 10 rounds: {acc}"
    assert acc[-1] >= TARGET and (acc[:-1] < TARGET).all(), acc
    assert run.attrs["status"] == "complete" and run.attrs["stopped_round"] == stop
    assert run.attrs["stop_reason"] == (
        f"early stopping: test_accuracy = {acc[-1]:.6g} reached the target {TARGET:g}"
    )
    assert f"complete: {stop} rounds, 2 ranks" in stdout
    assert f"stopped early   after round {stop}: early stopping" in stdout
    with h5py.File(path) as f:
        assert "final_state" in f


@pytest.mark.mpi
def test_the_logs_hold_the_rounds_table(stopped):
    path, _ = stopped[2]
    rounds = read_run(path).tables["rounds"]
    curves = scalars(path.with_suffix(".tb"))
    for name in ("test_accuracy", "train_loss", "bytes_up", "eval/global/accuracy"):
        column = "test_accuracy" if name.startswith("eval/") else name
        assert [s for s, _ in curves[name]] == rounds["round"].tolist(), name
        expected = rounds[column].to_numpy().astype(np.float32)
        assert np.array_equal([v for _, v in curves[name]], expected), name
    log = pd.read_csv(path.with_suffix(".csv"))
    assert log["round"].tolist() == rounds["round"].tolist()
    for column in rounds.columns.drop("round"):
        assert np.array_equal(log[column], rounds[column], equal_nan=True), column
    assert np.array_equal(log["eval/clients/mean/accuracy"], rounds["client_accuracy"])


@pytest.mark.mpi
def test_one_and_two_ranks_stop_alike(stopped):
    one, two = read_run(stopped[0][0]), read_run(stopped[2][0])
    assert (one.attrs["n_ranks"], two.attrs["n_ranks"]) == (1, 2)
    for key in ("stopped_round", "stop_reason"):
        assert one.attrs[key] == two.attrs[key], key
    varying = {"rounds": ["wall_time"], "participation": ["rank", "wall_time"]}
    for table in ("rounds", "eval", "server", "participation"):
        a = one.tables[table].drop(columns=varying.get(table, []))
        b = two.tables[table].drop(columns=varying.get(table, []))
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    with h5py.File(stopped[0][0]) as a, h5py.File(stopped[2][0]) as b:
        assert a["final_state/weights"][()].tobytes() == b["final_state/weights"][()].tobytes()


def test_a_resumed_run_stops_in_the_same_round_with_the_same_bytes(tmp_path):
    """Early stopping's state (best figure, evaluations since) comes back from the
    recorded rounds: interrupted one round before its stop and resumed, a run stops in
    the same round with the same final state, CSV log and TensorBoard curves."""
    pytest.importorskip("tensorboard")
    sets = ["run.rounds=10", "callbacks.early_stopping.patience=2", "callbacks.csv.enabled=true",
            "callbacks.tensorboard.enabled=true"]  # fmt: skip
    cfg = load_job(ROOT / QUICKSTART, sets)
    assert in_process(cfg, tmp_path / "ref.h5")[1] == 0
    ref = read_run(tmp_path / "ref.h5")
    stop = int(ref.attrs.get("stopped_round", 0))
    assert 3 <= stop < 10, ref.tables["rounds"]["test_accuracy"]
    out = tmp_path / "run.h5"
    interrupted, code = in_process(cfg, out, abandon_at=stop - 1)
    assert code == 3 and read_run(out).attrs["status"] == "interrupted"
    assert in_process(cfg, out, resume=checkpoint.load(out, interrupted.run_id))[1] == 0
    run = read_run(out)
    assert run.attrs["resumed_at_round"] == stop
    for key in ("status", "stopped_round", "stop_reason"):
        assert run.attrs[key] == ref.attrs[key], key
    with h5py.File(out) as a, h5py.File(tmp_path / "ref.h5") as b:
        assert a["final_state/weights"][()].tobytes() == b["final_state/weights"][()].tobytes()
    pd.testing.assert_frame_equal(
        run.tables["rounds"].drop(columns="wall_time"),
        ref.tables["rounds"].drop(columns="wall_time"),
    )
    csv_run, csv_ref = (
        pd.read_csv(p.with_suffix(".csv")).drop(columns="wall_time")
        for p in (out, tmp_path / "ref.h5")
    )
    pd.testing.assert_frame_equal(csv_run, csv_ref)
    assert (
        scalars(out.with_suffix(".tb"))["test_accuracy"]
        == scalars(tmp_path / "ref.tb")["test_accuracy"]
    )
