"""The one client path in-process: each client's maths is its own, its result does not
depend on its group, the groups the planner forms do not depend on the rank count, and
which clients train as one batched computation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mpifl.config.sections import TrainConfig
from mpifl.engine.plan import Planner, form_groups
from mpifl.fleet.availability import Always
from mpifl.fleet.devices import CATALOGUE
from mpifl.fleet.profiles import generate_fleet
from mpifl.jobs import validate_job
from mpifl.kit import Workload, build_model, get_flat, loss_and_correct, set_flat, sgd_epochs
from mpifl.kit.batched import (
    GROUP_NUMBERS,
    HAND_CONV_MAX,
    ClientTrainer,
    GroupModel,
    group_scores,
    train_group,
)
from mpifl.kit.task import ClientTask
from mpifl.kit.training import sample_cross_entropy
from mpifl.models import ModelSpec
from mpifl.models.mrl import MRLModel
from mpifl.results.schema import PARTICIPATION_DTYPE, Status

TRAIN = TrainConfig(
    epochs=3, batch_size=4, lr=0.05, momentum=0.5, weight_decay=0.01, channels_last=False,
    group=8, precision="fp32",
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
    summed, correct = group_scores(GroupModel(model), trained, data, [None], TRAIN.batch_size)
    for k, (x, y) in enumerate(data):
        set_flat(model, trained[k])
        alone = loss_and_correct(model, x, y)
        assert int(correct[0, k]) == alone[1] and abs(float(summed[k]) - alone[0]) < 1e-3


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


def test_which_clients_train_as_one_batched_computation():
    """Batched: small models of mpifl's layers in fp32 on one thread, with small
    convolutions; the rest one by one. Neither depends on the group."""
    mlp = build_model(ModelSpec("mlp", (12,), 3))
    cnn = build_model(ModelSpec("cnn", (1, 16, 16), 10, channels=(8, 16), norm="group"))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert ClientTrainer(mlp, TRAIN, (12,)).batched
        at = HAND_CONV_MAX // (16 * 16)  # the largest batch by hand: 8 images of 16 x 16
        assert ClientTrainer(cnn, replace(TRAIN, batch_size=at), (1, 16, 16)).batched
        assert not ClientTrainer(cnn, replace(TRAIN, batch_size=at + 1), (1, 16, 16)).batched
        assert ClientTrainer(mlp, TRAIN, (12,), sample_cross_entropy).batched  # any loss
        assert not ClientTrainer(mlp, replace(TRAIN, precision="bf16"), (12,)).batched
        big = build_model(ModelSpec("mlp", (784,), 10, hidden=(128,)))  # 101,770 parameters
        assert not ClientTrainer(big, TRAIN, (784,)).batched  # bound by its arithmetic
        torch.set_num_threads(2)  # several threads split a group's reductions by its size
        assert not ClientTrainer(mlp, TRAIN, (12,)).batched
    finally:
        torch.set_num_threads(threads)
    trainer = ClientTrainer(mlp, TRAIN, (12,))
    trainer.batched = True
    assert trainer.group_size(validate_job({"train": {"group": 16}})) == 16
    assert trainer.group_size(validate_job({"emulation": {"memory": "measured"}})) == 1
    wide = ClientTrainer(build_model(ModelSpec("mlp", (784,), 10, hidden=(100,))), TRAIN, (784,))
    wide.batched = True  # 79,510 parameters: groups of 105
    assert wide.group_size(validate_job({})) == GROUP_NUMBERS // wide.group.size < 256


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


def tasks(data, ks: list[int]) -> list[ClientTask]:
    """Client k's task: its split (also as its test split) and its own stream."""
    row = np.zeros(1, PARTICIPATION_DTYPE)[0]
    return [
        ClientTask(k, 0, data[k], data[k], torch.Generator().manual_seed(100 + k), row) for k in ks
    ]


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec("mlp", (60,), 10, hidden=(32,)),
        ModelSpec("cnn", (1, 8, 8), 10, channels=(16, 32), fc=64, norm="group"),
    ],
    ids=["mlp", "cnn"],
)
@pytest.mark.parametrize("mrl", [False, True], ids=["model", "fedmrl-model"])
def test_a_clients_result_does_not_depend_on_its_group(spec, mrl):
    """Bit for bit: alone, first or last, in a group of 2 or 40, with its own start or
    everyone's (FedMRL's model with its own loss, a clip and its personal head too)."""
    torch.manual_seed(0)
    model = MRLModel(spec, 8, 12, [4, 8]) if mrl else build_model(spec)
    loss = (lambda out, y: sum(sample_cross_entropy(h, y) for h in out)) if mrl else None
    head = (lambda out: out[-1]) if mrl else None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = ClientTrainer(model, TRAIN, spec.input_shape, loss, 0.5, head)
        assert trainer.batched
        data = splits(40, spec.input_shape, spec.n_classes, seed=5)
        start = get_flat(model)
        own = {k: start + 0.01 * k for k in range(40)}

        def trained(ks: list[int], shared: bool) -> tuple[torch.Tensor, float, float]:
            starts = [start if shared else own[k] for k in ks]
            out = list(trainer.train_tasks(starts, tasks(data, ks)))
            _, w, result = out[ks.index(3)]
            return w, result.loss, result.accuracy

        for shared in (True, False):
            alone = trained([3], shared)
            for ks in ([3, 7, 9], [*range(20, 40), 3], [7, 3], list(range(40))):
                w, loss_, accuracy = trained(ks, shared)
                assert torch.equal(w, alone[0]) and (loss_, accuracy) == alone[1:], ks
    finally:
        torch.set_num_threads(threads)


def test_a_model_trained_one_by_one_gives_each_client_its_own_result():
    """A user's model with buffers and randomness (BatchNorm, Dropout), trained one by
    one: each client starts from the module's initial buffers and draws its dropout from
    its own stream, so the clients trained before it change nothing."""
    nn = torch.nn
    model = nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.Dropout(0.3), nn.ReLU(),
                          nn.Linear(16, 3))  # fmt: skip
    trainer = ClientTrainer(model, TRAIN, (12,))
    assert not trainer.batched
    data = splits(6, (12,), 3, seed=2)
    start = get_flat(model)
    stream = torch.get_rng_state()
    alone = list(trainer.train_tasks([start], tasks(data, [3])))[0]
    after = list(trainer.train_tasks([start] * 4, tasks(data, [0, 5, 1, 3])))[-1]
    assert torch.equal(alone[1], after[1]) and alone[2] == after[2]
    assert torch.equal(torch.get_rng_state(), stream)  # the global stream is left alone


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
    """`hand_step` gives autograd's losses and gradients through the module's own
    forward, client by client, with a masked short batch."""
    _check_hand_step(model, shape, None)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_the_hand_written_backward_of_fedmrls_model_under_its_loss_is_autograds(arch):
    """FedMRL's two extractors, projector and nested heads, its multi-head loss's
    gradient at the heads taken by autograd."""
    spec = ModelSpec(arch, (1, 8, 8), 6, channels=(4, 8), hidden=(16,), norm="group")
    model = MRLModel(spec, 8, 12, [4, 8])
    _check_hand_step(model, (1, 8, 8), lambda out, y: 0.5 * sample_cross_entropy(out[0], y)
                     + sum(sample_cross_entropy(h, y) for h in out[1:]))  # fmt: skip


def _check_hand_step(model, shape, loss_fn):
    from torch.func import functional_call

    from mpifl.kit.group_matmul import group_bmm
    from mpifl.kit.hand_backward import (
        differentiable_by_hand,
        hand_step,
        loss_targets,
        output_rows,
        step_inputs,
    )

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
    rows = rows.view(m, b, *rows.shape[1:])
    weights = list(params.values())
    pad = output_rows(model, b) - b  # the outputs' zero rows
    padded_y = torch.nn.functional.pad(y.view(m, b), (0, pad))
    padded_share = torch.nn.functional.pad(share, (0, pad))
    if loss_fn is None:
        target = loss_targets(padded_y, padded_share, 6)
        ours = hand_step(model, weights, rows, patched, group_bmm, target)
        loss_fn = sample_cross_entropy
    else:
        ours = hand_step(model, weights, rows, patched, group_bmm, loss_fn=loss_fn,
                         y=padded_y, share=padded_share)  # fmt: skip
    for k in range(m):
        own = {name: p[k].detach().requires_grad_(True) for name, p in params.items()}
        out = functional_call(model, own, (x.view(m, b, *shape)[k],))
        loss = (loss_fn(out, y.view(m, b)[k]) * share[k]).sum()
        grads = torch.autograd.grad(loss, list(own.values()))
        assert torch.allclose(ours[0][k], loss, atol=1e-6)
        for a, c in zip(ours[1], grads, strict=True):
            assert a[k].shape == c.shape and torch.allclose(a[k], c, atol=1e-5)


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


FAULTS = """
import resource, sys, torch
from mpifl.engine.allocator import malloc_thresholds, set_malloc_thresholds
from mpifl.kit import build_model
from mpifl.kit.batched import GroupModel
from mpifl.kit.group_matmul import group_bmm
from mpifl.kit.hand_backward import hand_step, loss_targets, output_rows, step_inputs
from mpifl.models import ModelSpec
assert set_malloc_thresholds(*malloc_thresholds(sys.argv[1], False))
torch.set_num_threads(1)
model = build_model(ModelSpec("cnn", (1, 8, 8), 10, channels=(16, 32), norm="group"))
m, b = 32, 4
rows, patched = step_inputs(model, torch.randn(m * b, 1, 8, 8))
rows, y = rows.view(m, b, *rows.shape[1:]), torch.randint(0, 10, (m, b))
weights = list(GroupModel(model).views(torch.randn(m, 13802)).values())
pad = output_rows(model, b) - b
target = loss_targets(torch.nn.functional.pad(y, (0, pad)),
                      torch.nn.functional.pad(torch.full((m, b), 0.25), (0, pad)), 10)
step = lambda: hand_step(model, weights, rows, patched, group_bmm, target)
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
    from mpifl.kit.group_matmul import group_bmm

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


def test_a_clients_own_test_scores_do_not_depend_on_its_group():
    """Scored with its group mates' test splits padded to the longest, a client with 1 or
    3 test samples got other logits than alone (the products' row count was the
    group's): its recorded accuracy could flip on a near tie. Scored in chunks of the
    batch size, its summed cross-entropy is the same bits in any group."""
    spec = ModelSpec("cnn", (1, 8, 8), 10, channels=(8, 16), fc=32, norm="group")
    torch.manual_seed(0)
    group = GroupModel(build_model(spec))
    w = torch.randn(6, group.size) * 0.2
    g = torch.Generator().manual_seed(1)
    sizes = (1, 3, 17, 2, 40, 5)
    tests = [(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))
             for n in sizes]  # fmt: skip
    summed, right = group_scores(group, w, tests, [None], 4)
    for k in range(6):
        alone = group_scores(group, w[k : k + 1], tests[k : k + 1], [None], 4)
        assert summed[k].item() == alone[0][0].item() and right[0, k] == alone[1][0, 0], k
    empty = group_scores(group, w[:2], [(torch.zeros(0, 1, 8, 8), torch.zeros(0).long())] * 2,
                         [None], 4)  # fmt: skip
    assert empty[0].tolist() == [0.0, 0.0] and empty[1].tolist() == [[0, 0]]


def test_models_trained_one_by_one_leave_the_module_as_it_was():
    """The method evaluates with the module its trainer trains: BatchNorm's statistics of
    the last client trained must not stay in it (they would depend on the rank)."""
    nn = torch.nn
    model = nn.Sequential(nn.Linear(12, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = ClientTrainer(model, TRAIN, (12,))
    list(trainer.train_tasks([get_flat(model)] * 2, tasks(splits(2, (12,), 3), [0, 1])))
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name


def test_frozen_and_unused_parameters_are_left_alone():
    """As torch.optim.SGD does: a frozen parameter, or one the loss does not reach, keeps
    its value (autograd.grad over every parameter refused both)."""
    nn = torch.nn

    class Partly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.spare = nn.Linear(12, 3), nn.Linear(3, 3)
            self.frozen = nn.Parameter(torch.ones(3), requires_grad=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x) * self.frozen

    model = Partly()
    spare, body = model.spare.weight.clone(), model.body.weight.clone()
    trainer = ClientTrainer(model, TRAIN, (12,))
    assert not trainer.batched
    list(trainer.train_tasks([get_flat(model)], tasks(splits(1, (12,), 3), [0])))
    assert torch.equal(model.spare.weight, spare) and torch.equal(model.frozen, torch.ones(3))
    assert not torch.equal(model.body.weight, body)
    frozen = build_model(ModelSpec("mlp", (12,), 3))
    frozen[1].bias.requires_grad_(False)
    assert not ClientTrainer(frozen, TRAIN, (12,)).batched  # the hand-written step would move it


def test_a_mean_loss_is_refused():
    """A method's loss gives one loss per sample; a mean one would weigh padding and make
    a client's loss its group's."""
    model = build_model(ModelSpec("mlp", (12,), 3))
    mean = lambda out, y: sample_cross_entropy(out, y).mean()  # noqa: E731
    for batched in (True, False):
        trainer = ClientTrainer(model, TRAIN, (12,), mean)
        trainer.batched = batched
        with pytest.raises(ValueError, match="one loss per sample"):
            list(trainer.train_tasks([get_flat(model)], tasks(splits(1, (12,), 3), [0])))


def partial_tasks(data, ks: list[int], steps: dict[int, int]) -> list[ClientTask]:
    """`tasks`, client k partial with steps[k] local steps if it has an entry."""
    out = tasks(data, ks)
    for task in out:
        task.row = np.zeros(1, PARTICIPATION_DTYPE)[0]
        if task.client in steps:
            task.row["status"], task.row["steps"] = Status.PARTIAL, steps[task.client]
    return out


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one-by-one"])
def test_partial_and_proximal_clients_are_their_own_in_any_group(batched):
    """A partial client trains its first steps, FedProx's pull included, the same bits in
    any group; its model is sgd_epochs' with those steps, its loss their mean."""
    spec = ModelSpec("mlp", (12,), 5, hidden=(16,))
    torch.manual_seed(3)
    model = build_model(spec)
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if batched else 2)
    try:
        trainer = ClientTrainer(model, TRAIN, spec.input_shape, proximal=0.3)
        assert trainer.batched == batched
        data = splits(12, spec.input_shape, spec.n_classes, seed=7)
        start = get_flat(model)
        steps = {1: 1, 4: 5, 6: 2, 9: 7}  # some past their first epoch

        def run(ks: list[int]) -> dict[int, tuple[torch.Tensor, float]]:
            out = trainer.train_tasks([start] * len(ks), partial_tasks(data, ks, steps))
            return {task.client: (w, result.loss) for task, w, result in out}

        group = run(list(range(12)))
        for k in range(12):
            alone = run([k])[k]
            assert torch.equal(group[k][0], alone[0]) and group[k][1] == alone[1], k
            set_flat(model, start)
            gen = torch.Generator().manual_seed(100 + k)
            loss = sgd_epochs(model, *data[k], TRAIN, gen, steps=steps.get(k), mu=0.3)
            assert torch.allclose(alone[0], get_flat(model), atol=1e-6), k
            assert abs(alone[1] - loss) < 1e-5, k
    finally:
        torch.set_num_threads(threads)
