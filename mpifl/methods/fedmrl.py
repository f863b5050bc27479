"""FedMRL (docs/algorithms.md section 5; Yi et al., NeurIPS 2024): a shared small global model G
plus each client's heterogeneous local model F_k and projector P_k, Matryoshka nesting.

Loss = m1 CE(G_hd(R'[:, :d1]), y) + m2 sum_{d in mrl_dims[1:]} CE(F_hd,d(R'[:, :d]), y),
with R' = P_k(concat(G_ex(x), F_k_ex(x))). G, F_k and P_k train jointly (SGD from [train],
gradient-norm clip); only G is uploaded and averaged (weights n_k). F_k, P_k and the
local headers are client state in the bounded store. Client k gets local variant
k mod len(local_fc) (with fit_memory, the largest that fits if that one does not).
Accuracy: the local header on the full representation, on each client's own test split,
averaged over clients that hold a model.

Unlike the official code: every client's uploaded G is its own copy (no aliasing of
state dicts), every client gets a fresh optimizer (no shared momentum), and d1 < d2 is
enforced unless asked for (d1 = d2 is the no-nesting ablation).
"""

from __future__ import annotations

import numpy as np
import torch

from mpifl.kit import ConfigError, MRLModel, algorithms, cost_of, seeded_init
from mpifl.kit.accumulate import Accumulators
from mpifl.kit.aggregate import average_update
from mpifl.kit.batched import ClientTrainer, group_size
from mpifl.kit.evaluate import EvalResult
from mpifl.kit.method import ClientTask, Method, MethodContext, Metrics
from mpifl.kit.training import (
    flatten,
    get_flat,
    load_flat,
    loss_and_correct,
    prepare_model,
    sample_cross_entropy,
)
from mpifl.kit.workload import RoundPlan, Workload, footprint


def mrl_loss(
    heads: list[torch.Tensor], y: torch.Tensor, m1: float = 1.0, m2: float = 1.0
) -> torch.Tensor:
    """Per sample: m1 CE(global header) + m2 sum of CE(local headers)."""
    local = sum(sample_cross_entropy(h, y) for h in heads[1:])
    return m1 * sample_cross_entropy(heads[0], y) + m2 * local


def personal_head(heads: list[torch.Tensor]) -> torch.Tensor:
    """The logits a client predicts with: the local header on the full representation."""
    return heads[-1]


def global_head(heads: list[torch.Tensor]) -> torch.Tensor:
    """The logits of G alone: its header on the representation's first d1 numbers."""
    return heads[0]


class FedMRL(Method):
    """Shared G aggregated; personal F_k, P_k kept as client state."""

    name = "fedmrl"
    plugin_models = False  # its model variants are built from mlp / cnn layers
    stateful = True
    checkpointed = ("weights",)
    fields = algorithms.FEDMRL
    client_metrics = {
        "global_accuracy": (
            "fraction",
            "the header of the global model G (the first output of the client's trained "
            "model) on the client's own test split; NaN if none",
        ),
    }

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        alg = self.config.algorithm
        if ctx.spec.arch != "cnn" and ctx.spec.width != 1.0:  # (it would change nothing)
            raise ConfigError(
                "model.width", ctx.spec.width, "must be 1 for fedmrl on an MLP: set its "
                "sizes with algorithm.global_fc, local_fc and mrl_dims"
            )  # fmt: skip
        self.variants = [
            prepare_model(MRLModel(ctx.spec, alg.global_fc, fc, alg.mrl_dims), self.config.train)
            for fc in alg.local_fc
        ]
        with seeded_init(self.config.run.seed, 1):
            model = MRLModel(ctx.spec, alg.global_fc, alg.local_fc[0], alg.mrl_dims)
        self.weights = flatten(model.global_parameters())
        self.costs = [self._cost(m) for m in self.variants]
        self.g_bytes = 4 * self.weights.numel()
        self.variant_of = self._assign(ctx.all_clients, alg.fit_memory)
        for m in self.variants:  # a flat vector is G, then the personal part
            order = [*m.global_parameters(), *m.local_parameters()]
            assert [id(p) for p in m.parameters()] == [id(p) for p in order]
        loss = lambda out, y: mrl_loss(out, y, alg.m1, alg.m2)  # noqa: E731
        self.trainers = [
            ClientTrainer(
                m,
                self.config.train,
                ctx.spec.input_shape,
                loss,
                alg.clip,
                personal_head,
                {"global_accuracy": global_head},
            )  # fmt: skip
            for m in self.variants
        ]
        self.group_size = group_size(self.config, self.trainers)

    def _cost(self, model: MRLModel) -> tuple[int, float]:
        """(footprint at the batch size, training FLOPs per sample) of a variant."""
        train = self.config.train
        cost = cost_of(model, self.ctx.spec.input_shape, lambda out, y: mrl_loss(out, y).mean())
        return footprint(cost, train), cost.train_flops_per_sample

    def _assign(self, clients: np.ndarray, fit_memory: bool) -> np.ndarray:
        """Each client's local variant: k mod len(local_fc), as the paper assigns them;
        with `fit_memory`, one that does not fit the client's memory gives way to the
        largest variant that does (none fitting: it stays, and the client is infeasible)."""
        assigned = clients % len(self.variants)
        if not fit_memory:
            return assigned
        sizes = np.array([memory for memory, _ in self.costs])
        memory = self.ctx.fleet.profiles["memory"][clients]
        for i in np.flatnonzero(sizes[assigned] > memory):
            fits = np.flatnonzero(sizes <= memory[i])
            if len(fits):
                assigned[i] = fits[np.argmax(sizes[fits])]
        return assigned

    def variant(self, client: int) -> int:
        """The local model variant of a client."""
        return int(self.variant_of[client])

    def workload(self, clients: np.ndarray, round_: int) -> Workload:
        var = self.variant_of[clients]
        n = self.ctx.data.n_train[clients]
        memory = np.array([self.costs[v][0] for v in var], dtype=np.int64)
        flops = np.array([self.costs[v][1] for v in var]) * n * self.config.train.epochs
        nbytes = np.full(len(clients), self.g_bytes, dtype=np.int64)
        return Workload(memory, flops, nbytes, nbytes, np.ones(len(clients), np.float32),
                        np.zeros(len(clients), np.float32), var.astype(np.int16))  # fmt: skip

    def accumulator_sizes(self) -> dict[str, int]:
        return {"global": self.weights.numel(), "weight": 1}

    def _model_for(self, client: int) -> MRLModel:
        """The client's variant loaded with G and its personal state (fresh if none)."""
        model = self.variants[self.variant(client)]
        load_flat(model.global_parameters(), self.weights)
        state = self.ctx.state.get(client)
        if state is None:  # a client's first round: its personal part, seeded by its id
            with seeded_init(self.config.run.seed, 1000 + client):
                for module in model.local_modules():
                    if hasattr(module, "reset_parameters"):
                        module.reset_parameters()
        else:
            load_flat(model.local_parameters(), torch.from_numpy(state["local"]))
        return model

    def client_trainer(self, variant: int) -> ClientTrainer:
        return self.trainers[variant]

    def client_start(self, task: ClientTask) -> torch.Tensor:
        """G, then the client's personal part."""
        return get_flat(self._model_for(task.client))

    def client_finish(
        self, task: ClientTask, start: torch.Tensor, trained: torch.Tensor, acc: Accumulators
    ) -> Metrics:
        """Keep F_k, P_k and the local headers (if finite); stage n G_k and n (the
        trainer measures `global_accuracy`)."""
        n_global, n = self.weights.numel(), len(task.train[0])
        if torch.isfinite(trained[n_global:]).all():
            self.ctx.state.put(task.client, {"local": trained[n_global:].clone().numpy()})
        acc.add("global", trained[:n_global], n)
        acc.add("weight", torch.ones(1), n)
        return {}

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> Metrics:
        self.weights = average_update(self.weights, sums["global"], sums["weight"][0])
        return {}

    def evaluate(self) -> list[EvalResult]:
        """FedMRL has no global model that predicts alone: each client's own test split,
        scored by its personal model (G with its own F_k and P_k, the full representation);
        a client that has not trained yet uses its freshly initialised personal part.
        Nothing with run.eval_clients = false."""
        if not self.config.run.eval_clients:
            return []

        def score(client: int, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
            return loss_and_correct(self._model_for(client), x, y, personal_head)

        return self.ctx.evaluator.clients(self.ctx.data, score)
