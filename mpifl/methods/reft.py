"""REFT (docs/algorithms.md section 3; Desai, Hilal, Eldardiry): capability-matched structured
pruning, persistent pruned client models, ensemble distillation into the server model.

Client k's pruning ratio follows its compute capability c_k (`capability`): by default
p_k = p_max (1 - q_k) with q_k the rank of c_k in the fleet (our reading of the paper's
variable pruning: pruning levels assigned across the fleet's range of capabilities);
`max` scales against the single fastest device, p_k = clip(p_max (1 - c_k / c_max), 0,
p_max), which prunes almost every client to p_max in a fleet with a few fast devices;
`memory` prunes only where memory forces it. p_k is rounded to the nearest p_step, then
raised until the training footprint fits the client's memory. Pruning is
structured L1 (smallest-norm filters/units go, with the matching inputs of the next
layer), so the client trains a smaller dense network. Clients keep their pruned model as
client state; the server re-prunes its model and sends it only every `sync_every`
rounds (and to clients it never sent one). Each round the ensemble teacher
sum_k n_k softmax(z_k / T) / sum_k n_k on the proxy inputs is one Allreduce, and the
full-width server model is distilled data-parallel over all ranks.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mpifl.kit import (
    ConfigError,
    Purpose,
    SliceMap,
    algorithms,
    layout,
    random_subset,
    seeded_model,
    select_units,
    torch_generator,
)
from mpifl.kit.accumulate import Accumulators
from mpifl.kit.aggregate import average_update
from mpifl.kit.batched import ClientTrainer, group_size
from mpifl.kit.evaluate import EvalResult
from mpifl.kit.method import ClientTask, Method, MethodContext, Metrics
from mpifl.kit.tiers import build_tiers, tier_workload
from mpifl.kit.training import get_flat, loss_and_correct, set_flat
from mpifl.kit.workload import RoundPlan, Workload, footprint


def pruning_ratios(p_step: float) -> list[float]:
    """The ratio grid 0, p_step, 2 p_step, ... below 1."""
    return [i * p_step for i in range(math.ceil(1 / p_step - 1e-9))]


def capability_ratio(flops: np.ndarray, p_max: float, p_step: float, rule: str) -> np.ndarray:
    """Per client, the pruning ratio its compute capability c calls for, rounded to the
    nearest p_step: `quantile`, p = p_max (1 - q) where q in [0, 1] is c's rank in the
    fleet (the slowest client gets p_max, the fastest 0, the levels spread evenly over the
    fleet); `max`, p = clip(p_max (1 - c / c_max), 0, p_max) against the single fastest
    device; `memory`, 0 (only memory prunes)."""
    if rule == "memory":
        return np.zeros(len(flops))
    if rule == "max":
        p = np.clip(p_max * (1 - flops / flops.max()), 0, p_max)
    else:
        order = np.argsort(flops, kind="stable")
        q = np.empty(len(flops))
        q[order] = np.arange(len(flops)) / max(len(flops) - 1, 1)
        p = p_max * (1 - q)
    return np.round(p / p_step) * p_step


class REFT(Method):
    """Pruned persistent client models; ensemble knowledge distillation on the server."""

    name = "reft"
    plugin_models = False  # its model variants are built from mlp / cnn layers
    stateful = True
    checkpointed = ("weights", "has_state")
    fields = algorithms.REFT

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        alg = self.config.algorithm
        self.server = seeded_model(ctx.spec, self.config.run.seed)
        self.weights = get_flat(self.server)
        self.layout = layout(self.server)
        self.ratios = pruning_ratios(alg.p_step)
        self.tiers = build_tiers(ctx, [1 - p for p in self.ratios])  # widest first
        self.tier = self._tiers_for(ctx, alg.p_max, alg.p_step)
        self.proxy_x = ctx.proxy[0]
        if alg.proxy_samples:
            seed, n = self.config.run.seed, len(self.proxy_x)
            self.proxy_x = self.proxy_x[
                random_subset(n, alg.proxy_samples, seed, Purpose.DISTILL, 97)
            ]
        if len(self.proxy_x) == 0:
            raise ConfigError(
                "data.proxy_fraction", 0.0, "must be > 0 for REFT (distillation data)"
            )
        self.has_state = np.zeros(ctx.data.n_clients, dtype=bool)
        self._pruned: dict[int, torch.Tensor] = {}  # tier -> pruned server model
        self._maps: dict[int, SliceMap] = {}  # tier -> its units in the server model
        self._index_of: dict[int, torch.Tensor] = {}  # client -> its units this round
        self._pruned_from: torch.Tensor | None = None  # ... of these weights
        self.group_size = group_size(self.config, [tier.trainer for tier in self.tiers])

    def _tiers_for(self, ctx: MethodContext, p_max: float, p_step: float) -> np.ndarray:
        """Per client: the capability ratio's tier, raised until the footprint fits memory."""
        base = np.rint(
            capability_ratio(
                ctx.fleet.profiles["flops"].astype(np.float64),
                p_max,
                p_step,
                self.config.algorithm.capability,
            )
            / p_step
        )
        memory = ctx.fleet.profiles["memory"]
        train = self.config.train
        tier = np.full(len(memory), len(self.tiers) - 1)
        for i in range(len(self.tiers) - 1, -1, -1):
            fits = footprint(self.tiers[i].cost, train) <= memory
            tier[fits & (i >= base)] = i
        return tier

    def _sync(self, round_: int) -> bool:
        return round_ % self.config.algorithm.sync_every == 0

    def workload(self, clients: np.ndarray, round_: int) -> Workload:
        download = self._sync(round_) | ~self.has_state[clients]
        tiers = self.tier[clients]
        return tier_workload(self.ctx, self.tiers, clients, tiers, download, prune=True)

    def _averaging(self) -> bool:
        return self.config.algorithm.server_start == "average"

    def accumulator_sizes(self) -> dict[str, int]:
        sizes = {"teacher": len(self.proxy_x) * self.ctx.data.n_classes, "weight": 1}
        if self._averaging():
            sizes["num"] = sizes["den"] = self.weights.numel()
        return sizes

    def pruned(self, tier: int) -> torch.Tensor:
        """The server model structurally L1-pruned to tier `tier`, as a flat vector;
        computed once per tier for each server model (every new `weights` tensor), and
        shared: callers copy it, never change it."""
        if self._pruned_from is not self.weights:
            self._pruned, self._maps, self._pruned_from = {}, {}, self.weights
        if tier not in self._pruned:
            set_flat(self.server, self.weights)
            keep = self.tiers[tier].keep
            units = select_units(self.layout, keep, "magnitude", 0, self.server)
            self._maps[tier] = SliceMap(self.server, units)
            self._pruned[tier] = self._maps[tier].extract(self.weights)
        return self._pruned[tier]

    def client_trainer(self, variant: int) -> ClientTrainer:
        return self.tiers[variant].trainer

    def client_start(self, task: ClientTask) -> torch.Tensor:
        """The client's model at the start of its round: its own pruned model, or the
        server model pruned to its level in a sync round or if it has none."""
        state = None if self._sync(task.round) else self.ctx.state.get(task.client)
        if state is None:
            start = self.pruned(task.variant)
            if self._averaging():  # where its units sit in the server model
                self._index_of[task.client] = self._maps[task.variant].index
            return start
        if self._averaging():
            self._index_of[task.client] = torch.from_numpy(state["index"])
        return torch.from_numpy(state["weights"])

    def client_finish(
        self, task: ClientTask, start: torch.Tensor, trained: torch.Tensor, acc: Accumulators
    ) -> Metrics:
        """Keep the trained pruned model (if finite); stage n softmax(z_k / T) on the
        proxy inputs and n; with server_start = average, also n W_k and n at the server
        model's coordinates the client's units sit at."""
        n = len(task.train[0])
        state = {"weights": trained.clone().numpy()}
        if self._averaging():
            index = self._index_of.pop(task.client)
            state["index"] = index.numpy()
            num, den = torch.zeros(self.weights.numel()), torch.zeros(self.weights.numel())
            num[index], den[index] = trained, 1.0
            acc.add("num", num, n)
            acc.add("den", den, n)
        if torch.isfinite(trained).all():
            self.ctx.state.put(task.client, state)
        model = self.tiers[task.variant].model
        set_flat(model, trained)
        model.eval()
        with torch.no_grad():
            logits = model(self.proxy_x) / self.config.algorithm.temperature
        acc.add("teacher", torch.softmax(logits, dim=1), n)
        acc.add("weight", torch.ones(1), n)
        return {}

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> Metrics:
        """Distil the clients' ensemble into the server model; reports the mean KD loss
        per proxy sample (`distill_loss`)."""
        self.has_state[plan.trained_clients] = True
        total = sums["weight"][0]
        if total <= 0:
            return {}
        alg = self.config.algorithm
        teacher = torch.from_numpy(sums["teacher"] / total).float().view(len(self.proxy_x), -1)
        if self._averaging():  # start from the clients' models where they cover the server's
            self.weights = average_update(self.weights, sums["num"], sums["den"])
        set_flat(self.server, self.weights)
        loss = self.ctx.distiller.distill(
            self.server,
            self.proxy_x,
            teacher,
            alg.temperature,
            alg.server_epochs,
            alg.server_batch,
            alg.server_lr,
            torch_generator(self.config.run.seed, Purpose.DISTILL, plan.round, 0),
        )
        self.weights = get_flat(self.server)
        return {"distill_loss": loss}

    def evaluate(self) -> list[EvalResult]:
        """The server model, and the server model pruned at each client ratio, on the global
        test set; with run.eval_clients, each client's own test split scored by the model
        it uses."""
        ev, test = self.ctx.evaluator, self.ctx.global_test
        set_flat(self.server, self.weights)
        results = [ev.evaluate("global", self.server, *test)]
        pruned = [self.pruned(i) for i in range(len(self.tiers))]
        for i, p in enumerate(self.ratios):
            if p > 0:
                set_flat(self.tiers[i].model, pruned[i])
                results.append(ev.evaluate(f"prune={p:g}", self.tiers[i].model, *test))
        if self.config.run.eval_clients:

            def score(client: int, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
                # its own pruned model (on its home rank, this one) once it has one, else
                # the server model pruned to its tier
                tier = int(self.tier[client])
                state = self.ctx.state.get(client) if self.has_state[client] else None
                weights = pruned[tier] if state is None else torch.from_numpy(state["weights"])
                set_flat(self.tiers[tier].model, weights)
                return loss_and_correct(self.tiers[tier].model, x, y)

            results += ev.clients(self.ctx.data, score)
        return results
