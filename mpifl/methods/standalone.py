"""FedMRL's Standalone baseline (Yi et al., NeurIPS 2024, the local-only row of its
tables): each client trains its own heterogeneous model alone, never communicating.

A client's model is FedMRL's personal extractor F_k (variant k mod len(local_fc), the
same family FedMRL gives it) followed by a header Linear(dim, classes) on its
representation; it starts from weights seeded by the client's id, persists across rounds
in the client-state store and is scored on the client's own test split. Ours: the header
on F_k alone (the paper does not describe its Standalone models beyond "local training")
and FedMRL's gradient-norm clip."""

from __future__ import annotations

import numpy as np
import torch

from mpifl.kit import algorithms, cost_of, seeded_init, standalone_model
from mpifl.kit.batched import ClientTrainer, group_size
from mpifl.kit.method import Method, MethodContext
from mpifl.kit.training import get_flat, prepare_model, sample_cross_entropy
from mpifl.kit.workload import WholeModel
from mpifl.methods.local_only import LocalOnly, OwnModel


class Standalone(LocalOnly):
    """Each client alone on its own FedMRL local model variant."""

    name = "standalone"
    plugin_models = False  # its models are built from mlp / cnn layers
    checkpointed = ()  # no server state: every client's model is client state
    fields = algorithms.STANDALONE

    def __init__(self, ctx: MethodContext) -> None:
        Method.__init__(self, ctx)  # not FedAvg's: no model of [model] is trained
        alg, train = self.config.algorithm, self.config.train
        self.own = []
        for fc in alg.local_fc:
            model = prepare_model(standalone_model(ctx.spec, fc, alg.dim), train)
            cost = cost_of(
                model, ctx.spec.input_shape, lambda out, y: sample_cross_entropy(out, y).mean()
            )
            trainer = ClientTrainer(
                model, train, ctx.spec.input_shape, clip=alg.clip, update_norm=True
            )
            self.own.append(OwnModel(model, trainer, WholeModel.of(cost, train)))
        self.group_size = group_size(self.config, [own.trainer for own in self.own])

    def variants_of(self, clients: np.ndarray) -> np.ndarray:
        """Client k holds variant k mod len(local_fc), as in FedMRL."""
        return np.asarray(clients) % len(self.own)

    def initial_weights(self, client: int) -> torch.Tensor:
        """The client's model before it trains, seeded by its id."""
        model = self.own[self.own_of(client)].model
        with seeded_init(self.config.run.seed, 1000 + client):
            for module in model.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        return get_flat(model)
