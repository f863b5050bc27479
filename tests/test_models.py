"""Model families, width multiplier, measured FLOPs and the footprint model."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from mpifl.errors import ConfigError
from mpifl.models import ModelSpec, build_model, measure_cost
from mpifl.models.cnn import GroupNorm


def test_mlp_flops_match_the_matmul_count():
    spec = ModelSpec("mlp", (1, 8, 8), 10, hidden=(32,))
    cost = measure_cost(spec)
    matmul = 64 * 32 + 32 * 10
    # forward 2*MACs, backward 4*MACs (weight and input gradients), except no input grad
    # for the first layer: 2 * (64*32) + 2 * (32*10) forward, backward 2*64*32 + 4*32*10
    assert cost.train_flops_per_sample == 2 * matmul + 2 * 64 * 32 + 4 * 32 * 10
    assert cost.params == 64 * 32 + 32 + 32 * 10 + 10


def test_width_shrinks_params_and_flops():
    full = measure_cost(ModelSpec("cnn", (1, 8, 8), 10))
    half = measure_cost(ModelSpec("cnn", (1, 8, 8), 10, width=0.5))
    assert half.params < 0.4 * full.params
    assert half.train_flops_per_sample < 0.4 * full.train_flops_per_sample


def test_footprint_counts_states_and_activations():
    cost = measure_cost(ModelSpec("cnn", (1, 8, 8), 10))
    plain, with_momentum = cost.footprint(16, False), cost.footprint(16, True)
    assert with_momentum - plain == cost.param_bytes
    assert cost.footprint(32, False) - plain == 16 * cost.activation_bytes_per_sample
    assert cost.activation_bytes_per_sample > 64 * 4  # at least the input image


def test_group_norm_and_forward_shapes():
    model = build_model(ModelSpec("cnn", (3, 32, 32), 10, channels=(8, 16), norm="group"))
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_too_many_pooling_blocks_is_a_config_error():
    with pytest.raises(ConfigError, match="model.channels"):
        build_model(ModelSpec("cnn", (1, 8, 8), 10, channels=(4, 4, 4, 4)))


def test_channels_last_training_matches_default_layout():
    from mpifl.config.sections import TrainConfig
    from mpifl.kit.training import get_flat, prepare_model, set_flat, sgd_epochs

    spec = ModelSpec("cnn", (3, 32, 32), 10, channels=(8, 16), kernel=5, fc=32)
    x, y = torch.randn(20, 3, 32, 32), torch.randint(0, 10, (20,))
    results = []
    for channels_last in (False, True):
        train = TrainConfig(
            epochs=1, batch_size=10, lr=0.1, momentum=0.0, weight_decay=0.0,
            channels_last=channels_last, group=2, precision="fp32",
        )  # fmt: skip
        torch.manual_seed(0)
        model = build_model(spec)
        start = get_flat(model)
        model = prepare_model(model, train)
        set_flat(model, start)
        sgd_epochs(model, x, y, train, torch.Generator().manual_seed(1))
        results.append(get_flat(model))
    assert torch.allclose(results[0], results[1], rtol=1e-4, atol=1e-6)
    assert not torch.equal(results[0], start)


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec("mlp", (64,), 10, hidden=(32, 16)),
        ModelSpec("mlp", (1, 8, 8), 10, hidden=(20,), norm="layer", width=0.5),
        ModelSpec("cnn", (1, 8, 8), 10, channels=(8, 16), fc=32, norm="group", groups=4),
        ModelSpec("cnn", (3, 32, 32), 10, channels=(32, 64), kernel=5, fc=512),
    ],
    ids=["mlp", "mlp-layer", "cnn-group", "cnn-w1"],
)
def test_flops_are_counted_as_flop_counter_mode_counts_them(spec):
    """The hook count equals torch's FlopCounterMode, which it replaces at start-up."""
    from torch.utils.flop_counter import FlopCounterMode

    from mpifl.models.cost import cost_of
    from mpifl.models.mrl import MRLModel

    models = [(build_model(spec), nn.functional.cross_entropy)]
    if spec.arch == "cnn" and spec.width == 1:
        from mpifl.methods.fedmrl import mrl_loss

        models.append((MRLModel(spec, 8, 12, [4, 8]), lambda out, y: mrl_loss(out, y).mean()))
    for model, loss_fn in models:
        counter = FlopCounterMode(display=False)
        with counter:
            loss_fn(
                model(torch.zeros(4, *spec.input_shape)), torch.zeros(4, dtype=torch.long)
            ).backward()
        assert cost_of(model, spec.input_shape, loss_fn).train_flops_per_sample == (
            counter.get_total_flops() / 4
        )


def test_checking_a_model_does_not_import_torchs_compiler():
    """A GroupNorm forward on the meta device imported torch._dynamo: a second of every
    run's start-up."""
    code = (
        "import sys\n"
        "from mpifl.models import ModelSpec, check_buildable\n"
        "check_buildable(ModelSpec('cnn', (1, 8, 8), 10, norm='group'))\n"
        "print(sorted(m for m in ('torch._dynamo', 'sympy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_checking_a_model_leaves_the_global_random_stream_alone():
    from mpifl.models import check_buildable

    torch.manual_seed(1)
    before = torch.get_rng_state()
    check_buildable(ModelSpec("cnn", (1, 8, 8), 10, norm="group"))
    assert torch.equal(torch.get_rng_state(), before)


def test_group_norm_of_a_channels_last_input_is_torchs_in_the_same_layout():
    """mpifl's GroupNorm normalises a channels-last input in the contiguous layout (torch's
    channels-last CPU kernel is several times slower): torch's values to rounding, the
    input's layout, the same gradients."""
    torch.manual_seed(0)
    ours, theirs = GroupNorm(4, 8), torch.nn.GroupNorm(4, 8)
    x = torch.randn(3, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = ours(a)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, theirs(b), atol=1e-5)
    (out * torch.arange(out.numel()).view_as(out)).sum().backward()
    (theirs(b) * torch.arange(out.numel()).view_as(out)).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-3)
    plain = torch.randn(3, 8, 6, 6)
    assert torch.equal(ours(plain), theirs(plain))  # contiguous: torch's own bits
