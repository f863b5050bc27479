"""Compressed sub-models (docs/algorithms.md section 2; Zhang & Kim 2021, structured width).

Each client trains the widest width tier its memory and the deadline allow, as a slice
of the global model (selection prefix / rolling / magnitude). The server averages each
global coordinate over the clients that covered it:
W <- W + sum_k n_k M_k Delta_k / sum_k n_k M_k (one Allreduce of the numerator, one of the
denominator, both of the global size); coordinates nobody covered stay unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from mpifl.kit import SliceMap, algorithms, layout, seeded_model, select_units
from mpifl.kit.accumulate import Accumulators
from mpifl.kit.aggregate import average_update
from mpifl.kit.batched import ClientTrainer, group_size
from mpifl.kit.evaluate import EvalResult
from mpifl.kit.method import ClientTask, Method, MethodContext, Metrics
from mpifl.kit.tiers import build_tiers, choose_tiers, tier_clients, tier_workload
from mpifl.kit.training import get_flat, prepare_model, set_flat
from mpifl.kit.workload import RoundPlan, Workload


class SubModel(Method):
    """Width-tiered sub-models of one global model, masked averaging."""

    name = "submodel"
    plugin_models = False  # its model variants are built from mlp / cnn layers
    checkpointed = ("weights", "next_round")
    fields = algorithms.SUBMODEL

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.global_model = prepare_model(
            seeded_model(ctx.spec, self.config.run.seed), self.config.train
        )
        self.weights = get_flat(self.global_model)
        self.layout = layout(self.global_model)
        self.tiers = build_tiers(ctx, self.config.algorithm.tiers)
        self.selection = self.config.algorithm.selection
        self._maps: dict[tuple[int, int], SliceMap] = {}
        self._sliced: dict[tuple[int, int], torch.Tensor] = {}  # (tier, round) -> start
        self._sliced_from: torch.Tensor | None = None  # ... of these weights
        self.group_size = group_size(self.config, [tier.trainer for tier in self.tiers])
        self.next_round = 0  # the round whose slices `evaluate` reports

    def slice_map(self, tier: int, round_: int) -> SliceMap:
        """The slice of tier `tier` in round `round_` (prefix maps never change)."""
        key = (tier, 0 if self.selection == "prefix" else round_)
        if key not in self._maps:
            if self.selection != "prefix":
                self._maps = {k: v for k, v in self._maps.items() if k[1] == round_}
            set_flat(self.global_model, self.weights)
            units = select_units(
                self.layout, self.tiers[tier].keep, self.selection, round_, self.global_model
            )
            self._maps[key] = SliceMap(self.global_model, units)
        return self._maps[key]

    def workload(self, clients: np.ndarray, round_: int) -> Workload:
        return tier_workload(
            self.ctx, self.tiers, clients, choose_tiers(self.ctx, self.tiers, clients)
        )

    def accumulator_sizes(self) -> dict[str, int]:
        n = self.weights.numel()
        return {"num": n, "den": n}

    def client_trainer(self, variant: int) -> ClientTrainer:
        return self.tiers[variant].trainer

    def client_start(self, task: ClientTask) -> torch.Tensor:
        """The tier's slice of the global model: one tensor for the tier's clients of a
        round (of the same `weights`)."""
        key = (task.variant, task.round)
        if self._sliced_from is not self.weights:
            self._sliced, self._sliced_from = {}, self.weights
        if key not in self._sliced:
            self._sliced[key] = self.slice_map(*key).extract(self.weights)
        return self._sliced[key]

    def client_finish(
        self, task: ClientTask, start: torch.Tensor, trained: torch.Tensor, acc: Accumulators
    ) -> Metrics:
        """n M_k W_k (the trained slice scattered into the global layout) and n M_k."""
        smap = self.slice_map(task.variant, task.round)
        acc.add("num", smap.scatter(trained), len(task.train[0]))
        acc.add("den", smap.mask(), len(task.train[0]))
        return {}

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> Metrics:
        self.weights = average_update(self.weights, sums["num"], sums["den"])
        self.next_round = plan.round + 1
        return {"covered_fraction": float((sums["den"] > 0).mean())}

    def evaluate(self) -> list[EvalResult]:
        """The global model, and each narrower tier as it would be sent this round, on the
        global test set; with run.eval_clients, each client's own test split scored by the
        tier it would train (the widest that fits its memory and the deadline)."""
        ev, test = self.ctx.evaluator, self.ctx.global_test
        set_flat(self.global_model, self.weights)
        results = [ev.evaluate("global", self.global_model, *test)]
        sub = [
            self.slice_map(i, self.next_round).extract(self.weights) for i in range(len(self.tiers))
        ]
        for tier, weights in zip(self.tiers, sub, strict=True):
            if tier.width < 1:
                set_flat(tier.model, weights)
                results.append(ev.evaluate(f"width={tier.width:g}", tier.model, *test))
        if self.config.run.eval_clients:
            results += tier_clients(
                self.ctx, self.tiers, sub, choose_tiers(self.ctx, self.tiers, self.ctx.all_clients)
            )
        return results
