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

It imports only `mpifl.kit`, the seam between the engine and every method; the engine
does sampling, scheduling, emulation, collectives, checkpoints and records.
docs/plugins.md walks through it.
"""

from __future__ import annotations

import numpy as np
import torch

from mpifl import kit


class ClippedFedAvg(kit.Method):
    """FedAvg whose server averages the clients' updates clipped to norm clip_norm."""

    name = "clippedfedavg"
    fields = {
        "server_lr": kit.number(1.0, 0.0, low_open=True, doc="server learning rate eta_s"),
        "clip_norm": kit.number(1.0, 0.0, low_open=True, doc="largest update norm S"),
    }
    client_metrics = {
        "clip_scale": ("factor", "c_k = min(1, S / ||W_k - W||), 1 if not clipped"),
    }
    checkpointed = ("weights",)  # the server state a checkpoint saves

    def __init__(self, ctx: kit.MethodContext) -> None:
        super().__init__(ctx)
        model = kit.seeded_model(ctx.spec, self.config.run.seed)  # the same on every rank
        self.weights = kit.get_flat(model)
        self.model = kit.prepare_model(model, self.config.train)
        self.work = kit.WholeModel.of(kit.measure_cost(ctx.spec), self.config.train)
        # how a client trains: this model under cross-entropy, alone or in the planner's
        # batched groups (kit.ClientTrainer: the same result either way)
        self.trainer = kit.ClientTrainer(self.model, self.config.train, ctx.spec.input_shape)
        self.group_size = kit.group_size(self.config, [self.trainer])

    def workload(self, clients: np.ndarray, round_: int) -> kit.Workload:
        """Every client downloads, trains and uploads the whole model: its memory
        footprint, FLOPs and bytes, from which the engine decides who can train and
        what the virtual clock advances by."""
        return self.work.workload(self.ctx.data.n_train[clients])

    def accumulator_sizes(self) -> dict[str, int]:
        """sum n_k (W + c_k (W_k - W)), sum n_k and the clipped clients' sum n_k."""
        return {"model": self.weights.numel(), "weight": 1, "clipped": 1}

    # The client step, written once: what a client trains, where it starts, and what it
    # sends (the engine trains the clients in between).
    def client_trainer(self, variant: int) -> kit.ClientTrainer:
        return self.trainer

    def client_start(self, task: kit.ClientTask) -> torch.Tensor:
        """Every client starts from the global model."""
        return self.weights

    def client_finish(
        self,
        task: kit.ClientTask,
        start: torch.Tensor,
        trained: torch.Tensor,
        acc: kit.Accumulators,
    ) -> kit.Metrics:
        """Clip the update; stage n_k times the clipped model and n_k into "weight"
        (kit.stage_average), and n_k into "clipped" if the clip bit (else 0)."""
        update = trained - start
        norm = float(torch.linalg.vector_norm(update, dtype=torch.float64))
        scale = min(1.0, self.config.algorithm.clip_norm / norm) if norm > 0 else 1.0
        kit.stage_average(task, start + scale * update, acc)
        acc.add("clipped", torch.tensor([float(scale < 1)]), len(task.train[0]))
        return {"clip_scale": scale}

    def server_step(self, sums: dict[str, np.ndarray], plan: kit.RoundPlan) -> kit.Metrics:
        samples = sums["weight"][0]
        if samples <= 0:  # nobody trained: no step
            return {}
        lr = self.config.algorithm.server_lr
        self.weights = kit.average_update(self.weights, sums["model"], samples, lr)
        return {"clipped_fraction": float(sums["clipped"][0] / samples)}

    def evaluate(self) -> list[kit.EvalResult]:
        """The global model on the global test set, and on every client's own test split."""
        kit.set_flat(self.model, self.weights)
        results = [self.ctx.evaluator.evaluate("global", self.model, *self.ctx.global_test)]
        if self.config.run.eval_clients:
            results += self.ctx.evaluator.clients(
                self.ctx.data, lambda client, x, y: kit.loss_and_correct(self.model, x, y)
            )
        return results
