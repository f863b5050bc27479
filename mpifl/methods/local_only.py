"""Local-only training, a per-client baseline: every client trains its own model on its
own data and never communicates. It is FedAvg's model, initial weights and local training
without the aggregation: a client's model persists across rounds in the client-state
store, and a client is scored on its own test split with its own model (its initial one
if it has not trained yet).

With `tiers` other than [1], each client trains the widest of those widths of the
configured model that fits its memory and the deadline (chosen once, for the run), so a
device that cannot hold the configured model trains the largest one it can instead of
being scored with an untrained model. Every tier starts from its own seeded weights."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mpifl.kit import ConfigError, algorithms, seeded_model
from mpifl.kit.accumulate import Accumulators
from mpifl.kit.batched import ClientTrainer, group_size
from mpifl.kit.evaluate import EvalResult
from mpifl.kit.method import ClientTask, MethodContext, Metrics
from mpifl.kit.tiers import build_tiers, choose_tiers
from mpifl.kit.training import get_flat, loss_and_correct, set_flat
from mpifl.kit.workload import RoundPlan, WholeModel, Workload
from mpifl.methods.fedavg import FedAvg


@dataclass
class OwnModel:
    """One model a client may hold: the module it trains in, its trainer, its work and
    width (relative to the configured model)."""

    model: nn.Module
    trainer: ClientTrainer
    work: WholeModel
    width: float = 1.0


class LocalOnly(FedAvg):
    """Each client alone: no aggregation, no server model, no traffic."""

    name = "local"
    fields = algorithms.LOCAL
    stateful = True

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        alg = self.config.algorithm
        self.own: list[OwnModel] = [OwnModel(self.model, self.trainer, self.work)]
        self.initial = [self.weights]
        self.tier_of: np.ndarray | None = None
        if alg.tiers != [1.0]:
            if alg.server_init:
                raise ConfigError("algorithm.server_init", alg.server_init,
                                  "must be empty when algorithm.tiers is not [1]")  # fmt: skip
            tiers = build_tiers(ctx, alg.tiers, update_norm=True)
            self.own = [OwnModel(t.model, t.trainer, WholeModel.of(t.cost, self.config.train),
                                 t.width) for t in tiers]  # fmt: skip
            self.initial = [
                self.weights if t.width == 1.0 else
                get_flat(seeded_model(ctx.spec.at_width(ctx.spec.width * t.width),
                                      self.config.run.seed))
                for t in tiers
            ]  # fmt: skip
            nothing = np.zeros(len(ctx.all_clients), dtype=bool)  # no download either
            self.tier_of = choose_tiers(ctx, tiers, ctx.all_clients, nothing, upload=False)
        self.group_size = group_size(self.config, [own.trainer for own in self.own])

    def variants_of(self, clients: np.ndarray) -> np.ndarray:
        """The index of the model each of `clients` holds."""
        if self.tier_of is None:
            return np.zeros(len(clients), dtype=np.int64)
        return self.tier_of[clients]

    def own_of(self, client: int) -> int:
        """The index of the model one client holds."""
        return int(self.variants_of(np.array([client]))[0])

    def initial_weights(self, client: int) -> torch.Tensor:
        """A client's model before it trains."""
        return self.initial[self.own_of(client)]

    def workload(self, clients: np.ndarray, round_: int) -> Workload:
        """Each client trains its own model; nothing is sent."""
        variant = self.variants_of(clients)
        n = self.ctx.data.n_train[clients]
        work = Workload.idle(len(clients))
        for v, own in enumerate(self.own):
            mine = variant == v
            part = own.work.workload(n[mine])
            work.footprint[mine], work.train_flops[mine] = part.footprint, part.train_flops
            work.width[mine] = own.width
        work.variant[:] = variant
        return work

    def accumulator_sizes(self) -> dict[str, int]:
        return {}

    def client_trainer(self, variant: int) -> ClientTrainer:
        return self.own[variant].trainer

    def client_start(self, task: ClientTask) -> torch.Tensor:
        return self._weights_of(task.client)

    def _weights_of(self, client: int) -> torch.Tensor:
        """The client's own model (the initial one before it trains)."""
        state = self.ctx.state.get(client)
        return self.initial_weights(client) if state is None else torch.from_numpy(state["weights"])

    def client_finish(
        self, task: ClientTask, start: torch.Tensor, trained: torch.Tensor, acc: Accumulators
    ) -> Metrics:
        """Keep the trained model as the client's own (a non-finite one is not kept); its
        update norm (measured by the trainer) is the change of the client's own model."""
        if torch.isfinite(trained).all():
            self.ctx.state.put(task.client, {"weights": trained.clone().numpy()})
        return {}

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> Metrics:
        """Nothing: there is no server model."""
        return {}

    def evaluate(self) -> list[EvalResult]:
        """Each client's own test split, scored by its own model."""

        def score(client: int, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
            model = self.own[self.own_of(client)].model
            set_flat(model, self._weights_of(client))
            return loss_and_correct(model, x, y)

        return self.ctx.evaluator.clients(self.ctx.data, score)
