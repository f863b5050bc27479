"""Server-side knowledge distillation, data-parallel over all ranks, rank-count independent.

Each batch of the proxy set is cut into fixed micro-chunks; chunk j is computed on rank
j mod R; every chunk's gradient is added exactly (fixed point) and one Allreduce per
batch gives the batch gradient, identical on every rank, so every rank takes the same
SGD step and holds the same student.
"""

from __future__ import annotations

import torch
from torch import nn

from mpifl.comm import Comm
from mpifl.kit.accumulate import Accumulators
from mpifl.kit.training import sgd_update

MICRO = 8  # samples per micro-chunk


def kd_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, t: float) -> torch.Tensor:
    """T^2 * KL(teacher || softmax(student / T)), summed over the samples."""
    log_student = nn.functional.log_softmax(student_logits / t, dim=1)
    return t * t * nn.functional.kl_div(log_student, teacher_probs, reduction="sum")


class Distiller:
    """Trains a student on (proxy inputs, teacher probabilities) with every rank's help."""

    def __init__(self, comm: Comm, frac_bits: int) -> None:
        self.comm, self.frac_bits = comm, frac_bits

    def distill(
        self,
        model: nn.Module,
        x: torch.Tensor,
        teacher: torch.Tensor,
        temperature: float,
        epochs: int,
        batch_size: int,
        lr: float,
        generator: torch.Generator,
        labels: torch.Tensor | None = None,
    ) -> float:
        """Minimise the KD loss (plus cross-entropy on `labels` if given) for `epochs` over
        (x, teacher); returns the mean loss per sample."""
        params = list(model.parameters())
        sizes = [p.numel() for p in params]
        n_params = sum(sizes)
        model.train()
        total, seen = 0.0, 0
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for lo in range(0, len(x), batch_size):
                batch = order[lo : lo + batch_size]
                acc = Accumulators({"grad": n_params, "loss": 1}, self.frac_bits, 1 / len(batch))
                for j, c in enumerate(range(0, len(batch), MICRO)):
                    if j % self.comm.size != self.comm.rank:
                        continue
                    idx = batch[c : c + MICRO]
                    model.zero_grad(set_to_none=False)
                    logits = model(x[idx])
                    loss = kd_loss(logits, teacher[idx], temperature)
                    if labels is not None:
                        loss = loss + nn.functional.cross_entropy(
                            logits, labels[idx], reduction="sum"
                        )
                    loss.backward()
                    acc.add("grad", [p.grad for p in params])
                    acc.add("loss", loss.detach().reshape(1))
                    acc.commit()
                sums = acc.reduce(self.comm)
                grad = torch.from_numpy(sums["grad"] / len(batch)).float()
                grads = [g.view_as(p) for g, p in zip(grad.split(sizes), params, strict=True)]
                sgd_update(params, grads, [], lr)
                total += float(sums["loss"][0])
                seen += len(batch)
        return total / max(seen, 1)
