"""Per-architecture training costs: FLOPs per sample and memory footprint, measured once.

FLOPs are counted the way torch's FlopCounterMode counts them (multiplications x 2 of
every matrix product and convolution, nothing else). For the built-in models, forward
hooks on the Linear and Conv2d layers count them: a training step is the forward
product, the weight gradient, and the input gradient unless the layer's input needs none
(the first layer). This avoids FlopCounterMode's compile machinery at start-up;
tests/test_models.py checks that the counts are the same. A user's model (a plugin) may
multiply matrices anywhere, so FlopCounterMode counts its training step. The footprint
is analytic: parameters + gradients + optimizer state + the activations autograd keeps
for a batch of B (each module's output).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from mpifl.models.build import build_model
from mpifl.models.spec import ModelSpec
from mpifl.plugins import is_plugin


@dataclass(frozen=True)
class ModelCost:
    """Training cost of one architecture at one width."""

    params: int
    param_bytes: int
    train_flops_per_sample: float
    activation_bytes_per_sample: int

    def footprint(self, batch_size: int, momentum: bool, bf16: bool = False) -> int:
        """Training memory in bytes: weights, grads, momentum buffer, activations, input;
        with `bf16` (autocast) a bf16 copy of the weights and half-size activations."""
        states = 3 if momentum else 2
        if bf16:
            activations = self.activation_bytes_per_sample * batch_size // 2
            return self.param_bytes * states + self.param_bytes // 2 + activations
        return self.param_bytes * states + self.activation_bytes_per_sample * batch_size


@lru_cache(maxsize=256)
def measure_cost(spec: ModelSpec) -> ModelCost:
    """Measure `spec`'s training cost (cached per spec for the life of the process)."""
    return cost_of(
        build_model(spec),
        spec.input_shape,
        lambda out, y: nn.functional.cross_entropy(out, y),
        every_product=is_plugin(spec.arch),
    )


def cost_of(
    model: nn.Module,
    input_shape: tuple[int, ...],
    loss_fn: Callable[[object, torch.Tensor], torch.Tensor],
    every_product: bool = False,
) -> ModelCost:
    """Measure any model's training cost; `loss_fn(model output, labels)` gives the loss
    (it must not multiply matrices itself). With `every_product`, FlopCounterMode counts
    the FLOPs (any model); else hooks on its Linear and Conv2d layers do."""
    batch = 4
    x = torch.zeros((batch, *input_shape))
    y = torch.zeros(batch, dtype=torch.long)
    activations, flops = _forward_costs(model, x, loss_fn, y)
    if every_product:
        flops = _counted_flops(model, x, loss_fn, y)
    return ModelCost(
        params=sum(p.numel() for p in model.parameters()),
        param_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        train_flops_per_sample=flops / batch,
        activation_bytes_per_sample=activations // batch,
    )


def _counted_flops(
    model: nn.Module,
    x: torch.Tensor,
    loss_fn: Callable[[object, torch.Tensor], torch.Tensor],
    y: torch.Tensor,
) -> int:
    """Training FLOPs of one step on the batch x, as FlopCounterMode counts them."""
    from torch.utils.flop_counter import FlopCounterMode  # slow to import: plugins only

    with FlopCounterMode(display=False) as counter:
        loss_fn(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def product_flops(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    """FLOPs (2 x multiplications) of a Linear or Conv2d layer's forward product."""
    if isinstance(module, nn.Conv2d):
        return 2 * out.numel() * module.weight[0].numel()  # (C_in / groups) k_h k_w
    return 2 * out.numel() * module.in_features


def _forward_costs(
    model: nn.Module,
    x: torch.Tensor,
    loss_fn: Callable[[object, torch.Tensor], torch.Tensor],
    y: torch.Tensor,
) -> tuple[int, int]:
    """(bytes of the input and of every leaf module's output, training FLOPs) of one
    training step on the batch x."""
    sizes: list[int] = [x.numel() * x.element_size()]
    flops: list[int] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        sizes.append(out.numel() * out.element_size())
        if isinstance(module, nn.Linear | nn.Conv2d):
            forward = product_flops(module, inputs[0], out)
            flops.append(forward * (3 if inputs[0].requires_grad else 2))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        loss_fn(model(x), y).backward()
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
    return sum(sizes), sum(flops)
