"""Narrow models of one architecture at several widths (a method's model variants):
specs, reused model objects, costs, and the per-client tier choice (the widest that fits
memory and the deadline)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mpifl.kit.batched import ClientTrainer
from mpifl.kit.evaluate import EvalResult
from mpifl.kit.method import MethodContext
from mpifl.kit.training import loss_and_correct, prepare_model, set_flat
from mpifl.kit.workload import Workload, footprint, virtual_times
from mpifl.models import ModelCost, build_model, measure_cost
from mpifl.models.slicing import layout


@dataclass
class Tier:
    """One width of the family: a reused model object, its cost, units kept per layer."""

    width: float
    model: nn.Module
    cost: ModelCost
    keep: tuple[int, ...]
    trainer: ClientTrainer  # how a client trains it


def build_tiers(ctx: MethodContext, widths: list[float], update_norm: bool = False) -> list[Tier]:
    """Tiers from the widest to the narrowest (widths relative to the configured model);
    `update_norm`: their trainers report the client metric update_norm."""
    tiers = []
    for width in sorted(set(widths), reverse=True):
        spec = ctx.spec.at_width(ctx.spec.width * width)
        model = build_model(spec)
        keep = layout(model).sizes
        model = prepare_model(model, ctx.config.train)
        trainer = ClientTrainer(
            model, ctx.config.train, ctx.spec.input_shape, update_norm=update_norm
        )
        tiers.append(Tier(width, model, measure_cost(spec), keep, trainer))
    return tiers


def choose_tiers(
    ctx: MethodContext,
    tiers: list[Tier],
    clients: np.ndarray,
    download: np.ndarray | None = None,
    upload: bool = True,
) -> np.ndarray:
    """Per client, the index of the widest tier whose training footprint fits its memory
    and whose virtual round time fits the deadline; the narrowest tier if none does (the
    plan then records the client as infeasible or late). `download` (bool per client)
    says whether the model is sent this round (default: yes); without `upload` nothing is
    sent back (local training)."""
    train = ctx.config.train
    prof = ctx.fleet.profiles[clients]
    n = ctx.data.n_train[clients]
    sends = np.ones(len(clients), bool) if download is None else download
    speedup = None if ctx.speedup is None else ctx.speedup[clients]
    choice = np.full(len(clients), len(tiers) - 1)
    for i in range(len(tiers) - 1, -1, -1):
        t = tiers[i]
        nbytes = np.full(len(clients), t.cost.param_bytes)
        compute, comm = virtual_times(
            prof,
            n * t.cost.train_flops_per_sample * train.epochs,
            nbytes * sends,
            nbytes * upload,
            speedup,
        )
        fits = footprint(t.cost, train) <= prof["memory"]
        ok = fits & (compute + comm <= ctx.config.round.deadline)
        choice[ok] = i
    return choice


def tier_workload(
    ctx: MethodContext,
    tiers: list[Tier],
    clients: np.ndarray,
    choice: np.ndarray,
    download: np.ndarray | None = None,
    prune: bool = False,
) -> Workload:
    """The Workload of clients training tier `choice[i]`; `prune` records 1 - width as the
    pruning ratio instead of the width."""
    train = ctx.config.train
    pick = lambda f: np.array([f(tiers[c]) for c in choice])  # noqa: E731
    width = pick(lambda t: t.width).astype(np.float32)
    nbytes = pick(lambda t: t.cost.param_bytes).astype(np.int64)
    sends = np.ones(len(clients), bool) if download is None else download
    return Workload(
        footprint=pick(lambda t: footprint(t.cost, train)),
        train_flops=ctx.data.n_train[clients]
        * pick(lambda t: t.cost.train_flops_per_sample)
        * train.epochs,
        bytes_down=nbytes * sends,
        bytes_up=nbytes,
        width=np.ones_like(width) if prune else width,
        prune=(1 - width) if prune else np.zeros_like(width),
        variant=choice.astype(np.int16),
    )


def tier_clients(
    ctx: MethodContext, tiers: list[Tier], weights: list[torch.Tensor], tier_of: np.ndarray
) -> list[EvalResult]:
    """Per-client evaluation (`clients/mean`, `clients/pooled`) where client k uses tier
    `tier_of[k]` holding `weights[tier]`."""

    def score(client: int, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        tier = int(tier_of[client])
        set_flat(tiers[tier].model, weights[tier])
        return loss_and_correct(tiers[tier].model, x, y)

    return ctx.evaluator.clients(ctx.data, score)
