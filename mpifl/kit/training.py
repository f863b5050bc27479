"""Local training and scoring of one model on one client's data; flat parameter views."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from mpifl.config.sections import TrainConfig

LossFn = Callable[[object, torch.Tensor], torch.Tensor]  # (model output, labels) -> loss
Head = Callable[[object], torch.Tensor]  # model output -> the logits that predict


def cross_entropy(output: object, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of a model whose output is its logits."""
    return nn.functional.cross_entropy(output, y)


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


def sgd_epochs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    train: TrainConfig,
    generator: torch.Generator,
    loss_fn: LossFn = cross_entropy,
    clip: float | None = None,
) -> float:
    """Train `train.epochs` epochs of minibatch SGD with a fresh optimizer (clipping the
    gradient norm to `clip` if given); returns the mean batch loss."""
    optimizer = torch.optim.SGD(
        model.parameters(), lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay
    )
    model.train()
    total, batches = 0.0, 0
    for _ in range(train.epochs):
        order = torch.randperm(len(x), generator=generator)
        for lo in range(0, len(x), train.batch_size):
            idx = order[lo : lo + train.batch_size]
            optimizer.zero_grad(set_to_none=False)  # reuse the buffers within a client
            with precision(train):
                loss = loss_fn(model(_layout(x[idx], train)), y[idx])
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            total += loss.item()
            batches += 1
    model.zero_grad(set_to_none=True)  # a client's gradients are its own allocation
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


def client_accuracy(
    model: nn.Module, test: tuple[torch.Tensor, torch.Tensor], head: Head | None = None
) -> float:
    """Accuracy of a client's model on its own test split (NaN if the split is empty)."""
    n = len(test[0])
    return loss_and_correct(model, *test, head)[1] / n if n else float("nan")
