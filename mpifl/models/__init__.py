"""Model families (MLP, CNN) with width multipliers, and their measured training costs."""

from __future__ import annotations

import pickle

import psutil
import torch
from torch import nn

from mpifl.errors import ConfigError, InputError, describe
from mpifl.models.build import build_model, seeded_model
from mpifl.models.cost import ModelCost, measure_cost
from mpifl.models.spec import ModelSpec, spec_from_config

TRAINING_BYTES_PER_PARAM = 16  # fp32 weights, gradient, momentum, one flat copy


def load_initial_state(model: nn.Module, path: str, what: str) -> None:
    """Load a saved state dict (tensors only) into `model`, e.g. a file written by
    `mpifl pretrain`; InputError naming algorithm.server_init if it does not fit `what`."""
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (OSError, EOFError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as exc:
        reason = describe(exc, 120)
        if isinstance(exc, pickle.UnpicklingError):  # torch's text suggests unsafe loading
            reason = "not a torch.save file of tensors only"
        raise InputError(
            f"config error: algorithm.server_init = {path!r}: not a state dict of {what} ({reason})"
        ) from None


def check_buildable(spec: ModelSpec, key: str = "model") -> int:
    """Build `spec` without memory (torch's meta device); ConfigError (naming `key`) if it
    cannot be trained in this machine's memory, or if, built on the CPU once that is
    known, one input run through it does not fit the data's shapes (a forward on the meta
    device would import torch's compiler, seconds). Returns the parameter count."""
    try:
        with torch.device("meta"):
            model = build_model(spec)
        params = sum(p.numel() for p in model.parameters())
        need = params * TRAINING_BYTES_PER_PARAM
        total = psutil.virtual_memory().total
        if need > total:
            raise ConfigError(
                key,
                f"{params} parameters",
                f"training needs ~{need / 2**30:.1f} GiB, more than this machine's "
                f"{total / 2**30:.1f} GiB: use smaller layers",
            )
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # the run's stream untouched
            out = build_model(spec)(torch.zeros(1, *spec.input_shape))
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001  (a user's model may fail in any way)
        raise ConfigError(
            key, spec.arch, f"does not fit inputs {spec.input_shape}: {describe(exc)}"
        ) from None
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != (1, spec.n_classes):
        raise ConfigError(
            key, spec.arch, f"must map a batch of 1 to logits of shape (1, {spec.n_classes}) "
            f"for the data's {spec.n_classes} classes; it gives {shape}",
        )  # fmt: skip
    return params


__all__ = [
    "ModelCost",
    "check_buildable",
    "load_initial_state",
    "ModelSpec",
    "build_model",
    "measure_cost",
    "seeded_model",
    "spec_from_config",
]
