"""FedProx, FedNova and SCAFFOLD: their updates against references computed by hand or
by autograd, and partial work end to end."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from mpifl.comm import Comm
from mpifl.config.sections import TrainConfig
from mpifl.engine.assemble import assemble
from mpifl.kit import Accumulators, ClientTask, build_model, get_flat, set_flat, sgd_epochs
from mpifl.methods.fednova import local_steps_norm
from mpifl.models import ModelSpec
from mpifl.results.schema import PARTICIPATION_DTYPE
from tests.conftest import (
    ROOT,
    assert_same_results,
    env,
    in_process,
    mpifl,
    result_contents,
    run_here,
    run_ok,
)
from tests.test_methods import tiny


def test_fedprox_with_mu_0_is_fedavg_bit_for_bit(tmp_path):
    in_process(tiny("fedavg", tmp_path), tmp_path / "fedavg.h5")
    cfg = tiny("fedprox", tmp_path, algorithm__mu=0.0)
    in_process(cfg, tmp_path / "fedprox.h5")
    assert_same_results(tmp_path / "fedavg.h5", tmp_path / "fedprox.h5")
    in_process(tiny("fedprox", tmp_path, algorithm__mu=0.1), tmp_path / "mu.h5")
    a, b = result_contents(tmp_path / "fedavg.h5"), result_contents(tmp_path / "mu.h5")
    assert a["final_state/weights"] != b["final_state/weights"]  # the pull does something


def test_fednova_local_steps_norm():
    assert local_steps_norm(7, 0.0) == 7.0
    rho, tau = 0.5, 5  # [tau - rho (1 - rho^tau) / (1 - rho)] / (1 - rho)
    assert local_steps_norm(tau, rho) == pytest.approx((5 - 0.5 * (1 - 0.5**5) / 0.5) / 0.5)
    assert local_steps_norm(1, 0.9) == pytest.approx(1.0)  # one step: no momentum yet


def test_fednova_with_equal_steps_is_fedavg(tmp_path):
    """One batch per epoch for every client: equal a_k, so FedNova's step is FedAvg's
    (to float rounding); with unequal steps it is not."""
    sets = {"train__batch_size": 1000, "train__momentum": 0.5, "train__epochs": 3}
    for method in ("fedavg", "fednova"):
        in_process(tiny(method, tmp_path, **sets), tmp_path / f"{method}.h5")
    with h5py.File(tmp_path / "fedavg.h5") as a, h5py.File(tmp_path / "fednova.h5") as b:
        assert np.allclose(a["final_state/weights"][()], b["final_state/weights"][()], atol=1e-6)
        assert not np.array_equal(a["final_state/weights"][()], b["final_state/weights"][()])
        tau = b["server"]["value"][b["server"]["name"] == b"tau_eff"]
        assert np.allclose(tau, local_steps_norm(3, 0.5))


def test_partial_work_needs_a_deadline(tmp_path):
    proc = mpifl("run", "jobs/fedprox_digits.toml", "--set", "round.deadline=inf",
                 "--output", str(tmp_path / "x.h5"))  # fmt: skip
    assert proc.returncode == 2 and not (tmp_path / "x.h5").exists()
    assert proc.stderr.strip().count("\n") == 0 and "round.partial_work" in proc.stderr


def test_a_gradient_offset_is_autograd_on_a_linear_term():
    """SCAFFOLD's correction: sgd_epochs with `offset` is SGD on F(w) + <offset, w>."""
    spec = ModelSpec("mlp", (6,), 3, hidden=(8,))
    torch.manual_seed(4)
    model = build_model(spec)
    x, y = torch.randn(11, 6), torch.randint(0, 3, (11,))
    start, offset = get_flat(model), torch.randn(get_flat(model).numel()) * 0.1
    train = TrainConfig(epochs=2, batch_size=4, lr=0.1, momentum=0.5, weight_decay=0.0,
                        channels_last=False, group=8, precision="fp32")  # fmt: skip
    sgd_epochs(model, x, y, train, torch.Generator().manual_seed(1), offset=offset)
    ours = get_flat(model)
    set_flat(model, start)

    def objective(out, labels):
        return torch.nn.functional.cross_entropy(out, labels) + (
            torch.cat([p.reshape(-1) for p in model.parameters()]) @ offset
        )

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        order = torch.randperm(11, generator=gen)
        for lo in range(0, 11, 4):
            opt.zero_grad()
            objective(model(x[order[lo : lo + 4]]), y[order[lo : lo + 4]]).backward()
            opt.step()
    assert torch.allclose(ours, get_flat(model), atol=1e-6)


def test_scaffold_control_variates_by_hand(tmp_path):
    """Option II on made-up trained models: c_i+ = c_i - c + (x - y_i) / (a_i eta_l), kept
    per client, a_i the client's K steps weighted as momentum carries them on (with plain
    SGD, K); x += eta_g mean(y_i - x); c += sum(c_i+ - c_i) / N."""
    cfg = tiny("scaffold", tmp_path, algorithm__server_lr=0.5, train__momentum=0.5)
    parts = assemble(cfg, Comm(), tmp_path / "out.h5")
    m, store = parts.method, parts.store
    store.begin()
    x = m.weights.clone()
    m.control = torch.full_like(x, 0.2)
    store.put(3, {"control": np.full(x.numel(), 0.5, np.float32)})  # c_3 from a past round
    acc = Accumulators(m.accumulator_sizes(), cfg.aggregation.frac_bits, 1 / 100)
    rows = np.zeros(2, PARTICIPATION_DTYPE)
    rows["client"], rows["steps"] = [3, 7], [4, 10]
    trained = {3: x - 0.4, 7: x + 0.1}
    for row in rows:
        task = ClientTask(int(row["client"]), 0, (torch.zeros(0), torch.zeros(0)),
                          (torch.zeros(0), torch.zeros(0)), torch.Generator(), row)  # fmt: skip
        if task.client == 3:
            assert torch.allclose(m.client_offset(task), torch.full_like(x, 0.2 - 0.5))
        m.client_finish(task, x, trained[task.client], acc)
        acc.commit()
    lr = cfg.train.lr
    # a_i = [K - rho (1 - rho^K) / (1 - rho)] / (1 - rho) at rho 0.5: K 4 -> 6.125, and
    # K 10 -> 18.00195 (dividing by K overstated the gradient up to 1 / (1 - rho) times)
    new3 = 0.5 - 0.2 + 0.4 / (6.125 * lr)
    new7 = 0.0 - 0.2 - 0.1 / (18.001953125 * lr)
    assert np.allclose(store.get(3)["control"], new3, atol=1e-5)
    assert np.allclose(store.get(7)["control"], new7, atol=1e-5)
    m.server_step(acc.reduce(Comm()), None)
    assert torch.allclose(m.weights, x + 0.5 * (-0.4 + 0.1) / 2, atol=1e-6)
    n = parts.data.n_clients
    assert torch.allclose(m.control, torch.full_like(x, 0.2 + ((new3 - 0.5) + new7) / n), atol=1e-6)


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
def test_scaffold_control_variate_is_the_gradient_momentum_trained_on(momentum, tmp_path):
    """On a loss of constant gradient g, K steps of the client trainer (momentum rho) from
    x with c = c_i = 0 give c_i+ = g exactly: (x - y) / (a eta_l) counts each step as far
    as momentum carried it."""
    cfg = tiny("scaffold", tmp_path, train__momentum=momentum, train__batch_size=4)
    parts = assemble(cfg, Comm(), tmp_path / "out.h5")
    m = parts.method
    parts.store.begin()
    model, x = m.model, m.weights.clone()
    g = torch.linspace(-1, 1, x.numel())
    grads = g.split([p.numel() for p in model.parameters()])

    def linear(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return out.sum() * 0 + sum(
            (p * d.view_as(p)).sum() for p, d in zip(model.parameters(), grads, strict=True)
        )

    set_flat(model, x)
    data = torch.zeros(10, *m.ctx.spec.input_shape), torch.zeros(10, dtype=torch.long)
    sgd_epochs(model, *data, cfg.train, torch.Generator(), loss_fn=linear)  # 3 steps
    row = np.zeros(1, PARTICIPATION_DTYPE)[0]
    row["client"], row["steps"] = 5, 3
    task = ClientTask(5, 0, data, data, torch.Generator(), row)
    acc = Accumulators(m.accumulator_sizes(), cfg.aggregation.frac_bits, 1 / 100)
    m.client_finish(task, x, get_flat(model), acc)
    assert np.allclose(parts.store.get(5)["control"], g.numpy(), atol=1e-4)


def test_scaffold_sends_the_model_and_a_control_variate_each_way(tmp_path):
    in_process(tiny("fedavg", tmp_path), tmp_path / "fedavg.h5")
    in_process(tiny("scaffold", tmp_path), tmp_path / "scaffold.h5")
    with h5py.File(tmp_path / "fedavg.h5") as a, h5py.File(tmp_path / "scaffold.h5") as b:
        pa, pb = a["participation"][()], b["participation"][()]
        assert np.array_equal(2 * pa["bytes_up"], pb["bytes_up"])
        assert np.array_equal(2 * pa["bytes_down"], pb["bytes_down"])


def test_the_partial_work_table_smoke_run(tmp_path):
    """analysis/partial_work.py (the partial-work table in docs/methods.md)."""
    cmd = [sys.executable, "analysis/partial_work.py", "--smoke", "--seeds", "0", "--out",
           str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "FedProx (mu 0.01) + partial work" in proc.stdout and "late/run" in proc.stdout


@pytest.mark.mpi
@pytest.mark.parametrize("job", ["fedprox_digits", "fednova_digits", "scaffold_digits"])
def test_the_same_bytes_on_one_rank_and_four(job, tmp_path):
    """Each baseline's job on 1 rank one client at a time and on 4 in groups (FedAdam's
    clients train as FedAvg's: its 1 and 2 ranks are in test_grouping_mpi.py); with
    partial work (FedProx's and FedNova's jobs), stragglers send the steps that fit:
    recorded as partial with their steps, their updates aggregated. (SCAFFOLD's doubled
    traffic leaves no step inside this fleet's deadline: its stragglers stay late.)"""
    run_here(f"jobs/{job}.toml", tmp_path / "one.h5", "run.rounds=2", "train.group=1")
    run_ok(f"jobs/{job}.toml", tmp_path / "four.h5", "run.rounds=2", ranks=4)
    assert_same_results(tmp_path / "one.h5", tmp_path / "four.h5")
    if job not in ("fedprox_digits", "fednova_digits"):
        return
    with h5py.File(tmp_path / "four.h5") as f:
        p, rounds = f["participation"][()], f["rounds"][()]
    partial = p[p["status"] == 8]
    assert len(partial) and rounds["partial"].sum() == len(partial)
    full = 5 * -(-partial["samples"] // 4)
    assert np.all((partial["steps"] >= 1) & (partial["steps"] < full))
    assert np.all(partial["applied"] == partial["round"]) and np.all(partial["bytes_up"] > 0)
    assert np.all(partial["arrival_time"] <= 3.0 * partial["round"])
