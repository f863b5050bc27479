"""W1's bare reference: plain mpi4py + torch, no framework (docs/benchmarks.md, W1).

The physical floor: each rank trains its share of the sampled clients with one reused
model, sums n_k * W_k into a flat buffer, and one Allreduce per round forms the average.
Prints one JSON line on rank 0: {"round_seconds": [...]}.

    mpiexec -n 2 python bench/w1_bare.py --rounds 11
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn

from mpifl.arguments import at_least

CLIENTS, COHORT, SAMPLES, BATCH, LR = 1000, 50, 50, 10, 0.1


def model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4096, 512), nn.ReLU(), nn.Linear(512, 10),
    )  # fmt: skip


def client_data(mu: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(k)
    y = rng.integers(0, 10, size=SAMPLES)
    x = mu[y] + np.float32(0.5) * rng.standard_normal((SAMPLES, 3, 32, 32), dtype=np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=at_least(1), default=11)
    p.add_argument("--cohort", type=at_least(1), default=COHORT)
    args = p.parse_args()
    if args.cohort > CLIENTS:
        p.error(f"argument --cohort: {args.cohort}: at most the {CLIENTS} clients")
    from mpi4py import MPI  # (after the arguments: MPI starts at import)

    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    mu = np.random.default_rng(0).standard_normal((10, 3, 32, 32)).astype(np.float32)
    torch.manual_seed(0)
    net = model()
    params = list(net.parameters())
    global_w = torch.nn.utils.parameters_to_vector(params).detach().clone()
    acc = torch.zeros_like(global_w)
    times = []
    for r in range(args.rounds):
        comm.Barrier()
        start = time.perf_counter()
        cohort = np.random.default_rng([1, r]).choice(CLIENTS, args.cohort, replace=False)
        acc.zero_()
        for k in cohort[rank::size]:
            x, y = client_data(mu, int(k))
            with torch.no_grad():
                torch.nn.utils.vector_to_parameters(global_w.clone(), params)
            opt = torch.optim.SGD(params, lr=LR)
            order = torch.randperm(SAMPLES, generator=torch.Generator().manual_seed(int(k)))
            for lo in range(0, SAMPLES, BATCH):
                idx = order[lo : lo + BATCH]
                opt.zero_grad()
                nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
                opt.step()
            acc.add_(torch.nn.utils.parameters_to_vector(params).detach(), alpha=SAMPLES)
        comm.Allreduce(MPI.IN_PLACE, acc.numpy(), op=MPI.SUM)
        global_w = acc / (SAMPLES * COHORT)
        times.append(time.perf_counter() - start)
    if rank == 0:
        print(json.dumps({"round_seconds": times}))


if __name__ == "__main__":
    main()
