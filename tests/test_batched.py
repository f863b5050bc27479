"""Batched (vectorised) client training in-process: each client's maths is its own, the
groups the planner forms do not depend on the rank count, and when it is used."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mpifl.config.sections import TrainConfig
from mpifl.engine.plan import Planner, form_groups
from mpifl.errors import ConfigError
from mpifl.fleet.availability import Always
from mpifl.fleet.devices import CATALOGUE
from mpifl.fleet.profiles import generate_fleet
from mpifl.jobs import validate_job
from mpifl.kit import Workload, build_model, get_flat, loss_and_correct, set_flat, sgd_epochs
from mpifl.kit.batched import (
    AUTO_MAX_PARAMS,
    GroupModel,
    group_scores,
    group_size,
    pinned_group_size,
    sample_cross_entropy,
    train_group,
)
from mpifl.models import ModelSpec
from mpifl.models.mrl import MRLModel

TRAIN = TrainConfig(
    epochs=3, batch_size=4, lr=0.05, momentum=0.5, weight_decay=0.01, channels_last=False,
    vectorize="on", group=8, precision="fp32",
)  # fmt: skip


def splits(n_clients: int, shape: tuple[int, ...], classes: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 23, (n_clients,), generator=g)  # uneven, some below a batch
    return [
        (
            torch.randn(int(n), *shape, generator=g),
            torch.randint(0, classes, (int(n),), generator=g),
        )
        for n in sizes
    ]


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec("mlp", (12,), 5, hidden=(16, 8), norm="layer"),
        ModelSpec("cnn", (1, 8, 8), 4, channels=(4, 8), fc=8, norm="group", groups=2),
    ],
    ids=["mlp", "cnn"],
)
def test_a_group_trains_each_client_as_it_would_alone(spec):
    torch.manual_seed(0)
    model = build_model(spec)
    start = get_flat(model)
    data = splits(7, spec.input_shape, spec.n_classes)
    gens = lambda: [torch.Generator().manual_seed(100 + k) for k in range(len(data))]  # noqa: E731
    trained, losses = train_group(GroupModel(model), start, data, TRAIN, gens())
    for k, ((x, y), gen) in enumerate(zip(data, gens(), strict=True)):
        set_flat(model, start)
        loss = sgd_epochs(model, x, y, TRAIN, gen)
        assert torch.allclose(trained[k], get_flat(model), rtol=1e-4, atol=1e-6), k
        assert abs(float(losses[k]) - loss) < 1e-4 * max(1.0, abs(loss))
    summed, correct = group_scores(GroupModel(model), trained, data)
    for k, (x, y) in enumerate(data):
        set_flat(model, trained[k])
        alone = loss_and_correct(model, x, y)
        assert int(correct[k]) == alone[1] and abs(float(summed[k]) - alone[0]) < 1e-3


def test_groups_are_by_variant_and_size_and_independent_of_ranks():
    variant = np.array([0, 1, 0, -1, 0, 1, 0, 0])
    samples = np.array([5, 3, 1, 9, 5, 2, 7, 3])
    group = form_groups(variant, samples, 2)
    assert group[3] == -1  # not trained
    for g in np.unique(group[group >= 0]):
        members = np.flatnonzero(group == g)
        assert len(members) <= 2 and len(set(variant[members])) == 1
    assert list(group[[2, 7]]) == [0, 0]  # the two smallest of variant 0 together
    fleet = generate_fleet(60, CATALOGUE, 0.3, seed=0)
    n_train = np.arange(60) % 17 + 1

    def work(ids, round_):
        n = len(ids)
        return Workload(np.zeros(n, np.int64), n_train[ids] * 1e6, np.zeros(n, np.int64),
                        np.zeros(n, np.int64), np.ones(n, np.float32), np.zeros(n, np.float32),
                        (ids % 2).astype(np.int16))  # fmt: skip

    cfg = validate_job({"round": {"cohort": 40}, "fleet": {"clients": 60}})
    plans = [
        Planner(0, fleet, n_train, cfg.round, Always(), ranks, group_size=5).plan(0, 0.0, work)
        for ranks in (1, 2, 4)
    ]
    assert all(np.array_equal(p.rows["group"], plans[0].rows["group"]) for p in plans)
    four = plans[2].rows
    for g in np.unique(four["group"][four["group"] >= 0]):  # a group stays on one rank
        assert len(set(four["rank"][four["group"] == g])) == 1
    assert len(set(four["rank"][four["rank"] >= 0])) == 4


def test_when_clients_are_batched():
    cfg = validate_job({})
    assert group_size(cfg, AUTO_MAX_PARAMS) == 256 and group_size(cfg, AUTO_MAX_PARAMS + 1) == 1
    off = validate_job({"train": {"vectorize": "off"}})
    assert group_size(off, 10) == 1
    on = validate_job({"train": {"vectorize": "on", "group": 16}})
    assert group_size(on, 10**7) == 16
    measured = validate_job({"emulation": {"memory": "measured"}})
    assert group_size(measured, 10) == 1
    both = validate_job({"emulation": {"memory": "both"}, "train": {"vectorize": "on"}})
    with pytest.raises(ConfigError, match="train.vectorize"):
        group_size(both, 10)


def test_a_masked_step_changes_nothing():
    """A client with one sample takes one step per epoch while its group mate takes five:
    momentum and weight decay must not move it in the steps it has no data for."""
    spec = ModelSpec("mlp", (3,), 2, hidden=(4,))
    torch.manual_seed(1)
    model = build_model(spec)
    start = get_flat(model)
    data = [
        (torch.randn(1, 3), torch.tensor([1])),
        (torch.randn(20, 3), torch.randint(0, 2, (20,))),
    ]
    train = replace(TRAIN, epochs=2)
    gens = [torch.Generator().manual_seed(k) for k in (0, 1)]
    trained, _ = train_group(GroupModel(model), start, data, train, gens)
    set_flat(model, start)
    sgd_epochs(model, *data[0], train, torch.Generator().manual_seed(0))
    assert torch.allclose(trained[0], get_flat(model), atol=1e-7)


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec("mlp", (60,), 10, hidden=(32,)),
        ModelSpec("cnn", (1, 8, 8), 10, channels=(16, 32), fc=64, norm="group"),
    ],
    ids=["mlp", "cnn"],
)
@pytest.mark.parametrize("mrl", [False, True], ids=["model", "fedmrl-model"])
def test_a_clients_batched_result_does_not_depend_on_its_group(spec, mrl):
    """Bit for bit: alone, first or last, in a group of 2 or 21. Methods that keep client
    state batch the clients of one home rank, whose groups change with the rank count;
    their runs stay bitwise the same for any rank count because of this (for models
    batched by hand; vmap's are not, and such methods then train one by one)."""
    torch.manual_seed(0)
    model = MRLModel(spec, 8, 12, [4, 8]) if mrl else build_model(spec)
    start, group = get_flat(model), GroupModel(model, invariant=True)
    assert group.by_hand
    loss = mrl_sample_loss if mrl else sample_cross_entropy
    data = splits(40, spec.input_shape, spec.n_classes, seed=5)

    def trained(ks: list[int]) -> torch.Tensor:
        gens = [torch.Generator().manual_seed(100 + k) for k in ks]
        batch = [data[k] for k in ks]
        return train_group(group, start, batch, TRAIN, gens, loss, 0.5)[0][ks.index(3)]

    alone = trained([3])
    for ks in ([3, 7, 9], [*range(20, 40), 3], [7, 3], list(range(40))):
        assert torch.equal(trained(ks), alone), ks


def mrl_sample_loss(heads: list[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    return sum(sample_cross_entropy(h, y) for h in heads)


def test_a_model_not_batched_by_hand_keeps_stateful_clients_one_by_one():
    class Custom(torch.nn.Module):  # not a Sequential: torch.func's vmap batches it
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x)

    group = GroupModel(Custom(), invariant=True)
    assert not group.by_hand
    on = validate_job({"train": {"vectorize": "on", "group": 16}})
    assert pinned_group_size(on, 10, [group]) == 1 and group_size(on, 10) == 16
    w = torch.zeros(3, group.size)
    assert group(w, torch.ones(3, 5, 4)).shape == (3, 5, 2)  # vmap still serves


def _strided_cnn() -> torch.nn.Sequential:
    """A user's Sequential: strided and dilated convolutions, one without bias."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), bias=False),
        nn.ReLU(), nn.MaxPool2d(2, stride=1), nn.Conv2d(3, 4, 3, padding=2, stride=2),
        nn.GroupNorm(2, 4), nn.Conv2d(4, 4, 3, padding=1), nn.Flatten(), nn.LayerNorm(36),
        nn.Linear(36, 6),
    )  # fmt: skip


def _norm_first() -> torch.nn.Sequential:
    """A norm as the first weighted layer: no input gradient is needed there."""
    nn = torch.nn
    return nn.Sequential(nn.GroupNorm(1, 2), nn.ReLU(), nn.Conv2d(2, 3, 3), nn.Flatten(),
                         nn.Linear(18, 6))  # fmt: skip


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (build_model(ModelSpec("mlp", (1, 4, 5), 6, hidden=(16, 8))), (1, 4, 5)),
        (build_model(ModelSpec("mlp", (12,), 6, hidden=(16, 8), norm="layer")), (12,)),
        (
            build_model(ModelSpec("cnn", (1, 8, 8), 6, channels=(4, 8), fc=8, norm="group")),
            (1, 8, 8),
        ),
        (build_model(ModelSpec("cnn", (3, 9, 7), 6, channels=(4,), fc=8, norm="layer")), (3, 9, 7)),
        (_strided_cnn(), (2, 9, 6)),
        (_norm_first(), (2, 5, 4)),
    ],
    ids=["mlp", "mlp-layernorm", "cnn", "cnn-odd-shape", "strided-cnn", "norm-first"],
)
def test_the_hand_written_backward_is_autograds(model, shape):
    """`hand_step` (the fast path of fp32 cross-entropy) gives autograd's losses and
    gradients, with a masked short batch."""
    from mpifl.kit.batched import _autograd_step
    from mpifl.kit.group_matmul import fast_bmm, group_bmm
    from mpifl.kit.hand_backward import differentiable_by_hand, hand_step, loss_targets, step_inputs

    torch.manual_seed(3)
    group = GroupModel(model)
    assert differentiable_by_hand(model, len(shape))
    m, b = 5, 4
    params = group.views(torch.randn(m, group.size) * 0.3)
    x, y = torch.randn(m * b, *shape), torch.randint(0, 6, (m * b,))
    weight = torch.ones(m, b)
    weight[-1, 2:] = 0  # the last client's batch is short
    share = weight / weight.sum(1, keepdim=True)
    rows, patched = step_inputs(model, x)
    theirs = _autograd_step(group, params, m, x.view(m, b, *shape), y, share,
                            sample_cross_entropy, TRAIN)  # fmt: skip
    target = loss_targets(y.view(m, b), share, 6)
    for bmm in (fast_bmm, group_bmm):
        ours = hand_step(model, list(params.values()), rows.view(m, b, *rows.shape[1:]),
                         target, patched, bmm)  # fmt: skip
        assert torch.allclose(ours[0], theirs[0], atol=1e-6)
        for a, c in zip(ours[1], theirs[1], strict=True):
            assert a.shape == c.shape and torch.allclose(a, c, atol=1e-5)


def test_models_outside_the_hand_written_backward_are_refused():
    from mpifl.kit.hand_backward import differentiable_by_hand

    nn = torch.nn
    cnn = build_model(ModelSpec("cnn", (1, 8, 8), 3))
    assert differentiable_by_hand(cnn, 3) and not differentiable_by_hand(cnn, 1)
    assert not differentiable_by_hand(nn.Sequential(nn.Linear(8, 2)), 3)  # images, no Flatten
    for odd in (
        nn.Sequential(nn.Conv2d(1, 2, 3, padding_mode="reflect"), nn.Flatten(), nn.Linear(8, 2)),
        nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten(), nn.Linear(8, 2)),
        nn.Sequential(nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(8, 2)),
        nn.Sequential(nn.Flatten(), nn.Linear(8, 2), nn.ReLU()),  # not ending in a Linear
        nn.Sequential(nn.Flatten(), nn.LayerNorm(8, elementwise_affine=False), nn.Linear(8, 2)),
    ):
        assert not differentiable_by_hand(odd, 3), odd
    # the forward's batched layers refuse what they would compute wrongly (reflect padding
    # was zero-padded) or crash on (a norm without weights)
    for odd in (
        nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), nn.Flatten()),
        nn.Sequential(nn.Flatten(), nn.LayerNorm(8, elementwise_affine=False), nn.Linear(8, 2)),
    ):
        assert not GroupModel(odd).by_hand, odd


def test_stateful_methods_batch_in_fp32_on_one_thread_only():
    """Several threads split a group's reductions by its size; bf16 products are not
    aligned by group_bmm: a stateful method then trains one by one."""
    model = build_model(ModelSpec("mlp", (12,), 3))
    group = GroupModel(model, invariant=True)
    on = validate_job({"train": {"vectorize": "on", "group": 16}})
    bf16 = validate_job({"train": {"vectorize": "on", "group": 16, "precision": "bf16"}})
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert pinned_group_size(on, 10, [group]) == 16
        with pytest.raises(ValueError, match="invariant"):  # torch's products: refused
            pinned_group_size(on, 10, [GroupModel(model)])
        assert pinned_group_size(bf16, 10, [group]) == 1
        torch.set_num_threads(2)
        assert pinned_group_size(on, 10, [group]) == 1
    finally:
        torch.set_num_threads(threads)


FAULTS = """
import resource, sys, torch
from mpifl.engine.allocator import malloc_thresholds, set_malloc_thresholds
from mpifl.kit import build_model
from mpifl.kit.batched import GroupModel
from mpifl.kit.group_matmul import fast_bmm
from mpifl.kit.hand_backward import hand_step, loss_targets, step_inputs
from mpifl.models import ModelSpec
assert set_malloc_thresholds(*malloc_thresholds(sys.argv[1], False))
torch.set_num_threads(1)
model = build_model(ModelSpec("cnn", (1, 8, 8), 10, channels=(16, 32), norm="group"))
m, b = 32, 4
rows, patched = step_inputs(model, torch.randn(m * b, 1, 8, 8))
rows, y = rows.view(m, b, *rows.shape[1:]), torch.randint(0, 10, (m, b))
weights = list(GroupModel(model).views(torch.randn(m, 13802)).values())
target = loss_targets(y, torch.full((m, b), 0.25), 10)
step = lambda: hand_step(model, weights, rows, target, patched, fast_bmm)
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_batched_steps_reuse_freed_memory_unless_memory_is_measured():
    """A CNN group of 32 frees activations of hundreds of KiB each step; with glibc's
    defaults they were mapped anew every step (3600 page faults in 10 steps, twice the
    step time); kept, 480. A run that measures memory maps them all (31000)."""
    import subprocess
    import sys

    def faults(memory: str) -> int:
        run = subprocess.run([sys.executable, "-c", FAULTS, memory], capture_output=True,
                             text=True, check=True)  # fmt: skip
        return int(run.stdout)

    assert faults("analytic") < 1500 < 10_000 < faults("measured")


def test_a_clients_matrix_product_is_its_own_in_any_group():
    """MKL's rounding of a product depends on its operands' alignment: a client in slot 1
    of a group of (9 x 512) @ (512 x 6) products got another last bit than alone, and
    REFT's 1- and 2-rank runs differed. group_bmm aligns every client's matrices."""
    from mpifl.kit.group_matmul import GroupBmm, group_bmm

    torch.manual_seed(0)
    for (r, n, c), column_major in (((9, 512, 6), True), ((9, 256, 5), True), ((7, 200, 3), False)):
        a = torch.randn(8, n, r).transpose(1, 2) if column_major else torch.randn(8, r, n)
        b, bias = torch.randn(8, n, c), torch.randn(8, c)
        for k in range(8):
            own_a = a[k : k + 1].transpose(1, 2).clone().transpose(1, 2) if column_major else a[
                k : k + 1].clone()  # fmt: skip
            alone = group_bmm(own_a, b[k : k + 1].clone(), bias[k : k + 1])[0]
            for m in range(k + 1, 9):
                assert torch.equal(group_bmm(a[:m], b[:m], bias[:m])[k], alone), (r, k, m)
    a, b = torch.randn(3, 4, 5, requires_grad=True), torch.randn(3, 5, 2, requires_grad=True)
    da, db = torch.autograd.grad(GroupBmm.apply(a, b).square().sum(), [a, b])
    ea, eb = torch.autograd.grad(torch.bmm(a, b).square().sum(), [a, b])
    assert torch.allclose(da, ea) and torch.allclose(db, eb)


def test_the_batched_sgd_step_is_torchs_sgd():
    """`_sgd_step` runs torch's fused kernel on the contiguous blocks of an unpadded
    layout (it takes every tensor to be contiguous, and silently misreads strided
    ones): torch.optim.SGD's steps to rounding (its vector loop's leftovers may round
    otherwise). Its multi-tensor kernels, on the padded rows of an invariant group, give
    them bit for bit, client by client, with 10-number rows and a prefix of one client."""
    from mpifl.kit.batched import _sgd_step

    torch.manual_seed(0)
    train = validate_job({"train": {"momentum": 0.9, "weight_decay": 0.01, "lr": 0.1}}).train
    for fused in (True, False):
        shape = (5, 10) if fused else (5, 16)
        weights, momentum = [torch.randn(*shape)[:, :10]], [torch.zeros(*shape)[:, :10]]
        alone = [[weights[0][k].clone().requires_grad_(True)] for k in range(5)]
        optimisers = [torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01) for p in alone]
        for m in (5, 5, 3, 1):  # the clients still training: a prefix
            grad = torch.randn(5, 10)
            _sgd_step([weights[0][:m]], [grad[:m]], [momentum[0][:m]], train, fused)
            for k in range(m):
                alone[k][0].grad = grad[k].clone()
                optimisers[k].step()
        for k in range(5):
            theirs = alone[k][0].detach()
            same = torch.allclose if fused else torch.equal
            assert same(weights[0][k], theirs), (fused, k)
