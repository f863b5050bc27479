"""The evaluator in-process (one rank): exact sums whatever the size of a test split or
the loss of the model; a diverged model is scored, not rejected."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from mpifl.comm import Comm
from mpifl.kit.evaluate import Evaluator
from mpifl.kit.training import loss_and_correct


def far_off_model() -> nn.Module:
    """A linear classifier whose loss is in the thousands on the inputs below."""
    model = nn.Linear(4, 3)
    with torch.no_grad():
        model.weight.fill_(0.0)
        model.weight[0] = 1000.0
        model.bias.zero_()
    return model


def labelled(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 4, generator=g) + 1.0, torch.full((n,), 2, dtype=torch.long)


def test_a_high_loss_on_a_large_set_is_scored():
    x, y = labelled(3000)
    result = Evaluator(Comm()).evaluate("global", far_off_model(), x, y)
    assert result.accuracy == 0.0 and result.samples == 3000
    assert result.loss > 1000 and np.isfinite(result.loss)


def test_client_means_and_pooled_sums_are_exact_for_large_clients():
    splits = {0: labelled(2000), 1: labelled(0), 2: labelled(10)}
    data = SimpleNamespace(
        n_test=np.array([len(splits[k][0]) for k in splits]), client_test=splits.__getitem__
    )
    model = far_off_model()

    def score(k: int, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        correct = len(x) if k == 2 else 0  # client 2 scores perfectly
        return loss_and_correct(model, x, y)[0], correct

    mean, pooled = Evaluator(Comm()).clients(data, score)
    assert (mean.group, mean.samples, mean.accuracy) == ("clients/mean", 2, 0.5)
    assert (pooled.group, pooled.samples, pooled.accuracy) == ("clients/pooled", 2010, 10 / 2010)
    assert pooled.loss > 1000 and np.isfinite(pooled.loss)


def test_each_device_class_gets_its_clients_mean():
    """In a fleet of several classes, `clients/mean/<class>` is the mean over that class's
    clients with test samples (a client without any counts in none)."""
    splits = {0: labelled(20), 1: labelled(0), 2: labelled(10), 3: labelled(5)}
    data = SimpleNamespace(
        n_test=np.array([len(splits[k][0]) for k in splits]), client_test=splits.__getitem__
    )

    def score(k: int, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        return 0.0, len(x) if k == 2 else 0  # client 2 scores perfectly

    evaluator = Evaluator(Comm(), np.array([1, 0, 0, 1], np.uint8), ["mcu", "phone"])
    groups = {r.group: (r.accuracy, r.samples) for r in evaluator.clients(data, score)}
    assert groups["clients/mean/mcu"] == (1.0, 1) and groups["clients/mean/phone"] == (0.0, 2)
    long = ["microcontroller_esp32_s3", "microcontroller_esp32_c3"]  # too long for the field
    named = Evaluator(Comm(), np.array([1, 0, 0, 1], np.uint8), long).clients(data, score)
    assert {r.group for r in named[2:]} == {"clients/mean/#0", "clients/mean/#1"}
    one_class = Evaluator(Comm(), np.zeros(4, np.uint8), ["phone"]).clients(data, score)
    assert [r.group for r in one_class] == ["clients/mean", "clients/pooled"]
