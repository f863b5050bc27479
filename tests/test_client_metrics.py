"""Per-client figures a method declares (`Method.client_metrics`): recorded per trained
client in the `client_metrics` table, read back as `participation` columns with their
units, checked against the declaration, kept across a resume and the same on any rank
count."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from mpifl.comm import Comm
from mpifl.engine import checkpoint
from mpifl.engine.assemble import assemble
from mpifl.engine.emulation import ClientRunner
from mpifl.engine.signals import StopSignal
from mpifl.errors import ConfigError, MethodError
from mpifl.kit.training import loss_and_correct, set_flat
from mpifl.methods import BUILT_IN, method_class
from mpifl.results import read_run
from mpifl.results.schema import Status, client_metrics_problem
from tests.conftest import (
    assert_same_results,
    in_process,
    mpifl,
    plugin_module,
    run_here,
    set_args,
)
from tests.test_methods import run_in_process, tiny

DECLARED = {  # method -> its figures and their units
    "fedavg": {"update_norm": "L2 norm"},
    "fedbuff": {"update_norm": "L2 norm"},
    "fedasync": {"update_norm": "L2 norm"},
    "local": {"update_norm": "L2 norm"},
    "standalone": {"update_norm": "L2 norm"},
    "fedmrl": {"global_accuracy": "fraction"},
} | {  # FedAvg's relatives: the same clients
    name: {"update_norm": "L2 norm"}
    for name in ("fedprox", "fednova", "scaffold", "fedavgm", "fedadam", "fedyogi", "fedadagrad")
}


def test_every_built_in_declaration_is_valid():
    for name in BUILT_IN:
        cls = method_class(name)
        assert client_metrics_problem(cls.client_metrics) is None, name
        units = {k: unit for k, (unit, _) in cls.client_metrics.items()}
        assert units == DECLARED.get(name, {}), name


@pytest.mark.parametrize("method", sorted(DECLARED))
def test_a_run_records_each_trained_clients_figures_with_their_units(method, tmp_path):
    code, _ = run_in_process(tiny(method, tmp_path), tmp_path)
    assert code == 0
    run = read_run(tmp_path / f"{method}.h5")
    assert run.attrs["format_version"] == 8
    part, long = run.tables["participation"], run.tables["client_metrics"]
    names = list(DECLARED[method])
    trained = part["status"] == "trained"
    assert trained.sum() >= 2
    # one row per (trained client, figure), each round's rows by client
    assert list(long.columns) == ["round", "client", "name", "value"]
    assert len(long) == trained.sum() * len(names) and set(long["name"]) == set(names)
    keys = list(zip(long["round"], long["client"], strict=True))
    assert keys == sorted(keys)
    assert keys == list(zip(part["round"][trained], part["client"][trained], strict=True))
    for name, unit in DECLARED[method].items():
        description = method_class(method).client_metrics[name][1]
        assert part.attrs["units"][name] == unit == long.attrs["metric_units"][name]
        assert part.attrs["descriptions"][name] == description
        assert long.attrs["metric_descriptions"][name] == description
        assert part[name].dtype == np.float64
        assert np.isnan(part[name][~trained]).all()
        values = part[name][trained]
        assert np.array_equal(values, long["value"][long["name"] == name])
        if name == "update_norm":
            assert (values > 0).all() and np.isfinite(values).all()
        else:
            assert ((values >= 0) & (values <= 1)).all()
    with h5py.File(tmp_path / f"{method}.h5") as f:
        ds = f["client_metrics"]
        assert [str(n) for n in ds.attrs["metrics"]] == names
        assert list(ds.attrs["columns"]) == ["round", "client", "name", "value"]


def test_an_asynchronous_round_listing_a_client_twice_gives_its_figure_once(tmp_path):
    """FedBuff's rounds list a client once per poll (unavailable, then dispatched): only
    the row it trained in gets its figure."""
    cfg = tiny("fedbuff", tmp_path, emulation__availability="bernoulli", run__rounds=3)
    assert run_in_process(cfg, tmp_path)[0] == 0
    run = read_run(tmp_path / "fedbuff.h5")
    part = run.tables["participation"]
    twice = part.duplicated(["round", "client"], keep=False)
    trained = part["status"] == "trained"
    assert (twice & trained).any()
    assert part["update_norm"].notna().equals(trained)
    assert len(run.tables["client_metrics"]) == trained.sum()


def first_client(method: str, tmp_path):
    """A fresh copy of `method`'s tiny run, its runner and round 1's first trained row."""
    cfg = tiny(method, tmp_path)
    parts = assemble(cfg, Comm(), tmp_path / "again.h5")
    plan = parts.planner.plan(0, 0.0, parts.method.workload)
    row = plan.rows[plan.rows["status"] == Status.TRAINED][0]
    runner = ClientRunner(cfg, parts.method, parts.data, Comm(), StopSignal())
    return parts, runner.task(0, row)


def recorded(path, client: int, name: str) -> float:
    part = read_run(path).tables["participation"]
    return float(part[(part["round"] == 1) & (part["client"] == client)][name].iloc[0])


def test_update_norm_is_the_norm_of_the_clients_update(tmp_path):
    """FedAvg's update_norm of a round-1 client is ||W_k - W|| of that client trained
    alone from the initial global model."""
    assert run_in_process(tiny("fedavg", tmp_path), tmp_path)[0] == 0
    parts, task = first_client("fedavg", tmp_path)
    method = parts.method
    start = method.weights.clone()
    ((_, trained, _),) = method.client_trainer(task.variant).train_tasks([start], [task])
    update = (trained - start).numpy().astype(np.float64)  # summed in float64
    expected = math.sqrt(float(np.sum(update * update)))
    assert recorded(tmp_path / "fedavg.h5", task.client, "update_norm") == pytest.approx(
        expected, rel=1e-12
    )
    assert expected > 0


def test_fedmrl_global_accuracy_scores_gs_own_header(tmp_path):
    """FedMRL's global_accuracy of a round-1 client is the first head (G's header) of the
    client's trained model on its own test split; `accuracy` is the personal header's."""
    assert run_in_process(tiny("fedmrl", tmp_path), tmp_path)[0] == 0
    parts, task = first_client("fedmrl", tmp_path)
    method = parts.method
    parts.store.begin()
    start = method.client_start(task)
    ((_, trained, result),) = method.client_trainer(task.variant).train_tasks([start], [task])
    model = method.variants[task.variant]
    set_flat(model, trained)
    x, y = task.test
    assert len(y) > 0
    scores = [loss_and_correct(model, x, y, lambda heads, i=i: heads[i])[1] / len(y)
              for i in (0, -1)]  # fmt: skip
    path = tmp_path / "fedmrl.h5"
    assert recorded(path, task.client, "global_accuracy") == pytest.approx(scores[0], abs=1e-12)
    assert recorded(path, task.client, "accuracy") == pytest.approx(scores[1], abs=1e-6)
    assert result.accuracy == pytest.approx(scores[1], abs=1e-12)


def test_rejected_clients_record_no_figure(tmp_path):
    code, _ = run_in_process(tiny("fedavg", tmp_path, train__lr=1000.0), tmp_path)
    assert code == 0
    run = read_run(tmp_path / "fedavg.h5")
    part = run.tables["participation"]
    assert (part["status"] == "rejected").all()
    assert len(run.tables["client_metrics"]) == 0 and part["update_norm"].isna().all()
    assert part.attrs["units"]["update_norm"] == "L2 norm"


PLUGIN = '''
import torch
from mpifl import kit
from mpifl.methods.fedavg import FedAvg


class Sloppy(FedAvg):
    """Declares update_norm, and also returns a figure it never declared."""

    def client_finish(self, task, start, trained, acc):
        return {**super().client_finish(task, start, trained, acc), "updte_norm": 1.0}


class Tensorial(FedAvg):
    """Returns a tensor where a number belongs."""

    def client_finish(self, task, start, trained, acc):
        kit.stage_average(task, trained, acc)
        return {"update_norm": torch.linalg.vector_norm(trained - self.weights)}


class Silent(FedAvg):
    """Declares a figure it never returns (recorded as no value)."""

    client_metrics = {**FedAvg.client_metrics, "quiet": ("", "declared, never returned")}


class Clashing(FedAvg):
    client_metrics = {"loss": ("nats", "a participation column already")}


class Long(FedAvg):
    client_metrics = {"x" * 33: ("", "a name longer than the table's 32 bytes")}


class Unitless(FedAvg):
    client_metrics = {"norm": "L2 norm"}
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A module `metricplug` importable from the working directory (tmp_path)."""
    yield from plugin_module(tmp_path, monkeypatch, "metricplug", PLUGIN)


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("Sloppy", "returned the client metric 'updte_norm', which the method's client_metrics "
                   r"does not declare \(declared: 'update_norm'\)"),
        ("Tensorial", r"client metric 'update_norm' is Tensor tensor\(.*\), not a real number"),
    ],
)  # fmt: skip
def test_a_plugin_returning_what_it_did_not_declare_fails_clearly(plugin, tmp_path, name, needle):
    cfg = tiny("x", tmp_path, algorithm__name=f"metricplug:{name}")
    with pytest.raises(MethodError, match=needle) as err:
        run_in_process(cfg, tmp_path)
    assert str(err.value).startswith(f"method 'metricplug:{name}', client ")


def test_a_figure_not_returned_is_not_recorded(plugin, tmp_path):
    cfg = tiny("silent", tmp_path, algorithm__name="metricplug:Silent")
    assert run_in_process(cfg, tmp_path)[0] == 0
    run = read_run(tmp_path / "silent.h5")
    assert set(run.tables["client_metrics"]["name"]) == {"update_norm"}
    assert run.tables["participation"]["quiet"].isna().all()


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("Clashing", "name 'loss' is a participation column"),
        ("Long", "must have 1 to 32 characters"),
        ("Unitless", r"client_metrics\['norm'\] must be a \(unit, description\) pair"),
    ],
)
def test_a_bad_declaration_is_refused_when_the_plugin_is_loaded(plugin, name, needle):
    with pytest.raises(ConfigError, match=needle):
        method_class(f"metricplug:{name}")


@pytest.mark.parametrize("method", ["fedavg", "fedmrl", "fedbuff"])
def test_a_resume_keeps_the_table_byte_identical(method, tmp_path):
    """Interrupted after round 2 and resumed: every dataset, client_metrics included, is
    the uninterrupted run's, and the declared units come back with the file."""
    cfg = tiny(method, tmp_path, run__rounds=4)
    assert in_process(cfg, tmp_path / "ref.h5")[1] == 0
    out = tmp_path / "run.h5"
    interrupted, code = in_process(cfg, out, abandon_at=2)
    assert code == 3 and len(read_run(out).tables["client_metrics"]) > 0
    ckpt = checkpoint.load(out, interrupted.run_id)
    assert ckpt is not None and ckpt.next_round == 2
    assert in_process(cfg, out, resume=ckpt)[1] == 0
    assert_same_results(tmp_path / "ref.h5", out)
    with h5py.File(out) as a, h5py.File(tmp_path / "ref.h5") as b:
        assert a["client_metrics"][()].tobytes() == b["client_metrics"][()].tobytes()
        for key in ("metrics", "metric_units", "metric_descriptions"):
            assert list(a["client_metrics"].attrs[key]) == list(b["client_metrics"].attrs[key])
    run = read_run(out)
    assert run.attrs["resumed_at_round"] == 3
    for name, unit in DECLARED[method].items():
        assert run.tables["participation"].attrs["units"][name] == unit
        assert set(run.tables["client_metrics"]["round"]) == {1, 2, 3, 4}


@pytest.mark.mpi
@pytest.mark.parametrize(
    ("method", "sets"),
    [
        ("fedavg", ["train.group=3"]),  # batched groups of 3, spread over the ranks
        ("fedmrl", []),  # client state on home ranks
        ("fedbuff", ["round.deadline=inf", "algorithm.buffer=4", "asynchronous.concurrency=8"]),
    ],
)
def test_one_and_two_ranks_record_the_same_bytes(small_job, tmp_path, method, sets):
    sets = [f"algorithm.name='{method}'", "run.rounds=2", *sets]
    run_here(small_job, tmp_path / "n0.h5", *sets)
    proc = mpifl(
        "run", str(small_job), "--output", str(tmp_path / "n2.h5"), *set_args(*sets), ranks=2
    )
    assert proc.returncode == 0, proc.stderr
    assert_same_results(tmp_path / "n0.h5", tmp_path / "n2.h5")
    with h5py.File(tmp_path / "n0.h5") as a, h5py.File(tmp_path / "n2.h5") as b:
        assert a.attrs["n_ranks"] == 1 and b.attrs["n_ranks"] == 2
        rows = a["client_metrics"][()]
        assert len(rows) > 0 and rows.tobytes() == b["client_metrics"][()].tobytes()
    part = read_run(tmp_path / "n2.h5").tables["participation"]
    name = next(iter(DECLARED[method]))
    assert part[name].notna().sum() == (part["status"] == "trained").sum() == len(rows)


def test_a_non_number_is_named_with_its_type():
    """The check a runner makes of each figure (also for numpy scalars and ints)."""
    method = type("M", (), {"client_metrics": {"a": ("", ""), "b": ("", "")}})()
    runner = ClientRunner.__new__(ClientRunner)  # only what the check reads
    runner.method, runner.algorithm = method, "m"
    row = np.zeros(1, dtype=[("round", "i4"), ("client", "i8")])[0]
    row["round"], row["client"] = 3, 7
    rows = runner._checked(row, {"b": np.float32(0.5), "a": 2})
    assert rows == [(3, 7, b"a", 2.0), (3, 7, b"b", 0.5)]  # declaration order
    with pytest.raises(MethodError, match=r"method 'm', client 7 \(round 3\): client metric"):
        runner._checked(row, {"a": "0.5"})
    with pytest.raises(MethodError, match="must return a dict"):
        runner._checked(row, None)
    assert math.isnan(runner._checked(row, {"a": float("nan")})[0][3])
