"""One SGD step's losses and gradients for a group of clients, with the backward written
by hand.

Tiny models train at the speed of torch's dispatch, not of their arithmetic, and
autograd's graph costs as much again as the forward. For a Sequential of Conv2d,
GroupNorm, ReLU, MaxPool2d, then Flatten, Linear, LayerNorm and ReLU layers (every model
of mpifl.models) under mean cross-entropy, `hand_step` runs each layer's forward on the
group's stacked parameters and keeps what its backward needs, then runs the backward
layer by layer: batched matrix products for Linear layers and for convolutions (over
patches, channels last), torch's own kernels for the norms and the pooling. The maths is
autograd's (tests/test_batched.py); a client's result does not depend on its group.

Activations are (G, B, F) vectors or (G, B, H, W, C) images, channels last: a
convolution's patches are then one strided copy and its output needs no transpose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from mpifl.kit.group_matmul import Bmm

Grads = list[torch.Tensor]
Pair = tuple[int, int]
Backward = Callable[[torch.Tensor, bool], tuple[torch.Tensor | None, Grads]]
SPATIAL = (nn.Conv2d, nn.GroupNorm, nn.ReLU, nn.MaxPool2d)
VECTOR = (nn.Linear, nn.LayerNorm, nn.ReLU)
WEIGHTED = (nn.Conv2d, nn.Linear, nn.GroupNorm, nn.LayerNorm)  # affine norms (see supported)
PATCHES_ONCE = 2**24  # numbers (64 MiB) of a group's first-layer patches; see step_inputs


def differentiable_by_hand(model: nn.Module, sample_dims: int) -> bool:
    """Whether `hand_step` serves the model on samples of `sample_dims` dimensions: a
    Sequential of image layers (Conv2d without groups, with zero padding; affine
    GroupNorm; ReLU; MaxPool2d) on (C, H, W) samples, then a Flatten, then vector layers
    (Linear; LayerNorm over the last dimension, affine; ReLU) ending in a Linear; without
    a Flatten, vector layers on vector samples."""
    layers = list(model.children()) if isinstance(model, nn.Sequential) else []
    flat = [k for k, m in enumerate(layers) if type(m) is nn.Flatten]
    cut = flat[0] if len(flat) == 1 else 0 if not flat else -1
    image, vector = layers[:cut], layers[cut + 1 :] if flat else layers
    return (
        cut >= 0
        and (sample_dims == 3 if image else sample_dims == 1 or bool(flat))
        and (not flat or (layers[cut].start_dim, layers[cut].end_dim) == (1, -1))
        and bool(vector)
        and type(vector[-1]) is nn.Linear
        and all(type(m) in SPATIAL and supported(m) for m in image)
        and all(type(m) in VECTOR and supported(m) for m in vector)
    )


def supported(m: nn.Module) -> bool:
    """Whether a layer's form is one the batched layers compute."""
    if isinstance(m, nn.Conv2d):
        return m.groups == 1 and m.padding_mode == "zeros" and not isinstance(m.padding, str)
    if isinstance(m, nn.GroupNorm):
        return m.affine
    if isinstance(m, nn.LayerNorm):
        return len(m.normalized_shape) == 1 and m.weight is not None and m.bias is not None
    if isinstance(m, nn.MaxPool2d):
        return not m.return_indices
    return True


def patches(h: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """The convolution's input patches (..., out_h, out_w, kh * kw * C) of channels-last
    images h (..., H, W, C)."""
    return _patches(h, conv.kernel_size, _pair(conv.padding), conv.stride, conv.dilation)


def conv_output_size(height: int, width: int, kernel: Pair, padding: Pair, stride: Pair,
                     dilation: Pair) -> Pair:  # fmt: skip
    """(out_h, out_w) of a convolution over (height, width) inputs."""
    (kh, kw), (ph, pw), (sh, sw), (dh, dw) = kernel, padding, stride, dilation
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return out_h, out_w


def _patches(h: torch.Tensor, kernel: Pair, padding: Pair, stride: Pair, dilation: Pair
             ) -> torch.Tensor:  # fmt: skip
    """Zero padding, then one strided copy."""
    (kh, kw), (ph, pw), (sh, sw), (dh, dw) = kernel, padding, stride, dilation
    lead, (height, width, c) = h.shape[:-3], h.shape[-3:]
    padded = nn.functional.pad(h, (0, 0, pw, pw, ph, ph)).contiguous()
    out_h, out_w = conv_output_size(height, width, kernel, padding, stride, dilation)
    *outer, s_h, s_w, s_c = padded.stride()
    view = padded.as_strided(
        (*lead, out_h, out_w, kh, kw, c), (*outer, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c)
    )
    return view.reshape(*lead, out_h, out_w, kh * kw * c)


def _conv(p: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, conv: nn.Conv2d,
          in_shape: tuple[int, ...], bmm: Bmm) -> tuple[torch.Tensor, Backward]:  # fmt: skip
    """Each client's convolution as one product of its patches p (G, B, oh, ow, K) with
    its weights (G, C_out, C, kh, kw) in channels-last order."""
    g, b, out_h, out_w, k = p.shape
    c_out = w.shape[1]
    wt = w.permute(0, 1, 3, 4, 2).reshape(g, c_out, k)  # (G, C_out, kh kw C), read only
    rows = p.view(g, -1, k)
    z = bmm(rows, wt.transpose(1, 2), bias)

    def backward(d: torch.Tensor, need_input: bool) -> tuple[torch.Tensor | None, Grads]:
        d = d.reshape(g, -1, c_out)
        gw = bmm(rows.transpose(1, 2), d, None)  # (G, kh kw C, C_out): faster than its transpose
        gw = gw.view(g, *w.shape[3:], w.shape[2], c_out).permute(0, 4, 3, 1, 2).contiguous()
        grads = [gw] + ([] if bias is None else [d.sum(1)])
        if not need_input:
            return None, grads
        return _input_gradient(d.view(g, b, out_h, out_w, c_out), wt, conv, in_shape, bmm), grads

    return z.view(g, b, out_h, out_w, c_out), backward


def _input_gradient(d: torch.Tensor, wt: torch.Tensor, conv: nn.Conv2d,
                    in_shape: tuple[int, ...], bmm: Bmm) -> torch.Tensor:  # fmt: skip
    """The gradient of a convolution's input (G, B, H, W, C) from its output's gradient d
    (G, B, oh, ow, C_out) and its weights `wt` (G, C_out, kh kw C). With stride and
    dilation 1, it is the convolution of d, padded by kernel - 1 - padding, with the
    flipped kernel: one patch copy and one product. Otherwise the patches' gradient,
    d times `wt`, is added back where each kernel offset read it."""
    (kh, kw), (ph, pw) = conv.kernel_size, _pair(conv.padding)
    (sh, sw), (dh, dw) = conv.stride, conv.dilation
    g, b, out_h, out_w, c_out = d.shape
    height, width, c = in_shape
    if (sh, sw, dh, dw) == (1, 1, 1, 1) and ph < kh and pw < kw:
        full = _patches(d, (kh, kw), (kh - 1 - ph, kw - 1 - pw), (1, 1), (1, 1))
        reversed_offsets = torch.arange(kh * kw - 1, -1, -1)  # the flipped kernel's order
        flipped = wt.view(g, c_out, kh * kw, c).transpose(1, 2).index_select(1, reversed_offsets)
        return bmm(full.view(g, -1, kh * kw * c_out), flipped.view(g, -1, c), None).view(
            g, b, *in_shape
        )
    dp = bmm(d.view(g, -1, c_out), wt, None).view(g, b, out_h, out_w, kh, kw, c)
    out = dp.new_zeros(g, b, height + 2 * ph, width + 2 * pw, c)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i * dh : i * dh + sh * (out_h - 1) + 1 : sh,
                j * dw : j * dw + sw * (out_w - 1) + 1 : sw] += dp[:, :, :, :, i, j]  # fmt: skip
    return out[:, :, ph : ph + height, pw : pw + width]


def _as_nchw(h: torch.Tensor) -> torch.Tensor:
    """(G, B, H, W, C) as a channels-last (G B, C, H, W) view (of a contiguous copy if
    h is not contiguous)."""
    g, b, height, width, c = h.shape
    h = h if h.is_contiguous() else h.contiguous()
    return h.as_strided((g * b, c, height, width), (height * width * c, 1, width * c, c))


def _from_nchw(h: torch.Tensor, g: int) -> torch.Tensor:
    """A channels-last (G B, C, H, W) tensor as (G, B, H, W, C)."""
    n, c, height, width = h.shape
    if h.stride() != (height * width * c, 1, width * c, c):
        h = h.contiguous(memory_format=torch.channels_last)
    return h.as_strided(
        (g, n // g, height, width, c),
        (n // g * height * width * c, height * width * c, width * c, c, 1),
    )


def _group_norm(h: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, norm: nn.GroupNorm
                ) -> tuple[torch.Tensor, Backward]:  # fmt: skip
    g, b, height, width, c = h.shape
    x = _as_nchw(h)
    n, hw = g * b, height * width
    normed, mean, rstd = torch.ops.aten.native_group_norm(x, None, None, n, c, hw,
                                                          norm.num_groups, norm.eps)  # fmt: skip
    xhat = _from_nchw(normed, g)
    scale = w.view(g, 1, 1, 1, c)

    def backward(d: torch.Tensor, need_input: bool) -> tuple[torch.Tensor | None, Grads]:
        grads = [(d * xhat).sum((1, 2, 3)), d.sum((1, 2, 3))]
        if not need_input:
            return None, grads
        dx = torch.ops.aten.native_group_norm_backward(
            _as_nchw(d * scale), x, mean, rstd, None, n, c, hw, norm.num_groups,
            [True, False, False],
        )[0]  # fmt: skip
        return _from_nchw(dx, g), grads

    return torch.addcmul(bias.view(g, 1, 1, 1, c), xhat, scale), backward


def _layer_norm(h: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, norm: nn.LayerNorm
                ) -> tuple[torch.Tensor, Backward]:  # fmt: skip
    shape = norm.normalized_shape
    xhat, mean, rstd = torch.ops.aten.native_layer_norm(h, shape, None, None, norm.eps)
    scale = w.unsqueeze(1)

    def backward(d: torch.Tensor, need_input: bool) -> tuple[torch.Tensor | None, Grads]:
        grads = [(d * xhat).sum(1), d.sum(1)]
        if not need_input:
            return None, grads
        dx = torch.ops.aten.native_layer_norm_backward(
            d * scale, h, shape, mean, rstd, None, None, [True, False, False]
        )[0]
        return dx, grads

    return torch.addcmul(bias.unsqueeze(1), xhat, scale), backward


def _max_pool(h: torch.Tensor, pool: nn.MaxPool2d) -> tuple[torch.Tensor, Backward]:
    g, x = h.shape[0], _as_nchw(h)
    shape = (_pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size),
             _pair(pool.padding), _pair(pool.dilation), pool.ceil_mode)  # fmt: skip
    out, index = torch.ops.aten.max_pool2d_with_indices(x, *shape)

    def backward(d: torch.Tensor, need_input: bool) -> tuple[torch.Tensor | None, Grads]:
        grad = _as_nchw(d)
        return _from_nchw(
            torch.ops.aten.max_pool2d_with_indices_backward(grad, x, *shape, index), g
        ), []  # fmt: skip

    return _from_nchw(out, g), backward


def _relu(h: torch.Tensor) -> tuple[torch.Tensor, Backward]:
    out = torch.relu(h)

    def backward(d: torch.Tensor, need_input: bool) -> tuple[torch.Tensor | None, Grads]:
        return torch.ops.aten.threshold_backward(d, out, 0), []

    return out, backward


def _flatten(h: torch.Tensor) -> tuple[torch.Tensor, Backward]:
    """Channels-last images flattened in torch's (C, H, W) order."""
    g, b, height, width, c = h.shape

    def backward(d: torch.Tensor, need_input: bool) -> tuple[torch.Tensor | None, Grads]:
        return d.view(g, b, c, height, width).permute(0, 1, 3, 4, 2), []

    return h.permute(0, 1, 4, 2, 3).reshape(g, b, -1), backward


def _linear(h: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, bmm: Bmm
            ) -> tuple[torch.Tensor, Backward]:  # fmt: skip
    z = bmm(h, w.transpose(1, 2), bias)

    def backward(d: torch.Tensor, need_input: bool) -> tuple[torch.Tensor | None, Grads]:
        grads = [bmm(d.transpose(1, 2), h, None)] + ([] if bias is None else [d.sum(1)])
        return (bmm(d, w, None) if need_input else None), grads

    return z, backward


def step_inputs(model: nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(rows, patched): the rows `hand_step` takes for samples x (N, ...): vectors (N, F),
    or images channels last (N, H, W, C), and whether they are the patches
    (N, oh, ow, K) of the model's first layer, a convolution: cut once for all steps
    when they take at most PATCHES_ONCE numbers, else at every step (the same numbers)."""
    first = next(iter(model.children()))
    if x.dim() != 4 or not isinstance(first, SPATIAL):
        return x.flatten(1), False
    images = x.permute(0, 2, 3, 1).contiguous()
    if isinstance(first, nn.Conv2d) and patches(images[:1], first).numel() * len(x) <= (
        PATCHES_ONCE
    ):
        return patches(images, first), True
    return images, False


def loss_targets(y: torch.Tensor, share: torch.Tensor, classes: int) -> torch.Tensor:
    """`hand_step`'s targets (..., B, classes) for labels y (..., B): each sample's share
    of its client's batch loss (`share`, 0 for padding) at its label, 0 elsewhere."""
    target = share.new_zeros(*y.shape, classes)
    return target.scatter_(-1, y.unsqueeze(-1), share.unsqueeze(-1))


@torch.inference_mode()  # no autograd bookkeeping per call: ~10% of a CNN group's step
def hand_step(
    model: nn.Sequential,
    weights: Sequence[torch.Tensor],
    x: torch.Tensor,
    target: torch.Tensor,
    patched: bool,
    bmm: Bmm,
) -> tuple[torch.Tensor, Grads]:
    """The batch losses (m,) and gradients (in `weights`' order: the model's parameters,
    stacked (m, ...)) of m clients under cross-entropy weighted by `target` (m, B, C) of
    `loss_targets` (a client's batch loss: the mean over its real samples). x is (m, B,
    ...) rows of `step_inputs` (`patched` as it says). `bmm` makes the batched products
    (kit.group_matmul: `group_bmm` when a client's result must not depend on its
    group). The results are inference tensors: read them, do not change them in place."""
    layers = list(model.children())
    backwards: list[Backward | None] = []
    taken = iter(weights)
    h = x
    for k, m in enumerate(layers):
        if isinstance(m, nn.Conv2d):
            p = h if k == 0 and patched else patches(h, m)
            shape = tuple(h.shape[2:]) if k else ()
            h, back = _conv(p, next(taken), next(taken) if m.bias is not None else None, m,
                            shape, bmm)  # fmt: skip
        elif isinstance(m, nn.Linear):
            h, back = _linear(h, next(taken), next(taken) if m.bias is not None else None, bmm)
        elif isinstance(m, nn.GroupNorm):
            h, back = _group_norm(h, next(taken), next(taken), m)
        elif isinstance(m, nn.LayerNorm):
            h, back = _layer_norm(h, next(taken), next(taken), m)
        elif isinstance(m, nn.MaxPool2d):
            h, back = _max_pool(h, m)
        elif isinstance(m, nn.ReLU):
            h, back = _relu(h)
        else:  # Flatten
            h, back = (h, None) if h.dim() == 3 else _flatten(h)
        backwards.append(back)
    log_p = torch.log_softmax(h, -1)
    losses = (log_p * target).sum((1, 2)).neg_()
    d = log_p.exp_().mul_(target.sum(2, keepdim=True)).sub_(target)  # d loss / d logits
    first = next(k for k, m in enumerate(layers) if isinstance(m, WEIGHTED))
    grads: Grads = []
    for k in range(len(layers) - 1, first - 1, -1):
        back = backwards[k]
        if back is not None:
            d, layer_grads = back(d, k > first)
            grads[:0] = layer_grads
    return losses, grads
