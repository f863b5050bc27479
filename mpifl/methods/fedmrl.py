"""FedMRL (docs/algorithms.md section 5; Yi et al., NeurIPS 2024): a shared small global model G
plus each client's heterogeneous local model F_k and projector P_k, Matryoshka nesting.

Loss = m1 CE(G_hd(R'[:, :d1]), y) + m2 sum_{d in mrl_dims[1:]} CE(F_hd,d(R'[:, :d]), y),
with R' = P_k(concat(G_ex(x), F_k_ex(x))). G, F_k and P_k train jointly (SGD from [train],
gradient-norm clip); only G is uploaded and averaged (weights n_k). F_k, P_k and the
local headers are client state in the bounded store. Client k gets local variant
k mod len(local_fc). Accuracy: the local header on the full representation, on each
client's own test split, averaged over clients that hold a model.

Unlike the official code: every client's uploaded G is its own copy (no aliasing of
state dicts), every client gets a fresh optimizer (no shared momentum), and d1 < d2 is
enforced unless asked for (d1 = d2 is the no-nesting ablation).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mpifl.config.fields import Field, number, positive_list
from mpifl.engine.accumulate import Accumulators
from mpifl.engine.evaluate import EvalResult
from mpifl.engine.plan import RoundPlan, Workload
from mpifl.errors import ConfigError
from mpifl.methods import register
from mpifl.methods.base import ClientResult, ClientTask, Method, MethodContext
from mpifl.models.cost import cost_of
from mpifl.models.mrl import MRLModel
from mpifl.streams import torch_init_seed


def _dims_ok(v: list[int]) -> bool:
    return (
        len(v) >= 2
        and all(d > 0 for d in v)
        and all(a <= b for a, b in zip(v, v[1:], strict=False))
    )


def _flat(params: list[nn.Parameter]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


@torch.no_grad()
def _load(params: list[nn.Parameter], flat: torch.Tensor) -> None:
    offset = 0
    for p in params:
        p.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def mrl_loss(
    heads: list[torch.Tensor], y: torch.Tensor, m1: float = 1.0, m2: float = 1.0
) -> torch.Tensor:
    """m1 CE(global header) + m2 sum of CE(local headers)."""
    loss = m1 * nn.functional.cross_entropy(heads[0], y)
    return loss + m2 * sum(nn.functional.cross_entropy(h, y) for h in heads[1:])


@register
class FedMRL(Method):
    """Shared G aggregated; personal F_k, P_k kept as client state."""

    name = "fedmrl"
    stateful = True
    checkpointed = ("weights",)
    fields = {
        "mrl_dims": Field(
            "list[int]",
            [16, 64],
            "must be >= 2 positive non-decreasing sizes [d1, ..., d2]",
            _dims_ok,
        ),  # fmt: skip
        "local_fc": positive_list("int", [128, 96, 80, 64, 48], "fc widths of the local variants"),
        "global_fc": Field("int", 48, "must be an integer >= 1", lambda v: v >= 1),
        "m1": number(1.0, 0.0),
        "m2": number(1.0, 0.0),
        "clip": number(50.0, 0.0, low_open=True, doc="gradient-norm clip"),
    }

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        alg = self.config.algorithm
        if ctx.spec.arch == "cnn" and ctx.spec.width != 1.0:
            raise ConfigError("model.width", ctx.spec.width, "must be 1 for fedmrl")
        self.variants = [MRLModel(ctx.spec, alg.global_fc, fc, alg.mrl_dims) for fc in alg.local_fc]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_init_seed(self.config.run.seed, 1))
            self.weights = _flat(
                MRLModel(ctx.spec, alg.global_fc, alg.local_fc[0], alg.mrl_dims).global_parameters()
            )
        self.costs = [self._cost(m) for m in self.variants]
        self.g_bytes = 4 * self.weights.numel()

    def _cost(self, model: MRLModel) -> tuple[int, float]:
        """(footprint at the batch size, training FLOPs per sample) of a variant."""
        train = self.config.train
        cost = cost_of(model, self.ctx.spec.input_shape, mrl_loss)
        return cost.footprint(train.batch_size, train.momentum > 0), cost.train_flops_per_sample

    def variant(self, client: int) -> int:
        """The local model variant of a client."""
        return client % len(self.variants)

    def workload(self, clients: np.ndarray, round_: int) -> Workload:
        var = clients % len(self.variants)
        n = self.ctx.data.n_train[clients]
        footprint = np.array([self.costs[v][0] for v in var], dtype=np.int64)
        flops = np.array([self.costs[v][1] for v in var]) * n * self.config.train.epochs
        nbytes = np.full(len(clients), self.g_bytes, dtype=np.int64)
        return Workload(footprint, flops, nbytes, nbytes, np.ones(len(clients), np.float32),
                        np.zeros(len(clients), np.float32), var.astype(np.int16))  # fmt: skip

    def accumulator_sizes(self) -> dict[str, int]:
        return {"global": self.weights.numel(), "weight": 1}

    def _model_for(self, client: int) -> MRLModel:
        """The client's variant loaded with G and its personal state (fresh if none)."""
        model = self.variants[self.variant(client)]
        _load(model.global_parameters(), self.weights)
        state = self.ctx.state.get(client)
        if state is None:  # a client's first round: its personal part, seeded by its id
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(torch_init_seed(self.config.run.seed, 1000 + client))
                for module in model.local_modules():
                    if hasattr(module, "reset_parameters"):
                        module.reset_parameters()
        else:
            _load(model.local_parameters(), torch.from_numpy(state["local"]))
        return model

    def train_client(self, task: ClientTask, acc: Accumulators) -> ClientResult:
        alg, train = self.config.algorithm, self.config.train
        model = self._model_for(task.client)
        x, y = task.train
        opt = torch.optim.SGD(model.parameters(), lr=train.lr, momentum=train.momentum,
                              weight_decay=train.weight_decay)  # fmt: skip
        model.train()
        total, batches = 0.0, 0
        for _ in range(train.epochs):
            order = torch.randperm(len(x), generator=task.generator)
            for lo in range(0, len(x), train.batch_size):
                idx = order[lo : lo + train.batch_size]
                loss = mrl_loss(model(x[idx]), y[idx], alg.m1, alg.m2)
                opt.zero_grad(set_to_none=False)  # reuse the buffers within a client
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), alg.clip)
                opt.step()
                total += loss.item()
                batches += 1
        model.zero_grad(set_to_none=True)  # five reused variants need not hold gradients
        local = _flat(model.local_parameters())
        if torch.isfinite(local).all():
            self.ctx.state.put(task.client, {"local": local.numpy()})
        acc.add("global", model.global_parameters(), len(x))
        acc.add("weight", torch.ones(1), len(x))
        _, accuracy = self._client_eval(model, task.test)
        return ClientResult(total / max(batches, 1), accuracy)

    @staticmethod
    def _client_eval(
        model: MRLModel, test: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[float, float]:
        """(mean loss, accuracy) of the local header on the full representation."""
        x, y = test
        if len(x) == 0:
            return float("nan"), float("nan")
        model.eval()
        with torch.no_grad():
            logits = model(x)[-1]
        loss = float(nn.functional.cross_entropy(logits, y))
        return loss, float((logits.argmax(1) == y).float().mean())

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> None:
        total = sums["weight"][0]
        if total > 0:
            w = self.weights.double()
            self.weights = (w + (torch.from_numpy(sums["global"] / total) - w)).float()

    def evaluate(self) -> list[EvalResult]:
        """FedMRL has no global model that predicts alone: each client's own test split,
        scored by its personal model (G with its own F_k and P_k, the full representation);
        a client that has not trained yet uses its freshly initialised personal part.
        Nothing with run.eval_clients = false."""
        if not self.config.run.eval_clients:
            return []

        def score(client: int, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
            loss, accuracy = self._client_eval(self._model_for(client), (x, y))
            return loss * len(x), round(accuracy * len(x))

        return self.ctx.evaluator.clients(self.ctx.data, score)
