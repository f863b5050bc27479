"""Width slicing: narrow models are exact slices of the global model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mpifl.kit.training import get_flat, set_flat
from mpifl.models import ModelSpec, build_model, measure_cost
from mpifl.models.slicing import SliceMap, layout, select_units

CNN = ModelSpec("cnn", (1, 8, 8), 10, channels=(8, 16), fc=32, norm="group")
MLP = ModelSpec("mlp", (1, 8, 8), 10, hidden=(32, 16), norm="layer")


def narrow(spec: ModelSpec, width: float, selection: str, round_: int = 0):
    torch.manual_seed(0)
    big = build_model(spec)
    small = build_model(spec.at_width(width))
    units = select_units(layout(big), layout(small).sizes, selection, round_, big)
    smap = SliceMap(big, units)
    set_flat(small, smap.extract(get_flat(big)))
    return big, small, units, smap


@pytest.mark.parametrize("selection", ["prefix", "rolling", "magnitude"])
def test_cnn_slices_equal_the_selected_global_units(selection):
    big, small, (c1, c2, f1), _ = narrow(CNN, 0.5, selection, round_=3)
    conv1, gn1, conv2, gn2, fc1, fc2 = (
        m for m in big if not isinstance(m, nn.ReLU | nn.MaxPool2d | nn.Flatten)
    )
    s_conv1, s_gn1, s_conv2, s_gn2, s_fc1, s_fc2 = (
        m for m in small if not isinstance(m, nn.ReLU | nn.MaxPool2d | nn.Flatten)
    )
    assert torch.equal(s_conv1.weight, conv1.weight[c1])  # input channel stays full
    assert torch.equal(s_gn1.weight, gn1.weight[c1]) and torch.equal(s_gn1.bias, gn1.bias[c1])
    assert torch.equal(s_conv2.weight, conv2.weight[c2][:, c1])
    hw = 4  # 8x8 input, two 2x2 poolings: 2x2 positions per channel at the Flatten
    cols = (c2[:, None] * hw + np.arange(hw)).reshape(-1)
    assert torch.equal(s_fc1.weight, fc1.weight[f1][:, cols])
    assert torch.equal(s_fc2.weight, fc2.weight[:, f1])  # classes stay full
    assert torch.equal(s_fc2.bias, fc2.bias)


def test_selections_differ_as_specified():
    _, _, prefix, _ = narrow(CNN, 0.5, "prefix")
    _, _, rolling1, _ = narrow(CNN, 0.5, "rolling", round_=1)
    big, _, magnitude, _ = narrow(CNN, 0.5, "magnitude")
    assert prefix[0].tolist() == [0, 1, 2, 3]
    assert rolling1[0].tolist() == [1, 2, 3, 4]  # one block (1/8 of 8 channels) per round
    norms = big[0].weight.abs().sum(dim=(1, 2, 3))
    assert set(magnitude[0].tolist()) == set(torch.argsort(-norms)[:4].tolist())


def test_mlp_slice_computes_the_masked_global_network():
    spec = ModelSpec("mlp", (1, 8, 8), 10, hidden=(32, 16))
    big, small, _, smap = narrow(spec, 0.5, "magnitude")
    masked = build_model(spec)
    set_flat(masked, get_flat(big) * smap.mask())  # zero every unit the slice leaves out
    x = torch.randn(5, 1, 8, 8)
    assert torch.allclose(small(x), masked(x), atol=1e-6)


@pytest.mark.parametrize("spec", [CNN, MLP], ids=["cnn", "mlp"])
def test_counts_and_flops_shrink(spec):
    _, small, _, smap = narrow(spec, 0.5, "prefix")
    assert smap.size == sum(p.numel() for p in small.parameters())
    assert torch.equal(smap.mask().sum(), torch.tensor(float(smap.size)))
    full, half = measure_cost(spec), measure_cost(spec.at_width(0.5))
    assert half.params == smap.size
    assert half.train_flops_per_sample < 0.5 * full.train_flops_per_sample
    assert half.param_bytes == 4 * smap.size


def test_scatter_and_extract_are_inverse():
    _, _, _, smap = narrow(CNN, 0.25, "rolling", round_=5)
    v = torch.randn(smap.size)
    assert torch.equal(smap.extract(smap.scatter(v)), v)
