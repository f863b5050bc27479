"""Analytic training footprint against measured memory, per architecture and width.

For each model, a fresh process-level measurement: RSS growth while a new model is
built and trained for a few SGD steps at batch size B (glibc's mmap threshold pinned so
that freed memory leaves RSS). Prints analytic bytes, measured bytes and the error.

    python -m bench.footprint
"""

from __future__ import annotations

import argparse
import gc

import torch

from mpifl.engine.allocator import malloc_thresholds, set_malloc_thresholds
from mpifl.engine.throttle import MemoryProbe
from mpifl.models import ModelSpec, build_model, measure_cost

MODELS = {
    "mlp 256x256 (digits)": ModelSpec("mlp", (1, 8, 8), 10, hidden=(256, 256)),
    "cnn digits": ModelSpec("cnn", (1, 8, 8), 10, channels=(16, 32), fc=64, norm="group"),
    "cnn W1 (CIFAR-shaped)": ModelSpec("cnn", (3, 32, 32), 10, channels=(32, 64), kernel=5, fc=512),
}
WIDTHS = (1.0, 0.5, 0.25)
BATCH = 32


def measured(spec: ModelSpec, momentum: bool) -> int:
    x = torch.randn(BATCH, *spec.input_shape)
    y = torch.randint(0, spec.n_classes, (BATCH,))
    gc.collect()
    with MemoryProbe() as probe:
        model = build_model(spec)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9 if momentum else 0.0)
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    del model, opt
    return probe.growth


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(1)
    set_malloc_thresholds(*malloc_thresholds("measured", keeps_states=False))
    for spec in MODELS.values():  # warm-up: first-use allocations of torch's kernels
        measured(spec, True)
    print(f"Training footprint at batch {BATCH}, SGD with momentum: analytic vs measured RSS")
    print(
        f"  {'model':<24} {'width':>5} {'params':>9} {'analytic':>10} {'measured':>10} {'error':>7}"
    )
    for name, spec in MODELS.items():
        for width in WIDTHS:
            s = spec.at_width(width)
            cost = measure_cost(s)
            analytic = cost.footprint(BATCH, momentum=True)
            real = min(measured(s, True) for _ in range(3))
            error = (analytic - real) / real if real else float("nan")
            print(f"  {name:<24} {width:>5} {cost.params:>9} {analytic / 1024:>8.0f}Ki "
                  f"{real / 1024:>8.0f}Ki {error:>+7.0%}")  # fmt: skip


if __name__ == "__main__":
    main()
