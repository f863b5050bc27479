"""Local training and scoring of one model on one client's data; flat parameter views."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from mpifl.config.sections import TrainConfig

LossFn = Callable[[object, torch.Tensor], torch.Tensor]  # (model output, labels) -> loss
Head = Callable[[object], torch.Tensor]  # model output -> the logits that predict


def cross_entropy(output: object, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of a model whose output is its logits."""
    return nn.functional.cross_entropy(output, y)


def sample_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy (...) of logits (..., C) and labels (...): the piece of a
    method's per-sample loss (kit.batched.ClientTrainer)."""
    flat = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none"
    )
    return flat.view(y.shape)


def flatten(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """Tensors as one flat float32 vector in logical (NCHW) order (a copy)."""
    return torch.cat([p.detach().reshape(-1) for p in params])


@torch.no_grad()
def load_flat(params: Iterable[torch.Tensor], flat: torch.Tensor) -> None:
    """Copy a flat vector into the tensors, in order (never aliasing `flat`)."""
    offset = 0
    for p in params:
        p.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def get_flat(model: nn.Module) -> torch.Tensor:
    """All parameters of `model` as one flat vector (a copy)."""
    return flatten(model.parameters())


def set_flat(model: nn.Module, flat: torch.Tensor) -> None:
    """Copy a flat vector into the model's parameters."""
    load_flat(model.parameters(), flat)


def prepare_model(model: nn.Module, train: TrainConfig) -> nn.Module:
    """Apply the training layout: channels_last for models with convolutions if asked."""
    if train.channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
    return model


def _layout(x: torch.Tensor, train: TrainConfig) -> torch.Tensor:
    if train.channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def precision(train: TrainConfig) -> torch.autocast:
    """The forward pass's precision: bf16 autocast on CPU for `train.precision = bf16`
    (matrix products and convolutions in bf16; weights, gradients, updates fp32)."""
    return torch.autocast("cpu", torch.bfloat16, enabled=train.precision == "bf16")


@torch.inference_mode()
def sgd_update(
    weights: list[torch.Tensor],
    grads: list[torch.Tensor],
    momentum: list[torch.Tensor],
    lr: float,
    momentum_factor: float = 0.0,
    weight_decay: float = 0.0,
    mu: float = 0.0,
    anchor: list[torch.Tensor] | None = None,
    offset: list[torch.Tensor] | None = None,
) -> None:
    """torch.optim.SGD's step (weight decay, momentum without dampening), in place, on
    every tensor at once: the one SGD step of mpifl (clients, groups of clients, server
    distillation). `momentum` holds the buffers (zeros before the first step, which
    gives torch's first step exactly); a constant `offset` (SCAFFOLD's correction c - c_i),
    a proximal pull mu (w - anchor) (FedProx's mu/2 ||w - anchor||^2) and weight decay
    are added into `grads`, in that order. Element
    by element, so a client's numbers do not depend on what else the tensors hold (a
    group's other clients).

    torch has no public multi-tensor SGD without an optimizer object (whose per-call
    bookkeeping costs ~20% of a tiny model's step); `torch._foreach_*` are the kernels
    torch.optim.SGD(foreach=True) runs. tests/test_training.py checks them against
    torch.optim.SGD bit for bit, so a change of their behaviour fails there."""
    if offset:
        torch._foreach_add_(grads, offset)
    if mu:
        torch._foreach_add_(grads, torch._foreach_sub(weights, anchor), alpha=mu)
    if weight_decay:
        torch._foreach_add_(grads, weights, alpha=weight_decay)
    if momentum_factor:
        torch._foreach_mul_(momentum, momentum_factor)
        torch._foreach_add_(momentum, grads)
        grads = momentum
    torch._foreach_add_(weights, grads, alpha=-lr)


@torch.inference_mode()
def clip_norms(grads: list[torch.Tensor], clip: float) -> None:
    """Scale each client's gradients (row k of every (G, ...) tensor), in place, to norm
    at most `clip`, in torch's clip_grad_norm_ arithmetic (the norm of the tensors'
    norms)."""
    norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads], 1)
    scale = (clip / (torch.linalg.vector_norm(norms, dim=1) + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))


def sgd_epochs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    train: TrainConfig,
    generator: torch.Generator,
    loss_fn: LossFn = cross_entropy,
    clip: float | None = None,
    steps: int | None = None,
    mu: float = 0.0,
    offset: torch.Tensor | None = None,
) -> float:
    """Train `train.epochs` epochs of minibatch SGD through the module's own forward and
    autograd (clipping the gradient norm to `clip` if given; the first `steps` steps only
    if given; pulled towards the starting parameters with the proximal term
    mu/2 ||w - w_start||^2 if mu > 0; adding the flat `offset` (P,) to every gradient if
    given): a client alone, for models the batched trainer does not compute
    (kit.batched.ClientTrainer), and fine-tuning. Returns the mean batch loss (of
    `loss_fn`, without the proximal term)."""
    params = [p for p in model.parameters() if p.requires_grad]  # frozen ones stay
    momentum = [torch.zeros_like(p) for p in params] if train.momentum else []
    anchor = [p.detach().clone() for p in params] if mu else []
    offsets = [] if offset is None else [
        part.view_as(p)
        for part, p in zip(offset.split([p.numel() for p in model.parameters()]),
                           model.parameters(), strict=True)
        if p.requires_grad
    ]  # fmt: skip
    per_epoch = -(-len(x) // train.batch_size)
    total_steps = (
        per_epoch * train.epochs if steps is None else min(steps, per_epoch * train.epochs)
    )
    model.train()
    total, batches = 0.0, 0
    for _ in range(-(-total_steps // per_epoch) if per_epoch else train.epochs):
        order = torch.randperm(len(x), generator=generator)
        for lo in range(0, len(x), train.batch_size):
            if batches == total_steps:
                break
            idx = order[lo : lo + train.batch_size]
            with precision(train):
                loss = loss_fn(model(_layout(x[idx], train)), y[idx])
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            used = [k for k, g in enumerate(grads) if g is not None]  # as torch.optim skips
            used_grads = [grads[k].contiguous() for k in used]
            if clip is not None:
                clip_norms([g.unsqueeze(0) for g in used_grads], clip)
            buffers = [momentum[k] for k in used] if momentum else []
            weights = [params[k] for k in used]
            sgd_update(weights, used_grads, buffers, train.lr, train.momentum, train.weight_decay,
                       mu, [anchor[k] for k in used] if mu else None,
                       [offsets[k] for k in used] if offsets else None)  # fmt: skip
            total += loss.item()
            batches += 1
    return total / max(batches, 1)


@torch.no_grad()
def loss_and_correct(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, head: Head | None = None
) -> tuple[float, int]:
    """Summed cross-entropy and number of correct predictions on (x, y); `head` picks the
    predicting logits from the model's output (default: the output is the logits)."""
    if len(x) == 0:
        return 0.0, 0
    model.eval()
    logits = model(x) if head is None else head(model(x))
    loss = nn.functional.cross_entropy(logits, y, reduction="sum")
    return float(loss), int((logits.argmax(1) == y).sum())


@torch.no_grad()
def client_accuracies(
    model: nn.Module, test: tuple[torch.Tensor, torch.Tensor], heads: Sequence[Head | None]
) -> list[float]:
    """Accuracy of a client's model on its own test split, for each of `heads` (None: the
    output is the logits), from one forward pass; NaN if the split is empty."""
    x, y = test
    if len(x) == 0:
        return [float("nan")] * len(heads)
    model.eval()
    out = model(x)
    return [int(((out if h is None else h(out)).argmax(1) == y).sum()) / len(x) for h in heads]
