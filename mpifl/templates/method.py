"""A method plugin written by `mpifl new method`: plain FedAvg, to change into yours.

Run it with the job file written beside it (`algorithm.name = "MODULE:CLASS"`):

    mpiexec -n 2 mpifl run JOB.toml

As written it gives, bit for bit, the built-in `fedavg` (server_lr = 1). A method imports
only `mpifl.kit`; the engine does sampling, device emulation, scheduling on ranks, the
exact reduction over ranks, checkpoints and the result file. docs/plugins.md ("Writing a
method") explains each hook; examples/clipping.py is a worked change of this one.
"""

from __future__ import annotations

import numpy as np
import torch

from mpifl import kit


class TemplateMethod(kit.Method):
    """Clients train the global model; the server takes the sample-weighted average."""

    name = "templatemethod"
    # the method's own [algorithm] keys, validated like every built-in key
    fields = {
        "server_lr": kit.number(1.0, 0.0, low_open=True, doc="server learning rate eta_s"),
    }
    # per-client figures that client_finish returns, name -> (unit, description)
    client_metrics: dict[str, tuple[str, str]] = {}
    # the attributes that are the server state: checkpoints save them, --resume restores
    checkpointed = ("weights",)

    def __init__(self, ctx: kit.MethodContext) -> None:
        super().__init__(ctx)
        model = kit.seeded_model(ctx.spec, self.config.run.seed)  # alike on every rank
        self.weights = kit.get_flat(model)  # the global model, flat
        self.model = kit.prepare_model(model, self.config.train)
        # memory, FLOPs and bytes of a client that trains the whole model
        self.work = kit.WholeModel.of(kit.measure_cost(ctx.spec), self.config.train)
        # how clients train (cross-entropy on this model; a `loss=`, `clip=` or
        # `proximal=` argument changes it); one at a time or in groups, the same result
        self.trainer = kit.ClientTrainer(self.model, self.config.train, ctx.spec.input_shape)
        self.group_size = kit.group_size(self.config, [self.trainer])

    def workload(self, clients: np.ndarray, round_: int) -> kit.Workload:
        """What each sampled client would do; the planner decides who can, and when."""
        return self.work.workload(self.ctx.data.n_train[clients])

    def accumulator_sizes(self) -> dict[str, int]:
        """The flat sums clients add into: sum_k n_k W_k and sum_k n_k."""
        return {"model": self.weights.numel(), "weight": 1}

    def client_trainer(self, variant: int) -> kit.ClientTrainer:
        return self.trainer

    def client_start(self, task: kit.ClientTask) -> torch.Tensor:
        """The parameters a client starts from (the same tensor for clients alike)."""
        return self.weights

    def client_finish(
        self,
        task: kit.ClientTask,
        start: torch.Tensor,
        trained: torch.Tensor,
        acc: kit.Accumulators,
    ) -> kit.Metrics:
        """What a trained client sends: n_k W_k into "model", n_k into "weight"."""
        kit.stage_average(task, trained, acc)
        return {}

    def server_step(self, sums: dict[str, np.ndarray], plan: kit.RoundPlan) -> kit.Metrics:
        """The exact sums over every rank (the same everywhere): move the global model."""
        if sums["weight"][0] <= 0:  # nobody trained this round
            return {}
        lr = self.config.algorithm.server_lr
        self.weights = kit.average_update(self.weights, sums["model"], sums["weight"][0], lr)
        return {}

    def evaluate(self) -> list[kit.EvalResult]:
        """Collective: the global model on the global test set and each client's split."""
        kit.set_flat(self.model, self.weights)
        results = [self.ctx.evaluator.evaluate("global", self.model, *self.ctx.global_test)]
        if self.config.run.eval_clients:
            results += self.ctx.evaluator.clients(
                self.ctx.data, lambda client, x, y: kit.loss_and_correct(self.model, x, y)
            )
        return results
