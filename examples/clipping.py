"""A method plugin: FedAvg with clipped client updates, the clipping of DP-FedAvg (McMahan,
Ramage, Talwar and Zhang 2018) without its noise.

Clients train the global model as in FedAvg. Each client's update is scaled down to L2
norm at most S before the sample-weighted average, so that no single client can move
the global model by more than S:

    c_k = min(1, S / ||W_k - W||)
    W <- W + eta_s * sum_k n_k c_k (W_k - W) / sum_k n_k

    [algorithm]
    name = "examples.clipping:ClippedFedAvg"
    server_lr = 1.0
    clip_norm = 1.0

It changes the method `mpifl new method` writes (mpifl/templates/method.py: FedAvg
written with `mpifl.kit` alone, the seam between the engine and every method) in its
client step and its server step, as a method of your own would; the engine does
sampling, scheduling, emulation, collectives, checkpoints and records.
docs/plugins.md walks through both.
"""

from __future__ import annotations

import numpy as np
import torch

from mpifl import kit
from mpifl.kit import Accumulators, ClientTask, Metrics
from mpifl.templates.method import TemplateMethod


class ClippedFedAvg(TemplateMethod):
    """FedAvg whose server averages the clients' updates clipped to norm clip_norm."""

    name = "clippedfedavg"
    fields = {
        **TemplateMethod.fields,  # server_lr
        "clip_norm": kit.number(1.0, 0.0, low_open=True, doc="largest update norm S"),
    }
    client_metrics = {
        "clip_scale": ("factor", "c_k = min(1, S / ||W_k - W||), 1 if not clipped"),
    }

    def accumulator_sizes(self) -> dict[str, int]:
        """FedAvg's sums, with n (W + c_k (W_k - W)) in "model", and the clipped clients'
        sum n_k."""
        return {**super().accumulator_sizes(), "clipped": 1}

    def client_finish(
        self, task: ClientTask, start: torch.Tensor, trained: torch.Tensor, acc: Accumulators
    ) -> Metrics:
        """Clip the update; stage n_k times the clipped model and n_k into "weight"
        (kit.stage_average), and n_k into "clipped" if the clip bit (else 0)."""
        update = trained - start
        norm = float(torch.linalg.vector_norm(update, dtype=torch.float64))
        scale = min(1.0, self.config.algorithm.clip_norm / norm) if norm > 0 else 1.0
        kit.stage_average(task, start + scale * update, acc)
        acc.add("clipped", torch.tensor([float(scale < 1)]), len(task.train[0]))
        return {"clip_scale": scale}

    def server_step(self, sums: dict[str, np.ndarray], plan: kit.RoundPlan) -> Metrics:
        """FedAvg's step on the clipped models, and the share of samples clipped."""
        super().server_step(sums, plan)
        samples = sums["weight"][0]
        return {"clipped_fraction": float(sums["clipped"][0] / samples)} if samples > 0 else {}
