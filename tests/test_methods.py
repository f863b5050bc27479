"""Every method's client and server steps in-process (one rank, no MPI), and the engine
driving a whole run in-process, including methods that train clients in groups."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np
import pytest
import torch

from mpifl.comm import Comm
from mpifl.engine.assemble import assemble
from mpifl.engine.emulation import ClientRunner
from mpifl.engine.loop import Engine
from mpifl.engine.signals import StopSignal
from mpifl.errors import ConfigError
from mpifl.jobs import validate_job
from mpifl.kit import (
    Accumulators,
    ClientResult,
    ClientTask,
    MethodContext,
)
from mpifl.kit.workload import virtual_times
from mpifl.methods import BUILT_IN
from mpifl.methods.fedavg import FedAvg
from mpifl.results import read_run
from mpifl.results.schema import Status
from tests.conftest import in_process

SERVER_METRICS = {
    "fedavg": set(),
    "fedprox": set(),
    "fednova": {"tau_eff"},
    "scaffold": {"control_norm"},
    "fedavgm": set(),
    "fedadam": set(),
    "fedyogi": set(),
    "fedadagrad": set(),
    "fedbuff": {"stale_fraction"},
    "fedasync": {"stale_fraction", "mixing"},
    "submodel": {"covered_fraction"},
    "reft": {"distill_loss"},
    "koala": {"reverse_kd_loss", "forward_kd_loss"},
    "fedmrl": set(),
    "local": set(),
    "standalone": set(),
    "majority": set(),
    "centralized": {"train_loss"},
}
FEDOPT = {"fedavgm", "fedadam", "fedyogi", "fedadagrad"}
GLOBAL = {"fedavg", "fedprox", "fednova", "scaffold", "fedbuff", "fedasync", "submodel",
          "reft", "koala", "centralized"} | FEDOPT  # fmt: skip


def tiny(method: str, tmp_path, **sets: object):
    """A tiny job: digits, 12 clients (4 per round), a small MLP or CNN, always online."""
    raw = {
        "run": {"name": method, "rounds": 2, "output": str(tmp_path / f"{method}.h5")},
        "data": {"name": "digits", "partition": "iid", "min_samples": 20},
        "fleet": {"clients": 12},
        "model": {"arch": "mlp", "hidden": [16]},
        "train": {"epochs": 1, "batch_size": 8, "lr": 0.05},
        "round": {"cohort": 4},
        "emulation": {"availability": "always"},
        "algorithm": {"name": method},
    }
    if method == "fedmrl":
        raw["algorithm"].update(local_fc=[12, 8], global_fc=8, mrl_dims=[4, 8])
    if method == "standalone":
        raw["algorithm"].update(local_fc=[12, 8], dim=8)
    if method == "koala":
        raw["algorithm"].update(large_hidden=[32], server_epochs=1, forward_epochs=1)
    if method == "reft":
        raw["algorithm"].update(server_epochs=1)
    for key, value in sets.items():
        section, name = key.split("__")
        raw.setdefault(section, {})[name] = value
    return validate_job(raw)


@pytest.mark.parametrize("method", sorted(BUILT_IN))
def test_client_and_server_steps(method, tmp_path):
    cfg = tiny(method, tmp_path)
    comm = Comm()
    parts = assemble(cfg, comm, tmp_path / "out.h5")
    m = parts.method
    before = m.state_dict()
    plan = parts.planner.plan(0, 0.0, m.workload)
    rows = plan.rows[plan.scheduled(0)]
    assert len(rows) == 4 and np.all(rows["status"] == Status.TRAINED)
    acc = Accumulators(m.accumulator_sizes(), cfg.aggregation.frac_bits, 1 / plan.total_samples)
    runner = ClientRunner(cfg, m, parts.data, comm, StopSignal())
    if parts.store is not None:
        parts.store.begin()
    for row in rows:
        (result,) = m.train_clients([runner.task(0, row)], acc)
        acc.commit()
        if method == "centralized":  # no client does anything
            assert math.isnan(result.loss) and math.isnan(result.accuracy)
            continue
        assert 0.0 <= result.accuracy <= 1.0
        assert math.isnan(result.loss) if method == "majority" else result.loss > 0
    if parts.store is not None:
        parts.store.commit()
        assert parts.store.ram_bytes > 0 or method == "majority"
    sums = acc.reduce(comm)
    metrics = m.server_step(sums, plan)
    assert set(metrics) == SERVER_METRICS[method]
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    after = m.state_dict()
    if method in GLOBAL | {"fedmrl"}:
        assert any(not np.array_equal(before[k], after[k]) for k in before), "nothing learnt"
    results = m.evaluate()
    groups = {r.group for r in results}
    assert {"clients/mean", "clients/pooled"} <= groups
    assert ("global" in groups) == (method in GLOBAL)
    assert all(0.0 <= r.accuracy <= 1.0 for r in results)


@pytest.mark.parametrize(
    "method",
    [
        "fedavg",
        "submodel",
        "koala",
        "reft",
        "reft-average",
        "local",
        "local-tiers",
        "standalone",
        "fedmrl",
    ],  # fmt: skip
)
def test_grouping_never_changes_a_result(method, tmp_path):
    """train.group = 1 and 3: the same clients, their outcomes, the reduced sums and the
    clients' kept models, bit for bit."""
    results = {}
    for group in (1, 3):
        sets = {"train__momentum": 0.5, "train__group": group}
        if method in ("submodel", "koala", "local-tiers"):  # microcontrollers: quarter width
            key = "small_widths" if method == "koala" else "tiers"
            sets["algorithm__" + key] = [1, 0.25]
        if method == "fedmrl":  # a clip that bites: every step's gradient is clipped
            sets["algorithm__clip"] = 0.5
        if method == "reft-average":
            sets["algorithm__server_start"] = "average"
        if method in ("submodel", "koala", "reft", "reft-average", "local-tiers"):
            sets["model__hidden"] = [512]
            sets["fleet__classes"] = {"mcu": {"weight": 1.0}, "phone": {"weight": 1.0}}
        if method == "koala":
            sets["algorithm__mode"] = "heterogeneous"
        cfg = tiny(method.split("-")[0], tmp_path, round__cohort=8, **sets)
        parts = assemble(cfg, Comm(), tmp_path / "out.h5")
        plan = parts.planner.plan(0, 0.0, parts.method.workload)
        rows = plan.rows[plan.scheduled(0)]
        acc = Accumulators(parts.method.accumulator_sizes(), 40, 1 / plan.total_samples)
        if parts.store is not None:
            parts.store.begin()
        ClientRunner(cfg, parts.method, parts.data, Comm(), StopSignal()).run(0, rows, acc)
        kept = {}
        if parts.store is not None:  # the clients' own models, kept for their next round
            parts.store.commit()
            key = "local" if method == "fedmrl" else "weights"
            kept = {int(k): parts.store.get(int(k))[key] for k in rows["client"]}
        results[group] = rows, {**acc.reduce(Comm()), **kept}
    (one, one_sums), (three, three_sums) = results[1], results[3]
    assert np.all(one["group"] == -1)
    assert len(set(three["group"])) >= 3
    variants = {"fedavg": 1, "local": 1, "reft": 4, "reft-average": 4}.get(method, 2)
    assert len(set(three["variant"])) == variants
    assert np.all(three["status"] == Status.TRAINED)
    for column in ("status", "loss", "accuracy"):
        assert one[column].tobytes() == three[column].tobytes(), column
    assert set(one_sums) == set(three_sums)
    for name in one_sums:  # the reduced sums, and each client's kept model (by id)
        assert one_sums[name].tobytes() == three_sums[name].tobytes(), name


def test_local_only_with_tiers_trains_the_widest_model_a_client_holds(tmp_path):
    """Microcontrollers that cannot hold the model train its quarter width instead of
    being left untrained; nothing is sent (each array of the work its own)."""
    sets = {
        "model__hidden": [1024],
        "fleet__spread": 0.0,
        "fleet__classes": {"mcu": {"weight": 1.0}, "phone": {"weight": 1.0}},
    }
    statuses = {}
    for tiers in ([1.0], [1.0, 0.25]):
        cfg = tiny("local", tmp_path, round__cohort=12, algorithm__tiers=tiers, **sets)
        parts = assemble(cfg, Comm(), tmp_path / "out.h5")
        rows = parts.planner.plan(0, 0.0, parts.method.workload).rows
        mcu = parts.fleet.profiles["device_class"][rows["client"]] == 0
        assert mcu.any() and (~mcu).any()
        assert not rows["bytes_down"].any() and not rows["bytes_up"].any()
        statuses[len(tiers)] = rows["status"][mcu], rows["variant"]
    assert np.all(statuses[1][0] == Status.INFEASIBLE)
    assert np.all(statuses[2][0] == Status.TRAINED)
    assert set(statuses[2][1]) == {0, 1}


def test_local_only_tiers_count_no_transfer_against_the_deadline(tmp_path):
    """Each client holds the widest tier that fits its memory and whose training, with
    nothing sent either way, fits the deadline (a download counted wrongly before)."""
    cfg = tiny("local", tmp_path, round__deadline=0.1, model__hidden=[512],
               algorithm__tiers=[1.0, 0.25])  # fmt: skip
    m = assemble(cfg, Comm(), tmp_path / "out.h5").method
    prof, n = m.ctx.fleet.profiles, m.ctx.data.n_train
    nothing = np.zeros(len(n), dtype=np.int64)
    expected = np.full(len(n), len(m.own) - 1)
    for i in range(len(m.own) - 1, -1, -1):
        work = m.own[i].work
        compute, comm = virtual_times(prof, n * work.flops_per_sample, nothing, nothing, None)
        fits = (work.footprint <= prof["memory"]) & (compute + comm <= cfg.round.deadline)
        expected[fits] = i
    assert np.array_equal(m.tier_of, expected)
    assert len(set(expected)) == 2


def test_koala_warm_start_distils_the_large_model_into_the_small_ones(tmp_path):
    """algorithm.warm_start: before round 1 the small model agrees with L on the proxy set
    more than it did as initialised."""
    agree = {}
    for warm in (False, True):
        cfg = tiny("koala", tmp_path, algorithm__warm_start=warm, algorithm__forward_epochs=20,
                   algorithm__forward_lr=0.5)  # fmt: skip
        m = assemble(cfg, Comm(), tmp_path / "out.h5").method
        large = m._logits(m.large).argmax(1)
        small = m._logits(m.families[0].model, m.small[0]).argmax(1)
        agree[warm] = float((large == small).float().mean())
    assert agree[True] > agree[False] + 0.2, agree


def test_reft_distils_on_proxy_samples_of_the_proxy_set(tmp_path):
    m = assemble(tiny("reft", tmp_path, algorithm__proxy_samples=7), Comm(), tmp_path / "o.h5")
    assert len(m.method.proxy_x) == 7
    assert m.method.accumulator_sizes()["teacher"] == 7 * 10


def test_reft_server_start_average_starts_distillation_from_the_clients_masked_average(
    tmp_path,
):
    """server_start = average: before distilling (here at a negligible rate), the server
    model is the sample-weighted average of the clients' pruned models at the coordinates
    their units sit at, and its own weights elsewhere."""
    cfg = tiny("reft", tmp_path, round__cohort=8, algorithm__server_start="average",
               algorithm__server_lr=1e-9, algorithm__server_epochs=1, model__hidden=[512],
               fleet__classes={"mcu": {"weight": 1.0}, "phone": {"weight": 1.0}})  # fmt: skip
    parts = assemble(cfg, Comm(), tmp_path / "out.h5")
    m = parts.method
    plan = parts.planner.plan(0, 0.0, m.workload)
    rows = plan.rows[plan.scheduled(0)]
    acc = Accumulators(m.accumulator_sizes(), 40, 1 / plan.total_samples)
    parts.store.begin()
    ClientRunner(cfg, m, parts.data, Comm(), StopSignal()).run(0, rows, acc)
    parts.store.commit()
    num, den = np.zeros(m.weights.numel()), np.zeros(m.weights.numel())
    for k in rows["client"]:
        state, n = parts.store.get(int(k)), parts.data.n_train[k]
        num[state["index"]] += n * state["weights"]
        den[state["index"]] += n
    assert len(np.unique(den)) > 2  # pruned clients cover some units only
    expected = np.where(den > 0, num / np.maximum(den, 1), m.weights.numpy())
    m.server_step(acc.reduce(Comm()), plan)
    assert np.allclose(m.weights.numpy(), expected, atol=1e-5)


def run_in_process(cfg, tmp_path) -> tuple[int, str]:
    """Run `cfg` in-process into tmp_path/<run name>.h5: (exit code, what it printed)."""
    engine, code = in_process(cfg, tmp_path / f"{cfg.run.name}.h5")
    return code, engine.stream.getvalue()


@pytest.mark.parametrize("method", ["koala", "reft"])
def test_engine_runs_in_process_and_records_server_metrics(method, tmp_path):
    code, text = run_in_process(tiny(method, tmp_path), tmp_path)
    assert code == 0 and "complete: 2 rounds, 1 rank," in text
    run = read_run(tmp_path / f"{method}.h5")
    assert run.attrs["status"] == "complete" and run.attrs["format_version"] == 8
    server = run.tables["server"]
    assert set(server["name"]) == SERVER_METRICS[method]
    assert list(server["round"].unique()) == [1, 2]
    assert np.isfinite(server["value"]).all()


class WaitingComm(Comm):
    """One rank that waits 1 s for the others whenever the ranks agree on a flag."""

    def any_flag(self, flag: bool) -> bool:
        time.sleep(1.0)
        self.seconds += 1.0
        return flag


def test_waiting_for_other_ranks_is_collective_time_not_training(tmp_path):
    """A rank's train_time counted the wait for the slowest rank at the end of local
    training, which comm_time counts too: the ranks table double-counted it, and a rank
    that waited looked as slow as the one it waited for."""
    cfg = tiny("fedavg", tmp_path)
    engine = Engine(cfg, WaitingComm(), tmp_path / "fedavg.h5", stream=io.StringIO())
    engine.start()
    assert engine.run() == 0
    ranks = read_run(tmp_path / "fedavg.h5").tables["ranks"]
    assert (ranks["train_time"] < 0.9).all() and (ranks["comm_time"] >= 1.0).all()
    assert (ranks["train_time"] + ranks["comm_time"] <= ranks["wall_time"]).all()


class GroupedFedAvg(FedAvg):
    """FedAvg training its clients three at a time: all of a group first, then each
    client's contributions staged as its result is taken."""

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.group_size = 3

    def train_clients(
        self, tasks: Sequence[ClientTask], acc: Accumulators
    ) -> Iterator[ClientResult]:
        done = list(self.trainer.train_tasks([self.weights] * len(tasks), tasks))
        for task, trained, result in done:
            result.metrics.update(self.client_finish(task, self.weights, trained, acc))
            yield result


def test_grouped_client_training_gives_the_same_run(tmp_path, monkeypatch):
    """The engine hands a method groups of clients; a group's results and contributions
    are recorded per client, exactly as if the clients were trained one by one."""
    cfg = tiny("fedavg", tmp_path, round__cohort=5, run__rounds=3, train__group=1)
    for folder in ("one", "group"):
        (tmp_path / folder).mkdir()
        if folder == "group":
            monkeypatch.setattr("mpifl.engine.assemble.method_class", lambda _: GroupedFedAvg)
        assert run_in_process(cfg, tmp_path / folder)[0] == 0
    one, grouped = (read_run(tmp_path / d / "fedavg.h5") for d in ("one", "group"))
    assert one.tables["rounds"]["trained"].sum() == 15
    for table in ("participation", "rounds", "eval"):  # eval: the models are the same
        a, b = one.tables[table], grouped.tables[table]
        cols = [c for c in a.columns if c not in ("wall_time", "group")]
        assert a[cols].equals(b[cols]), table
    assert set(grouped.tables["participation"]["group"]) >= {0, 1}  # groups of 3 and 2


def test_a_group_that_runs_out_of_memory_marks_its_remaining_clients(tmp_path):
    """An allocation failure inside a group's computation: that group's clients are out of
    memory (nothing of theirs is added); the other group trains."""
    cfg = tiny("fedavg", tmp_path, round__cohort=6, train__group=1)
    parts = assemble(cfg, Comm(), tmp_path / "out.h5")

    class FailingGroups(GroupedFedAvg):
        def train_clients(self, tasks, acc):
            if any(task.client in failing for task in tasks):
                raise MemoryError("cannot allocate memory")
            yield from super().train_clients(tasks, acc)

    method = FailingGroups(parts.method.ctx)
    plan = replace(parts.planner, group_size=3).plan(0, 0.0, method.workload)
    rows = plan.rows[plan.scheduled(0)]
    in_failing = rows["group"] == rows["group"][0]
    failing = set(rows["client"][in_failing].tolist())
    assert in_failing.sum() == 3 and len(rows) == 6
    acc = Accumulators(method.accumulator_sizes(), 40, 1 / plan.total_samples)
    ClientRunner(cfg, method, parts.data, Comm(), StopSignal()).run(0, rows, acc)
    assert np.all(rows["status"][in_failing] == Status.OOM)
    assert np.all(rows["status"][~in_failing] == Status.TRAINED)
    assert (
        np.all(rows["bytes_up"][in_failing] == 0) and np.isfinite(rows["loss"][~in_failing]).all()
    )
    weight = acc.reduce(Comm())["weight"][0]  # the sum of n_k over the trained clients
    assert weight == pytest.approx(rows["samples"][~in_failing].sum(), rel=1e-6)


def test_bf16_training_runs_at_each_device_class_speed(tmp_path):
    """train.precision = bf16: clients compute at their class's bf16 factor (phones and
    Jetsons 2x in the catalogue), footprints shrink, and the run trains."""
    planned = {}
    for precision in ("fp32", "bf16"):
        cfg = tiny("fedavg", tmp_path, train__precision=precision)
        parts = assemble(cfg, Comm(), tmp_path / "out.h5")
        planned[precision] = parts.planner.plan(0, 0.0, parts.method.workload).rows
    fp32, bf16 = planned["fp32"], planned["bf16"]
    names = parts.fleet.class_names
    factor = np.array([cfg.fleet.classes[n].bf16 for n in names])[fp32["device_class"]]
    assert set(factor) == {1.0, 2.0}
    assert np.allclose(bf16["compute_time"], fp32["compute_time"] / factor)
    assert np.all(bf16["footprint"] < fp32["footprint"])
    accuracy = {}
    for precision in ("fp32", "bf16"):
        (tmp_path / precision).mkdir()
        cfg = tiny("fedavg", tmp_path, train__precision=precision, train__epochs=3,
                   run__rounds=3, train__lr=0.1)  # fmt: skip
        assert run_in_process(cfg, tmp_path / precision)[0] == 0
        rounds = read_run(tmp_path / precision / "fedavg.h5").tables["rounds"]
        assert np.isfinite(rounds["train_loss"]).all()
        accuracy[precision] = rounds["test_accuracy"].iloc[-1]
    assert accuracy["fp32"] > 0.5 and abs(accuracy["bf16"] - accuracy["fp32"]) < 0.05, accuracy


def test_a_client_finish_that_returns_nothing_is_named(tmp_path):
    """A method's most likely slip, forgetting `return {}`, gets a message naming the
    method and what to return, not a TypeError from inside the engine."""
    from mpifl.errors import MethodError

    cfg = tiny("fedavg", tmp_path)
    parts = assemble(cfg, Comm(), tmp_path / "out.h5")

    class Forgetful(FedAvg):
        def client_finish(self, task, start, trained, acc):
            super().client_finish(task, start, trained, acc)

    method = Forgetful(parts.method.ctx)
    plan = parts.planner.plan(0, 0.0, method.workload)
    row = plan.rows[plan.scheduled(0)][0]
    task = ClientRunner(cfg, method, parts.data, Comm(), StopSignal()).task(0, row)
    acc = Accumulators(method.accumulator_sizes(), 40, 1.0)
    with pytest.raises(MethodError, match="client_finish must return a dict"):
        list(method.train_clients([task], acc))


def test_fedmrl_width_narrows_its_convolutions_and_is_refused_on_an_mlp(tmp_path):
    """FedMRL refused model.width != 1 on a CNN, so no FedMRL fitted a microcontroller:
    the width now scales the convolutions of G and of every F_k (its fc widths and
    representation sizes are its own keys); on an MLP, where it would change nothing, it
    is refused."""
    cnn = {"model__arch": "cnn", "model__channels": [8, 16], "model__fc": 16}
    sizes = []
    for width in (1.0, 0.125):
        parts = assemble(tiny("fedmrl", tmp_path, **cnn, model__width=width), Comm(),
                         tmp_path / f"{width}.h5")  # fmt: skip
        model = parts.method.variants[0]
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        sizes.append(([c.out_channels for c in convs], parts.method.costs[0][0]))
    assert sizes[0][0] == [8, 16, 8, 16] and sizes[1][0] == [1, 2, 1, 2]  # G's, then F_k's
    assert sizes[1][1] < sizes[0][1] / 2  # its training footprint
    with pytest.raises(ConfigError, match="must be 1 for fedmrl on an MLP"):
        assemble(tiny("fedmrl", tmp_path, model__width=0.5), Comm(), tmp_path / "mlp.h5")


def test_fedmrl_fit_memory_gives_a_client_the_largest_variant_it_holds(tmp_path):
    """FedMRL gave client k variant k mod len(local_fc) whatever its memory, so a
    microcontroller that holds a smaller variant never trained: with fit_memory it trains
    the largest it holds; without, nothing changes."""
    cnn = {"model__arch": "cnn", "model__channels": [8, 16], "model__fc": 16,
           "algorithm__local_fc": [64, 8]}  # fmt: skip
    costs = assemble(tiny("fedmrl", tmp_path, **cnn), Comm(), tmp_path / "a.h5").method.costs
    between = (costs[0][0] + costs[1][0]) // 2  # holds variant 1, not variant 0
    fleet = {"fleet__spread": 0.0, "fleet__classes": {"mcu": {"weight": 1.0, "memory": between}}}
    plain = assemble(tiny("fedmrl", tmp_path, **cnn, **fleet), Comm(), tmp_path / "b.h5").method
    clients = np.arange(12)
    assert plain.variant_of.tolist() == [0, 1] * 6  # the paper's assignment, kept
    assert (plain.workload(clients, 0).footprint[::2] > between).all()  # infeasible
    fit = assemble(tiny("fedmrl", tmp_path, **cnn, **fleet, algorithm__fit_memory=True),
                   Comm(), tmp_path / "c.h5").method  # fmt: skip
    assert fit.variant_of.tolist() == [1] * 12
    assert (fit.workload(clients, 0).footprint <= between).all()
    roomy = {
        "fleet__spread": 0.0,
        "fleet__classes": {"mcu": {"weight": 1.0, "memory": 10 * costs[0][0]}},
    }
    fit = assemble(tiny("fedmrl", tmp_path, **cnn, **roomy, algorithm__fit_memory=True),
                   Comm(), tmp_path / "d.h5").method  # fmt: skip
    assert fit.variant_of.tolist() == [0, 1] * 6  # every variant fits: as the paper
