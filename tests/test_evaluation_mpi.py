"""Evaluation that separates the questions (global model on the global test set; each
client's model on its own test split) and the per-client baselines, on 1 and 2 ranks."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from mpifl.data import build_dataset
from mpifl.fleet import build_fleet
from mpifl.jobs import load_job
from tests.conftest import run_here, run_ok

pytestmark = pytest.mark.mpi

LABEL_SKEW = ["data.partition='fedmrl'", "run.rounds=3"]


def eval_table(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        rows = f["eval"][:]
        rounds = f["rounds"][:]
    groups = {g.decode() for g in rows["group"]}
    return {"groups": groups, "rows": rows, "rounds": rounds}


def last(rows: np.ndarray, group: str) -> np.void:
    return rows[rows["group"] == group.encode()][-1]


def test_majority_baseline_scores_each_clients_majority_label(small_job, tmp_path):
    out = tmp_path / "majority.h5"
    run_here(small_job, out, "algorithm.name='majority'", *LABEL_SKEW)
    table = eval_table(out)
    assert np.isnan(table["rounds"]["test_accuracy"]).all()  # no global model
    cfg = load_job(small_job, ["algorithm.name='majority'", *LABEL_SKEW])
    data = build_dataset(cfg.data, cfg.fleet.clients, cfg.run.seed)
    fleet = build_fleet(cfg.fleet, data.n_clients, cfg.run.seed)
    accuracies, correct, samples, by_class = [], 0, 0, {}
    for k in range(data.n_clients):
        _, y_test = data.client_test(k)
        if len(y_test):
            majority = int(np.bincount(data.client_train(k)[1].numpy()).argmax())
            hits = int((y_test.numpy() == majority).sum())
            accuracies.append(hits / len(y_test))
            correct, samples = correct + hits, samples + len(y_test)
            name = fleet.class_names[fleet.profiles["device_class"][k]]
            by_class.setdefault(f"clients/mean/{name}", []).append(hits / len(y_test))
    assert len(by_class) > 1  # the per-class means of a fleet of several classes
    assert table["groups"] == {"clients/mean", "clients/pooled", *by_class}
    for group, values in by_class.items():
        row = last(table["rows"], group)
        assert row["accuracy"] == pytest.approx(np.mean(values), abs=1e-9)
        assert row["samples"] == len(values)
    mean, pooled = last(table["rows"], "clients/mean"), last(table["rows"], "clients/pooled")
    assert mean["accuracy"] == pytest.approx(np.mean(accuracies), abs=1e-9)
    assert mean["samples"] == len(accuracies)
    assert pooled["accuracy"] == pytest.approx(correct / samples, abs=1e-12)
    assert table["rounds"]["client_accuracy"][-1] == mean["accuracy"]


@pytest.mark.parametrize("method", ["local", "fedmrl"])
def test_per_client_evaluation_is_identical_on_1_and_2_ranks(small_job, tmp_path, method):
    sets = [f"algorithm.name='{method}'", *LABEL_SKEW, "state.cache_bytes=2000"]
    one, two = tmp_path / "n1.h5", tmp_path / "n2.h5"
    run_here(small_job, one, *sets)
    run_ok(small_job, two, *sets, ranks=2)
    a, b = eval_table(one)["rows"], eval_table(two)["rows"]
    assert a.tobytes() == b.tobytes()
    assert {"clients/mean", "clients/pooled"} <= eval_table(one)["groups"]


def test_local_only_trains_alone_and_sends_nothing(small_job, tmp_path):
    out = tmp_path / "local.h5"
    run_here(small_job, out, "algorithm.name='local'", *LABEL_SKEW)
    table = eval_table(out)
    rounds = table["rounds"]
    assert rounds["bytes_down"].sum() == rounds["bytes_up"].sum() == 0
    assert rounds["trained"].sum() > 0
    assert np.isnan(rounds["test_accuracy"]).all()
    assert 0 < rounds["client_accuracy"][-1] <= 1


def test_centralized_and_fine_tuned_fedavg(small_job, tmp_path):
    central, plain, tuned = tmp_path / "c.h5", tmp_path / "p.h5", tmp_path / "t.h5"
    # in this process (no launch): the rank count is not what this test is about
    run_here(small_job, central, "algorithm.name='centralized'", *LABEL_SKEW)
    run_here(small_job, plain, *LABEL_SKEW)
    run_here(small_job, tuned, "algorithm.finetune_epochs=3", *LABEL_SKEW)
    c, p, t = eval_table(central), eval_table(plain), eval_table(tuned)
    per_class = {g for g in p["groups"] if g.startswith("clients/mean/")}
    assert c["groups"] == p["groups"] == {"global", "clients/mean", "clients/pooled", *per_class}
    assert c["rounds"]["bytes_up"].sum() == 0
    assert c["rounds"]["test_accuracy"][-1] > p["rounds"]["test_accuracy"][-1]
    # fine-tuning changes only what clients use, not the global model
    assert p["rounds"]["test_accuracy"].tobytes() == t["rounds"]["test_accuracy"].tobytes()
    assert t["rounds"]["client_accuracy"][-1] > p["rounds"]["client_accuracy"][-1]
