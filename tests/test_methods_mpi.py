"""Heterogeneous methods end to end under mpiexec: results in the HDF5 file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from mpifl.results.schema import Status
from tests.conftest import mpifl, mpifl_cases, run_here, run_ok, set_args

pytestmark = pytest.mark.mpi
CLIENT_GROUPS = ("clients/mean", "clients/pooled")  # per-client evaluation (eval_clients)

TINY_MCU = """
[fleet.classes.mcu]
weight = 0.5
memory = 60000

[fleet.classes.rpi]
weight = 0.5
"""


def _run(job, tmp_path, name, *sets, ranks=2):
    """`mpifl run` on `ranks` ranks (1: in this process, no launch); its three tables."""
    out = tmp_path / f"{name}.h5"
    if ranks == 1:
        run_here(job, out, *sets)
    else:
        run_ok(job, out, *sets, ranks=ranks)
    with h5py.File(out) as f:
        return f["rounds"][:], f["participation"][:], f["eval"][:]


def test_full_width_submodel_is_fedavg(small_job, tmp_path):
    fedavg, _, _ = _run(small_job, tmp_path, "fedavg", ranks=1)
    sub, part, _ = _run(
        small_job, tmp_path, "sub", "algorithm.name='submodel'", "algorithm.tiers=[1.0]", ranks=1
    )
    assert np.all(part["width"] == 1.0)
    for field in ("test_loss", "test_accuracy", "train_loss"):
        assert fedavg[field].tobytes() == sub[field].tobytes(), field


@pytest.mark.parametrize("selection", ["prefix", "rolling", "magnitude"])
def test_submodel_lets_small_devices_train(small_job, tmp_path, selection):
    small_job.write_text(small_job.read_text() + TINY_MCU)
    fedavg, fpart, _ = _run(small_job, tmp_path, "fedavg", "emulation.availability='always'")
    assert np.any(fpart["status"] == Status.INFEASIBLE)
    sets = [
        "algorithm.name='submodel'",
        f"algorithm.selection='{selection}'",
        "emulation.availability='always'",
    ]
    rounds, part, evals = _run(small_job, tmp_path, "sub", *sets)
    mcu = part[part["device_class"] == 0]
    assert not np.any(part["status"] == Status.INFEASIBLE)
    assert np.all(mcu["width"] < 1.0) and np.all(mcu["status"] != Status.INFEASIBLE)
    assert np.all(mcu["footprint"] <= mcu["memory"])
    assert np.all(mcu["bytes_down"] < fpart["bytes_down"].max())
    groups = {g.decode() for g in evals["group"]}
    assert {"global", "width=0.5", "width=0.25", "width=0.125"} <= groups
    assert rounds["trained"].sum() > fedavg["trained"].sum()


def test_capability_ratio_formula():
    from mpifl.methods.reft import capability_ratio, pruning_ratios

    flops = np.array([100.0, 50.0, 25.0, 1.0])
    # p = clip(0.75 (1 - c / 100), 0, 0.75) = 0, 0.375, 0.5625, 0.7425 -> nearest 0.25
    assert capability_ratio(flops, 0.75, 0.25, "max").tolist() == [0.0, 0.5, 0.5, 0.75]
    # ranks 3, 2, 1, 0 of 3: p = 0.75 (1 - q) = 0, 0.25, 0.5, 0.75
    assert capability_ratio(flops, 0.75, 0.25, "quantile").tolist() == [0.0, 0.25, 0.5, 0.75]
    assert capability_ratio(flops, 0.75, 0.25, "memory").tolist() == [0.0] * 4
    # one fast device among many slow ones: "max" prunes nearly all, "quantile" spreads
    fleet = np.concatenate([np.full(99, 1e9), [1e11]]) * np.linspace(1, 1.5, 100)
    assert (capability_ratio(fleet, 0.75, 0.25, "max") == 0.75).mean() > 0.9
    assert (capability_ratio(fleet, 0.75, 0.25, "quantile") == 0.75).mean() < 0.2
    assert pruning_ratios(0.25) == [0.0, 0.25, 0.5, 0.75]


def test_reft_end_to_end(small_job, tmp_path):
    small_job.write_text(small_job.read_text() + TINY_MCU)
    sets = ["algorithm.name='reft'", "algorithm.sync_every=2", "run.rounds=6", "train.epochs=3",
            "emulation.availability='always'", "round.cohort=20", "round.deadline=inf"]  # fmt: skip
    rounds, part, evals = _run(small_job, tmp_path, "reft2", *sets)
    one, _, _ = _run(small_job, tmp_path, "reft1", *sets, ranks=1)
    # every client trains (pruned to fit), on its home rank, with its capability's ratio
    assert np.all(part["status"] == Status.TRAINED)
    assert np.all(part["rank"] == part["client"] % 2)
    mcu = part[part["device_class"] == 0]
    assert np.all(mcu["prune"] > 0) and np.all(mcu["footprint"] <= mcu["memory"])
    assert np.all(part["bytes_up"] > 0)
    # downloads only in sync rounds (1, 3, 5) for clients that already hold a model
    assert np.all(part["bytes_down"][np.isin(part["round"], [1, 3, 5])] > 0)
    assert np.all(part["bytes_down"][np.isin(part["round"], [2, 4, 6])] == 0)
    assert rounds["bytes_down"][1] == 0 < rounds["bytes_down"][0]
    # the server model learns by distillation, and 1 and 2 ranks agree bitwise
    assert rounds["test_accuracy"][-1] > 0.4 and rounds["test_loss"][-1] < rounds["test_loss"][0]
    assert rounds["test_loss"].tobytes() == one["test_loss"].tobytes()
    assert {g.decode() for g in evals["group"]} >= {"global", "prune=0.25", "prune=0.75"}


def test_reft_clients_keep_their_models(small_job, tmp_path):
    out = tmp_path / "state.h5"
    sets = ["algorithm.name='reft'", "algorithm.sync_every=100", "run.rounds=3",
            "emulation.availability='always'", "round.cohort=20",
            "state.cache_bytes=20000"]  # fmt: skip
    run_ok(small_job, out, *sets)
    with h5py.File(out) as f:
        ranks = f["ranks"][:]
    later = ranks[ranks["round"] > 1]
    # a tiny cache: states spill to files and are read back in later rounds
    assert later["state_misses"].sum() > 0 and later["state_bytes_read"].sum() > 0
    assert ranks["state_bytes_written"].sum() > 0
    assert np.all(ranks["state_ram_bytes"] <= 20000 + 60000)  # bound + one state
    assert not (tmp_path / ".state.state").exists()  # spill folders are removed at the end


KOALA_SETS = [
    "algorithm.name='koala'", "algorithm.large_channels=[32, 64]", "algorithm.large_fc=64",
    "algorithm.server_epochs=2", "algorithm.forward_epochs=1", "run.rounds=5",
    "train.epochs=3", "emulation.availability='always'", "round.deadline=inf",
]  # fmt: skip


@pytest.mark.parametrize("mode", ["homogeneous", "heterogeneous"])
def test_koala_large_model_learns_in_both_modes(small_job, tmp_path, mode):
    small_job.write_text(small_job.read_text() + TINY_MCU)
    rounds, part, evals = _run(small_job, tmp_path, mode, *KOALA_SETS, f"algorithm.mode='{mode}'")
    one, _, _ = _run(
        small_job, tmp_path, mode + "1", *KOALA_SETS, f"algorithm.mode='{mode}'", ranks=1
    )
    acc, loss = rounds["test_accuracy"], rounds["test_loss"]
    assert acc[-1] > acc[0] + 0.15 and loss[-1] < loss[0], acc
    assert rounds["test_loss"].tobytes() == one["test_loss"].tobytes()  # 1 and 2 ranks
    groups = {g.decode() for g in evals["group"]}
    groups -= {g for g in groups if g.startswith("clients/mean/")}  # per device class
    if mode == "homogeneous":
        assert groups == {"global", "family=1", *CLIENT_GROUPS} and np.all(part["variant"] == 0)
    else:
        assert groups == {"global", "family=1", "family=0.5", "family=0.25", *CLIENT_GROUPS}
        mcu = part[part["device_class"] == 0]
        assert np.all(mcu["width"] < 1) and np.all(mcu["footprint"] <= mcu["memory"])
        assert not np.any(part["status"] == Status.INFEASIBLE)


def test_koala_server_init_and_pretrain(small_job, tmp_path):
    state, job = tmp_path / "large.pt", str(small_job)
    sets, init = set_args(*KOALA_SETS), f"algorithm.server_init='{state}'"
    proc, few, diverged, fedavg, other = mpifl_cases([  # one process, in order: no mpiexec
        ["pretrain", job, *sets, "--output", str(state), "--epochs", "20"],
        ["pretrain", job, *sets, "--output", str(tmp_path / "few.pt"), "--epochs", "20",
         "--samples", "30"],
        ["pretrain", job, *sets, "--output", str(tmp_path / "d.pt"), "--epochs", "3", "--lr",
         "50"],
        ["pretrain", job, "--output", str(tmp_path / "f.pt")],
        ["run", job, *sets, "--set", init, "--set", "algorithm.large_fc=32", "--output",
         str(tmp_path / "bad.h5")],  # L of another shape than the state's
    ])  # fmt: skip
    assert proc["rc"] == 0, proc["stderr"]
    assert "pre-trained on 179 samples of the proxy set" in proc["stdout"] and state.exists()
    assert few["rc"] == 0 and "pre-trained on 30 samples of the proxy set" in few["stdout"]
    assert diverged["rc"] == 0 and "did not converge" in diverged["stderr"]
    assert fedavg["rc"] == 2 and "algorithm.name = 'koala'" in fedavg["stderr"]
    assert other["rc"] == 2 and "algorithm.server_init" in other["stderr"]
    assert "\n" not in other["stderr"].strip() and not (tmp_path / "bad.h5").exists()
    rounds, _, _ = _run(small_job, tmp_path, "init", *KOALA_SETS, init, "run.rounds=1", ranks=1)
    cold, _, _ = _run(small_job, tmp_path, "cold", *KOALA_SETS, "run.rounds=1", ranks=1)
    assert rounds["test_loss"][0] < cold["test_loss"][0]  # it starts from the pre-trained L
    fedavg_on_l = ["model.channels=[32, 64]", "model.fc=64", "run.rounds=1"]
    warm, _, _ = _run(small_job, tmp_path, "fedavg_init", *fedavg_on_l, init, ranks=1)
    scratch, _, _ = _run(small_job, tmp_path, "fedavg_cold", *fedavg_on_l, ranks=1)
    assert warm["test_loss"][0] < scratch["test_loss"][0]  # FedAvg on L from the same state


MRL_SETS = [
    "algorithm.name='fedmrl'", "algorithm.mrl_dims=[8, 32]", "algorithm.local_fc=[48, 32, 24]",
    "algorithm.global_fc=24", "data.partition='fedmrl'", "data.local_test_fraction=0.3",
    "train.epochs=3", "train.batch_size=4", "train.momentum=0.9", "run.rounds=4",
    "emulation.availability='always'", "round.deadline=inf",
]  # fmt: skip


def test_fedmrl_uploads_only_g_and_reports_client_accuracy(small_job, tmp_path):
    rounds, part, evals = _run(small_job, tmp_path, "mrl", *MRL_SETS)
    one, _, _ = _run(small_job, tmp_path, "mrl1", *MRL_SETS, ranks=1)
    trained = part[part["status"] == Status.TRAINED]
    assert len(np.unique(trained["bytes_up"])) == 1  # G only, the same for every variant
    assert np.array_equal(trained["variant"], trained["client"] % 3)  # variant k mod 3
    assert np.all(trained["rank"] == trained["client"] % 2)  # home ranks
    clients = evals[evals["group"] == b"clients/mean"]
    assert len(clients) == 4 and clients["samples"][-1] > 0
    assert np.isnan(rounds["test_accuracy"]).all()  # no global model that predicts alone
    assert rounds["client_accuracy"].tobytes() == one["client_accuracy"].tobytes()


def test_fedmrl_state_survives_eviction(small_job, tmp_path):
    kept = _run(small_job, tmp_path, "kept", *MRL_SETS, "state.cache_bytes=1000000000", ranks=1)
    spilled = _run(small_job, tmp_path, "spilled", *MRL_SETS, "state.cache_bytes=1000", ranks=1)
    for a, b in zip(kept[1:], spilled[1:], strict=True):  # participation and eval rows
        for field in ("loss", "accuracy"):
            assert a[field].tobytes() == b[field].tobytes(), field
    with h5py.File(tmp_path / "spilled.h5") as f:
        ranks = f["ranks"][:]
    assert ranks["state_bytes_written"].sum() > 0 and ranks["state_misses"].sum() > 0


def test_fedmrl_rejects_shrinking_dims(small_job, tmp_path):
    proc = mpifl("run", str(small_job), "--set", "algorithm.name='fedmrl'",
                 "--set", "algorithm.mrl_dims=[64, 16]")  # fmt: skip
    assert proc.returncode == 2 and "algorithm.mrl_dims" in proc.stderr
