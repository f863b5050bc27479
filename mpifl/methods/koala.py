"""KOALA (docs/algorithms.md section 4; Chen et al. 2024): small client models, a large server
model, knowledge moving both ways by distillation on the server's proxy set.

Round t: clients train their family's small model (cross-entropy, own data); FedAvg
within each family (one Allreduce per family); reverse KD: the large model L learns from
the aggregated small models' logits on the proxy set (heterogeneous mode: the families'
logits averaged with weights = samples each family trained on this round), plus
cross-entropy on proxy labels if `proxy_labels`; forward KD: every family's aggregate
learns from L, and that is what clients download next round. Both distillations run
data-parallel over all ranks.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mpifl.kit import (
    ConfigError,
    ModelSpec,
    Purpose,
    algorithms,
    check_buildable,
    load_initial_state,
    random_subset,
    seeded_model,
    torch_generator,
)
from mpifl.kit.accumulate import Accumulators
from mpifl.kit.aggregate import average_update
from mpifl.kit.batched import ClientTrainer, group_size
from mpifl.kit.evaluate import EvalResult
from mpifl.kit.method import ClientTask, Method, MethodContext, Metrics
from mpifl.kit.tiers import build_tiers, choose_tiers, tier_clients, tier_workload
from mpifl.kit.training import get_flat, loss_and_correct, set_flat, sgd_epochs
from mpifl.kit.workload import RoundPlan, Workload


def large_spec(spec: ModelSpec, alg: object) -> ModelSpec:
    """The server's large model: the configured architecture at the large sizes."""
    return replace(
        spec,
        width=1.0,
        channels=tuple(alg.large_channels),
        fc=alg.large_fc,
        hidden=tuple(alg.large_hidden),
    )


class Koala(Method):
    """Small families on clients, a large model on the server, two-way distillation."""

    name = "koala"
    plugin_models = False  # its model variants are built from mlp / cnn layers
    checkpointed = ("large", "small")
    fields = algorithms.KOALA

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        alg = self.config.algorithm
        seed = self.config.run.seed
        check_buildable(large_spec(ctx.spec, alg), "algorithm.large_channels / large_fc")
        self.large = seeded_model(large_spec(ctx.spec, alg), seed, 1)
        if alg.server_init:
            load_initial_state(self.large, alg.server_init, "the large model")
        family_widths = alg.small_widths if alg.mode == "heterogeneous" else [1.0]
        self.families = build_tiers(ctx, family_widths)
        self.small = []
        for i, fam in enumerate(self.families):
            small = seeded_model(ctx.spec.at_width(ctx.spec.width * fam.width), seed, 2 + i)
            self.small.append(get_flat(small))
        self.group_size = group_size(self.config, [fam.trainer for fam in self.families])
        self.proxy_x, self.proxy_y = ctx.proxy
        if len(self.proxy_x) == 0:
            raise ConfigError("data.proxy_fraction", 0.0, "must be > 0: KOALA distils on it")
        if alg.warm_start:
            self._forward_kd(-1)

    def workload(self, clients: np.ndarray, round_: int) -> Workload:
        family = choose_tiers(self.ctx, self.families, clients)
        return tier_workload(self.ctx, self.families, clients, family)

    def accumulator_sizes(self) -> dict[str, int]:
        sizes = {}
        for i, w in enumerate(self.small):
            sizes[f"model{i}"], sizes[f"weight{i}"] = w.numel(), 1
        return sizes

    def client_trainer(self, variant: int) -> ClientTrainer:
        return self.families[variant].trainer

    def client_start(self, task: ClientTask) -> torch.Tensor:
        return self.small[task.variant]

    def client_finish(
        self, task: ClientTask, start: torch.Tensor, trained: torch.Tensor, acc: Accumulators
    ) -> Metrics:
        """Its family's FedAvg contributions: n W_k and n."""
        fam, n = task.variant, len(task.train[0])
        acc.add(f"model{fam}", trained, n)
        acc.add(f"weight{fam}", torch.ones(1), n)
        return {}

    def _logits(self, model: torch.nn.Module, flat: torch.Tensor | None = None) -> torch.Tensor:
        if flat is not None:
            set_flat(model, flat)
        model.eval()
        with torch.no_grad():
            return model(self.proxy_x)

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> Metrics:
        """FedAvg within each family, then reverse and forward KD; reports the mean KD
        loss per proxy sample of the large model (`reverse_kd_loss`) and of the families
        (`forward_kd_loss`, averaged over families)."""
        alg, seed = self.config.algorithm, self.config.run.seed
        counts = np.array([sums[f"weight{i}"][0] for i in range(len(self.small))])
        for i, total in enumerate(counts):  # FedAvg within each family
            self.small[i] = average_update(self.small[i], sums[f"model{i}"], total)
        if counts.sum() <= 0:
            return {}
        # reverse KD: small -> large, teacher = sample-weighted average of family logits
        teacher_logits = sum(
            float(n) * self._logits(fam.model, self.small[i])
            for i, (fam, n) in enumerate(zip(self.families, counts, strict=True))
            if n > 0
        ) / float(counts.sum())
        teacher = torch.softmax(teacher_logits / alg.temperature, dim=1)
        distill = self.ctx.distiller.distill
        gen = torch_generator(seed, Purpose.DISTILL, plan.round, 0)
        labels = self.proxy_y if alg.proxy_labels else None
        reverse = distill(
            self.large, self.proxy_x, teacher, alg.temperature, alg.server_epochs,
            alg.server_batch, alg.server_lr, gen, labels,
        )  # fmt: skip
        forward = self._forward_kd(plan.round)
        return {"reverse_kd_loss": reverse, "forward_kd_loss": float(np.mean(forward))}

    def _forward_kd(self, round_: int) -> list[float]:
        """Forward KD, large -> each small family (the results are what clients download
        next); each family's mean KD loss per proxy sample."""
        alg, seed = self.config.algorithm, self.config.run.seed
        teacher = torch.softmax(self._logits(self.large) / alg.temperature, dim=1)
        forward = []
        for i, fam in enumerate(self.families):
            set_flat(fam.model, self.small[i])
            gen = torch_generator(seed, Purpose.DISTILL, round_, 1 + i)
            loss = self.ctx.distiller.distill(
                fam.model, self.proxy_x, teacher, alg.temperature, alg.forward_epochs,
                alg.server_batch, alg.forward_lr, gen,
            )  # fmt: skip
            forward.append(loss)
            self.small[i] = get_flat(fam.model)
        return forward

    def evaluate(self) -> list[EvalResult]:
        """The large model (headline) and every small family on the global test set; with
        run.eval_clients, each client's own test split scored by its family's model."""
        ev, test = self.ctx.evaluator, self.ctx.global_test
        results = [ev.evaluate("global", self.large, *test)]
        for i, fam in enumerate(self.families):
            set_flat(fam.model, self.small[i])
            results.append(ev.evaluate(f"family={fam.width:g}", fam.model, *test))
        if self.config.run.eval_clients:  # a client uses its family's small model
            family = choose_tiers(self.ctx, self.families, self.ctx.all_clients)
            results += tier_clients(self.ctx, self.families, self.small, family)
        return results


def pretrain_large(
    cfg: object, data: object, spec: ModelSpec, epochs: int, lr: float, path: Path,
    samples: int = 0,
) -> dict:  # fmt: skip
    """Train KOALA's large model on the proxy set with labels (`samples` of them drawn at
    random, 0 = all); save its state dict."""
    model = seeded_model(large_spec(spec, cfg.algorithm), cfg.run.seed, 1)
    x, y = data.proxy()
    if samples:
        keep = random_subset(len(x), samples, cfg.run.seed, Purpose.DISTILL, 98)
        x, y = x[keep], y[keep]
    if len(x) == 0:
        raise ConfigError("data.proxy_fraction", 0.0, "must be > 0: pre-training uses it")
    train = replace(cfg.train, epochs=epochs, lr=lr)
    loss = sgd_epochs(model, x, y, train, torch_generator(cfg.run.seed, Purpose.DISTILL, -1, 99))
    tx, ty = data.global_test()
    _, correct = loss_and_correct(model, tx, ty)
    torch.save(model.state_dict(), path)
    return {"params": sum(p.numel() for p in model.parameters()), "loss": loss,
            "test_accuracy": correct / max(len(tx), 1), "samples": len(x)}  # fmt: skip
