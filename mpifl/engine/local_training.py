"""Local training and evaluation of one model on one client's data; flat parameter views."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn


def get_flat(model: nn.Module) -> torch.Tensor:
    """All parameters as one flat float32 vector in logical (NCHW) order (a copy)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@torch.no_grad()
def set_flat(model: nn.Module, flat: torch.Tensor) -> None:
    """Copy a flat vector into the model's parameters (never aliasing `flat`)."""
    offset = 0
    for p in model.parameters():
        p.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def prepare_model(model: nn.Module, train: SimpleNamespace) -> nn.Module:
    """Apply the training layout: channels_last for models with convolutions if asked."""
    if train.channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
    return model


def _layout(x: torch.Tensor, train: SimpleNamespace) -> torch.Tensor:
    if train.channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def train_settings(train: SimpleNamespace, **changes: object) -> SimpleNamespace:
    """A copy of the `[train]` section with some settings changed (e.g. epochs, lr)."""
    return SimpleNamespace(**{**vars(train), **changes})


def sgd_epochs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    train: SimpleNamespace,
    generator: torch.Generator,
) -> float:
    """Train `train.epochs` epochs of minibatch SGD with a fresh optimizer; mean batch loss."""
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
            loss = nn.functional.cross_entropy(model(_layout(x[idx], train)), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item()
            batches += 1
    model.zero_grad(set_to_none=True)  # a client's gradients are its own allocation
    return total / max(batches, 1)


@torch.no_grad()
def loss_and_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
    """Summed cross-entropy and number of correct predictions on (x, y)."""
    if len(x) == 0:
        return 0.0, 0
    model.eval()
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y, reduction="sum")
    return float(loss), int((logits.argmax(1) == y).sum())
