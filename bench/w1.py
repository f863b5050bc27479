"""W1: cross-device FedAvg throughput, mpifl against the bare mpi4py + torch loop.

All variants run 2 ranks, 1 torch thread each, 1 warm-up round then 10 timed rounds,
alternating in the same invocation (`--repeats` times): the bare loop, mpifl with the
bare loop's memory layout (train.channels_last = false), mpifl with its defaults
(channels_last), and mpifl training in bf16 (train.precision = bf16).
Then the floor of those ratios: one SGD step of the W1 CNN on a batch of 10 with the
model and optimizer reused (no framework, no round), in each layout and precision.
mpifl runs with fleet emulation and per-client HDF5 records on (jobs/w1.toml); its last
round, which evaluates, is not timed. Prints medians and ratios to the bare loop.

    python -m bench.w1 [--ranks 2] [--repeats 3] [--smoke]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from bench.common import bare_w1, mpifl_run, tables, timed
from mpifl.arguments import at_least
from mpifl.models import ModelSpec, build_model

TIMED_ROUNDS = 10
DEFAULTS = "mpifl (defaults)"  # the smoke run's one variant (bf16: 8x slower without bf16 units)
VARIANTS = {
    "mpifl, NCHW layout": ("train.channels_last=false",),
    DEFAULTS: (),
    "mpifl, bf16": ("train.precision='bf16'",),
}


STEPS = {  # name -> (channels_last, bf16)
    "fp32, NCHW (the bare loop)": (False, False),
    "fp32, channels_last": (True, False),
    "bf16, channels_last": (True, True),
}


def step_seconds(channels_last: bool, bf16: bool, steps: int) -> float:
    """Median seconds of one SGD step of the W1 CNN on a batch of 10, 1 thread."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    spec = ModelSpec("cnn", (3, 32, 32), 10, channels=(32, 64), fc=512, kernel=5)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(spec).to(memory_format=layout)
    x = torch.randn(10, 3, 32, 32).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (10,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    times = []
    for _ in range(steps + 3):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=False)
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[3:]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=at_least(1), default=2)
    p.add_argument("--repeats", type=at_least(1), default=3)
    p.add_argument(
        "--smoke",
        action="store_true",
        help="one repeat of 3 rounds of 4 clients, mpifl's defaults only",
    )
    args = p.parse_args()
    timed_rounds, cohort = (1, 4) if args.smoke else (TIMED_ROUNDS, 50)
    steps = 5 if args.smoke else 60
    floor = {name: step_seconds(*how, steps) for name, how in STEPS.items()}
    repeats = 1 if args.smoke else args.repeats
    bare: list[float] = []
    ours: dict[str, list[float]] = {name: [] for name in VARIANTS}
    comm: dict[str, list[float]] = {name: [] for name in VARIANTS}
    variants = {DEFAULTS: VARIANTS[DEFAULTS]} if args.smoke else VARIANTS
    for _ in range(repeats):
        bare += list(timed(bare_w1(args.ranks, timed_rounds + 1, cohort)))
        for name, sets in variants.items():
            rounds = f"run.rounds={timed_rounds + 2}"
            path = mpifl_run(args.ranks, "jobs/w1.toml", rounds, f"round.cohort={cohort}", *sets)
            rounds, ranks = tables(path)
            ours[name] += list(timed(rounds["wall_time"], tail=1))
            comm[name] += list(timed(ranks["comm_time"][ranks["rank"] == 0], tail=1))
    b = float(np.median(bare))
    print(f"W1 ({args.ranks} ranks, {len(bare)} timed rounds per variant, medians)")
    print(f"  {'bare mpi4py + torch':<22} {b:.3f} s/round")
    for name in variants:
        m = float(np.median(ours[name]))
        print(
            f"  {name:<22} {m:.3f} s/round  ratio to bare {m / b:.3f}  "
            f"(rank 0 in collectives {np.median(comm[name]):.3f} s)"
        )
    print("  targets: mpifl fp32 / bare <= 0.9; mpifl bf16 / bare <= 0.45")
    first = next(iter(floor.values()))
    print(f"  floor, one SGD step with the model reused (median of {steps}):")
    for name, seconds in floor.items():
        print(f"    {name:<28} {seconds * 1e3:6.2f} ms  ratio {seconds / first:.3f}")


if __name__ == "__main__":
    main()
