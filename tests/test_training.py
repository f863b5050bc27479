"""The one SGD step and a model trained alone: torch.optim.SGD's arithmetic, bit for bit."""

from __future__ import annotations

import torch

from mpifl.config.sections import TrainConfig
from mpifl.kit import build_model, get_flat, set_flat, sgd_epochs, sgd_update
from mpifl.kit.training import clip_norms
from mpifl.models import ModelSpec

TRAIN = TrainConfig(
    epochs=2, batch_size=5, lr=0.1, momentum=0.9, weight_decay=0.01, channels_last=False,
    group=8, precision="fp32",
)  # fmt: skip


def test_sgd_update_is_torchs_sgd_client_by_client():
    """torch's multi-tensor kernels (private, see sgd_update) on the padded rows of a
    group, with a prefix of the clients stepping: torch.optim.SGD's steps, bit for bit,
    client by client. Fails if those kernels change their arithmetic."""
    torch.manual_seed(0)
    weights, momentum = torch.randn(5, 16)[:, :10], torch.zeros(5, 16)[:, :10]
    alone = [[weights[k].clone().requires_grad_(True)] for k in range(5)]
    optimisers = [torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01) for p in alone]
    for m in (5, 5, 3, 1):  # the clients still training: a prefix
        grad = torch.randn(5, 10)
        sgd_update([weights[:m]], [grad[:m].clone()], [momentum[:m]], 0.1, 0.9, 0.01)
        for k in range(m):
            alone[k][0].grad = grad[k].clone()
            optimisers[k].step()
    for k in range(5):
        assert torch.equal(weights[k], alone[k][0].detach()), k


def test_a_model_trained_alone_is_torchs_sgd_and_clip():
    """sgd_epochs (mpifl's SGD step and clip) gives what torch.optim.SGD with
    clip_grad_norm_ gives, bit for bit: runs trained one by one before keep their bits."""
    spec = ModelSpec("cnn", (1, 8, 8), 4, channels=(4, 8), fc=8, norm="group")
    torch.manual_seed(1)
    model = build_model(spec)
    start = get_flat(model)
    x, y = torch.randn(23, 1, 8, 8), torch.randint(0, 4, (23,))
    for clip in (None, 0.5):
        set_flat(model, start)
        loss = sgd_epochs(model, x, y, TRAIN, torch.Generator().manual_seed(3), clip=clip)
        ours = get_flat(model)
        set_flat(model, start)
        generator = torch.Generator().manual_seed(3)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
        total = []
        for _ in range(TRAIN.epochs):
            order = torch.randperm(len(x), generator=generator)
            for lo in range(0, len(x), TRAIN.batch_size):
                idx = order[lo : lo + TRAIN.batch_size]
                optimizer.zero_grad()
                batch_loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                batch_loss.backward()
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                optimizer.step()
                total.append(batch_loss.item())
        assert torch.equal(ours, get_flat(model)), clip
        assert loss == sum(total) / len(total)


def test_clip_norms_scales_each_client_alone():
    """Row k of every tensor is client k's gradient, clipped as clip_grad_norm_ clips it."""
    torch.manual_seed(0)
    grads = [torch.randn(3, 4, 2), torch.randn(3, 5)]
    clipped = [g.clone() for g in grads]
    clip_norms(clipped, 1.0)
    for k in range(3):
        params = [torch.zeros_like(g[k], requires_grad=True) for g in grads]
        for p, g in zip(params, grads, strict=True):
            p.grad = g[k].clone()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        for p, c in zip(params, clipped, strict=True):
            assert torch.equal(p.grad, c[k])


def test_a_partial_client_with_fedprox_is_autograd_on_the_proximal_objective():
    """sgd_epochs' first `steps` steps with mu: SGD on F(w) + mu/2 ||w - w_start||^2
    written out for autograd, over the same batches."""
    spec = ModelSpec("mlp", (6,), 3, hidden=(8,))
    torch.manual_seed(2)
    model = build_model(spec)
    x, y = torch.randn(13, 6), torch.randint(0, 3, (13,))
    start = get_flat(model)
    train = TrainConfig(**{**TRAIN.__dict__, "weight_decay": 0.0})
    loss = sgd_epochs(model, x, y, train, torch.Generator().manual_seed(1), steps=4, mu=0.5)
    ours = get_flat(model)
    set_flat(model, start)
    anchor = [p.detach().clone() for p in model.parameters()]

    def objective(out, labels):
        pull = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True))
        return torch.nn.functional.cross_entropy(out, labels) + 0.25 * pull

    gen = torch.Generator().manual_seed(1)
    order = torch.randperm(13, generator=gen)  # steps 1-3: epoch 1; step 4: epoch 2
    batches = [order[lo : lo + 5] for lo in range(0, 13, 5)] + [
        torch.randperm(13, generator=gen)[:5]
    ]
    opt = torch.optim.SGD(model.parameters(), lr=train.lr, momentum=train.momentum)
    losses = []
    for idx in batches:
        opt.zero_grad()
        objective(model(x[idx]), y[idx]).backward()
        losses.append(torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).item())
        opt.step()
    assert torch.allclose(ours, get_flat(model), atol=1e-6)
    assert len(losses) == 4 and abs(loss - sum(losses) / 4) < 1e-6  # the data loss only


def test_more_steps_than_the_epochs_hold_train_the_epochs():
    """steps caps the work, it never adds epochs (train_group caps it the same way)."""
    spec = ModelSpec("mlp", (6,), 3, hidden=(8,))
    torch.manual_seed(5)
    model = build_model(spec)
    x, y = torch.randn(9, 6), torch.randint(0, 3, (9,))
    start = get_flat(model)
    full = sgd_epochs(model, x, y, TRAIN, torch.Generator().manual_seed(3))
    trained = get_flat(model)
    set_flat(model, start)
    capped = sgd_epochs(model, x, y, TRAIN, torch.Generator().manual_seed(3), steps=100)
    assert capped == full and torch.equal(get_flat(model), trained)
