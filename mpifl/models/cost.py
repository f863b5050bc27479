"""Per-architecture training costs: FLOPs per sample and memory footprint, measured once.

FLOPs are counted by torch's FlopCounterMode over one forward + backward pass of a batch.
The footprint is analytic: parameters + gradients + optimizer state + the activations
autograd keeps for a batch of B (each module's output, measured by forward hooks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mpifl.models.build import build_model
from mpifl.models.spec import ModelSpec


@dataclass(frozen=True)
class ModelCost:
    """Training cost of one architecture at one width."""

    params: int
    param_bytes: int
    train_flops_per_sample: float
    activation_bytes_per_sample: int

    def footprint(self, batch_size: int, momentum: bool) -> int:
        """Training memory in bytes: weights, grads, momentum buffer, activations, input."""
        states = 3 if momentum else 2
        return self.param_bytes * states + self.activation_bytes_per_sample * batch_size


@lru_cache(maxsize=256)
def measure_cost(spec: ModelSpec) -> ModelCost:
    """Measure `spec`'s training cost (cached per spec for the life of the process)."""
    return cost_of(
        build_model(spec), spec.input_shape, lambda out, y: nn.functional.cross_entropy(out, y)
    )


def cost_of(
    model: nn.Module,
    input_shape: tuple[int, ...],
    loss_fn: Callable[[object, torch.Tensor], torch.Tensor],
) -> ModelCost:
    """Measure any model's training cost; `loss_fn(model output, labels)` gives the loss."""
    batch = 4
    x = torch.zeros((batch, *input_shape))
    y = torch.zeros(batch, dtype=torch.long)
    activations = activation_bytes(model, x) // batch
    counter = FlopCounterMode(display=False)
    with counter:
        loss_fn(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return ModelCost(
        params=sum(p.numel() for p in model.parameters()),
        param_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        train_flops_per_sample=counter.get_total_flops() / batch,
        activation_bytes_per_sample=activations,
    )


def activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the input and of every leaf module's output for the batch x."""
    total = x.numel() * x.element_size()
    sizes: list[int] = []

    def hook(_module: nn.Module, _inp: object, out: torch.Tensor) -> None:
        sizes.append(out.numel() * out.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total + sum(sizes)
