"""Server optimizers (mpifl.kit.server_optimizers) against hand-derived float64
references, FedAvgM at beta = 0 against FedAvg bit for bit, and a FedOpt run interrupted
and resumed in-process."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpifl.comm import Comm
from mpifl.engine import checkpoint
from mpifl.engine.assemble import assemble
from mpifl.errors import ConfigError
from mpifl.kit import server_optimizers as so
from mpifl.results import read_run
from tests.conftest import assert_same_results, in_process
from tests.test_methods import tiny

X0 = np.array([1.0, 2.0, 3.0])
D = np.array([[0.1, -0.2, 0.0], [0.001, 0.2, 0.3], [-0.1, 0.0, 0.3]])  # Delta_0..2
LR, B1, B2, TAU = 0.5, 0.9, 0.99, 1e-3


def three_steps(opt: so.ServerOptimizer) -> np.ndarray:
    """x_3 from X0 after the optimizer's steps on D's three averaged updates."""
    x, state = torch.from_numpy(X0.copy()), opt.initial_state(3)
    for delta in D:
        change, state = opt.step(torch.from_numpy(delta.copy()), state)
        x = x + change
    return x.numpy()


def test_momentum_is_a_geometric_sum_of_the_updates():
    # v_0 = D0, v_1 = b D0 + D1, v_2 = b^2 D0 + b D1 + D2; x_3 = x_0 + lr (v_0 + v_1 + v_2)
    b = 0.7
    expected = X0 + LR * ((1 + b + b * b) * D[0] + (1 + b) * D[1] + D[2])
    np.testing.assert_allclose(three_steps(so.Momentum(LR, b)), expected, rtol=1e-14)


def test_adagrad_divides_by_the_root_of_the_summed_squares():
    # beta1 = 0: m_t = D_t; v_t = tau^2 + sum_{s<=t} D_s^2
    steps = [D[t] / (np.sqrt(TAU**2 + (D[: t + 1] ** 2).sum(0)) + TAU) for t in range(3)]
    expected = X0 + LR * np.sum(steps, axis=0)
    np.testing.assert_allclose(three_steps(so.Adagrad(LR, 0.0, TAU)), expected, rtol=1e-13)


def test_adagrad_with_momentum_averages_the_updates_first():
    m0 = 0.1 * D[0]
    m1 = 0.9 * m0 + 0.1 * D[1]
    m2 = 0.9 * m1 + 0.1 * D[2]
    v = [TAU**2 + (D[: t + 1] ** 2).sum(0) for t in range(3)]
    expected = X0 + LR * sum(m / (np.sqrt(vt) + TAU) for m, vt in zip((m0, m1, m2), v, strict=True))
    np.testing.assert_allclose(three_steps(so.Adagrad(LR, 0.9, TAU)), expected, rtol=1e-13)


def test_adam_has_no_bias_correction():
    # m_t = (1 - b1) sum_s b1^(t-s) D_s; v_t = b2^(t+1) tau^2 + (1 - b2) sum_s b2^(t-s) D_s^2
    total = np.zeros(3)
    for t in range(3):
        m = (1 - B1) * sum(B1 ** (t - s) * D[s] for s in range(t + 1))
        v = B2 ** (t + 1) * TAU**2 + (1 - B2) * sum(B2 ** (t - s) * D[s] ** 2 for s in range(t + 1))
        total += m / (np.sqrt(v) + TAU)
    np.testing.assert_allclose(three_steps(so.Adam(LR, B1, TAU, B2)), X0 + LR * total, rtol=1e-13)


def test_yogi_moves_v_towards_the_square_by_a_fixed_fraction_of_it():
    # v_t = v_{t-1} - (1 - b2) D_t^2 sign(v_{t-1} - D_t^2): coordinate 0 grows at t = 0
    # (v = tau^2 < 0.01), then shrinks at t = 1 (1e-6 < v), then grows again
    v0 = TAU**2 + 0.01 * np.array([0.01, 0.04, 0.0])
    v1 = v0 + 0.01 * np.array([-1e-6, 0.04, 0.09])
    v2 = v1 + 0.01 * np.array([0.01, 0.0, 0.09])
    m0 = 0.1 * D[0]
    m1 = 0.9 * m0 + 0.1 * D[1]
    m2 = 0.9 * m1 + 0.1 * D[2]
    total = sum(m / (np.sqrt(v) + TAU) for m, v in ((m0, v0), (m1, v1), (m2, v2)))
    np.testing.assert_allclose(three_steps(so.Yogi(LR, B1, TAU, B2)), X0 + LR * total, rtol=1e-13)


def test_the_first_adaptive_step_is_about_eta_per_coordinate():
    """Without bias correction m_0 = (1 - b1) D and sqrt(v_0) ~ sqrt(1 - b2) |D|: the
    first step of FedAdam is eta (1 - b1) / sqrt(1 - b2) = eta per coordinate with
    |D| >> tau, whatever the scale of D."""
    for scale in (1e-2, 1.0, 1e2):
        delta = torch.tensor([scale, -scale], dtype=torch.float64)
        opt = so.Adam(0.1, 0.9, 1e-9, 0.99)
        change, _ = opt.step(delta, opt.initial_state(2))
        np.testing.assert_allclose(change.numpy(), [0.1, -0.1], rtol=1e-6)


def test_no_trained_client_gives_no_pseudo_gradient():
    weights = torch.ones(4)
    assert so.pseudo_gradient(weights, np.zeros(4), 0.0) is None
    delta = so.pseudo_gradient(weights, np.full(4, 6.0), 2.0)
    assert delta.dtype == torch.float64 and torch.equal(
        delta, torch.full((4,), 2.0, dtype=torch.float64)
    )


def _sums(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    """Reduced sums as the engine gives them: sum_k n_k W_k and sum_k n_k."""
    n = rng.integers(5, 50, 4).astype(np.float64)
    models = rng.normal(0.0, 0.1, (4, size))
    return {"model": (n[:, None] * models).sum(0), "weight": np.array([n.sum()])}


def test_fedavgm_without_momentum_is_fedavg_bit_for_bit(tmp_path):
    fedavg = assemble(tiny("fedavg", tmp_path), Comm(), tmp_path / "a.h5").method
    sets = {"algorithm__server_momentum": 0.0, "algorithm__server_lr": 1.0}
    fedavgm = assemble(tiny("fedavgm", tmp_path, **sets), Comm(), tmp_path / "b.h5").method
    assert fedavg.weights.numpy().tobytes() == fedavgm.weights.numpy().tobytes()
    rng = np.random.default_rng(0)
    for _ in range(3):
        sums = _sums(rng, fedavg.weights.numel())
        assert fedavg.server_step(sums, None) == fedavgm.server_step(sums, None) == {}
        assert fedavgm.weights.dtype == torch.float32
        assert fedavg.weights.numpy().tobytes() == fedavgm.weights.numpy().tobytes()


def test_a_round_without_trained_clients_leaves_the_server_as_it_was(tmp_path):
    method = assemble(tiny("fedyogi", tmp_path), Comm(), tmp_path / "y.h5").method
    method.server_step(_sums(np.random.default_rng(1), method.weights.numel()), None)
    before = method.state_dict()
    empty = {"model": np.zeros(method.weights.numel()), "weight": np.zeros(1)}
    assert method.server_step(empty, None) == {}
    after = method.state_dict()
    assert before.keys() == after.keys() == {"weights", "server_state/0", "server_state/1"}
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)


@pytest.mark.parametrize(
    ("key", "value"), [("beta2", 1.0), ("beta1", -0.1), ("tau", 0.0), ("server_lr", 0.0)]
)
def test_out_of_range_hyper_parameters_are_refused(tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"algorithm.{key}"):
        tiny("fedadam", tmp_path, **{f"algorithm__{key}": value})


def test_fedadagrad_has_no_beta2(tmp_path):
    with pytest.raises(ConfigError, match="beta2"):
        tiny("fedadagrad", tmp_path, algorithm__beta2=0.9)


def test_a_resumed_fedadam_run_is_the_uninterrupted_one(tmp_path):
    """Interrupted after round 2 and resumed from the checkpoint: m and v come back with
    W, and the run is byte for byte the uninterrupted one."""
    cfg = tiny("fedadam", tmp_path, run__rounds=4, algorithm__server_lr=0.03)
    reference, code = in_process(cfg, tmp_path / "ref.h5")
    assert code == 0
    m, v = (s.numpy() for s in reference.method.server_state)
    assert np.abs(m).max() > 0 and (v > TAU**2).any()  # the state is not its initial value
    out = tmp_path / "run.h5"
    interrupted, code = in_process(cfg, out, abandon_at=2)
    assert code == 3
    ckpt = checkpoint.load(out, interrupted.run_id)
    assert ckpt is not None and ckpt.next_round == 2
    assert in_process(cfg, out, resume=ckpt)[1] == 0
    assert_same_results(tmp_path / "ref.h5", out)
    assert read_run(out).attrs["resumed_at_round"] == 3
