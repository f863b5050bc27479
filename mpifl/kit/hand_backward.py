"""One SGD step's losses and gradients for a group of clients: the batched trainer's one
forward, with the backward written by hand.

Tiny models train at the speed of torch's dispatch, not of their arithmetic, and
autograd's graph costs as much again as the forward. For a Sequential of Conv2d,
GroupNorm, ReLU, MaxPool2d, then Flatten, Linear, LayerNorm and ReLU layers (every model
of mpifl.models, and FedMRL's model made of two), `hand_step` runs each layer's forward
on the group's stacked parameters and keeps what its backward needs, then runs the
backward layer by layer: batched matrix products for Linear layers and for convolutions
(over patches, channels last), torch's own kernels for the norms and the pooling. The
loss's gradient at the outputs is cross-entropy's closed form, or autograd's on the
loss alone (a method's own loss). The maths is autograd's (tests/test_batched.py); a
client's result does not depend on its group.

Activations are (G, B, F) vectors or (G, B, H, W, C) images, channels last: a
convolution's patches are then one strided copy and its output needs no transpose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from mpifl.kit.group_matmul import Bmm, aligned_rows
from mpifl.models.cnn import GroupNorm
from mpifl.models.mrl import MRLModel

Grads = list[torch.Tensor]
Pair = tuple[int, int]
Backward = Callable[[torch.Tensor, bool], tuple[torch.Tensor | None, Grads]]
SPATIAL = (nn.Conv2d, nn.GroupNorm, GroupNorm, nn.ReLU, nn.MaxPool2d)
VECTOR = (nn.Linear, nn.LayerNorm, nn.ReLU)
WEIGHTED = (nn.Conv2d, nn.Linear, nn.GroupNorm, nn.LayerNorm)  # affine norms (see supported)
PATCHES_ONCE = 2**24  # numbers (64 MiB) of a group's first-layer patches; see step_inputs


def differentiable_by_hand(model: nn.Module, sample_dims: int) -> bool:
    """Whether `hand_step` serves the model on samples of `sample_dims` dimensions: a
    `sequential_by_hand` model, or FedMRL's (MRLModel) with two such extractors whose
    first layers read their input alike (the same patches)."""
    if isinstance(model, MRLModel):
        extractors = (model.global_ex, model.local_ex)
        first = [next(iter(m.children())) for m in extractors]
        alike = not isinstance(first[0], nn.Conv2d) or _geometry(first[0]) == _geometry(first[1])
        return alike and all(sequential_by_hand(m, sample_dims) for m in extractors)
    return sequential_by_hand(model, sample_dims)


def _geometry(conv: nn.Conv2d) -> tuple[object, ...]:
    return conv.in_channels, conv.kernel_size, conv.padding, conv.stride, conv.dilation


def sequential_by_hand(model: nn.Module, sample_dims: int) -> bool:
    """Whether a model is a Sequential of image layers (Conv2d without groups, with zero
    padding; affine GroupNorm; ReLU; MaxPool2d) on (C, H, W) samples, then a Flatten,
    then vector layers (Linear; LayerNorm over the last dimension, affine; ReLU) ending
    in a Linear; without a Flatten, vector layers on vector samples."""
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
    """GroupNorm over the group's samples, each client's scale and shift after it.

    ATen's native_group_norm and its backward are not public API, but they are what
    F.group_norm and its autograd run: the public forward does not return the mean and
    inverse deviation the backward needs, and recomputing them (or an autograd graph per
    step) costs a tiny model's step several calls. tests/test_batched.py compares this
    layer with autograd through nn.GroupNorm, so a change of their behaviour fails there
    (likewise native_layer_norm below)."""
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


def _linear(h: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, bmm: Bmm,
            output: bool = False) -> tuple[torch.Tensor, Backward]:  # fmt: skip
    """Each client's Linear layer on its (G, B, in) activations. An `output` layer pads
    its rows with zeros to `output_rows` (its result, and the gradient it gets, then
    start every client's matrix aligned: no product copies them) and gives back the
    input's gradient at the input's rows."""
    rows = h.shape[1]
    if output:
        h = nn.functional.pad(h, (0, 0, 0, aligned_rows(rows, w.shape[1]) - rows))
    z = bmm(h, w.transpose(1, 2), bias)

    def backward(d: torch.Tensor, need_input: bool) -> tuple[torch.Tensor | None, Grads]:
        grads = [bmm(d.transpose(1, 2), h, None)] + ([] if bias is None else [d.sum(1)])
        return (bmm(d, w, None)[:, :rows] if need_input else None), grads

    return z, backward


def output_rows(model: nn.Module, rows: int) -> int:
    """The rows of `hand_forward`'s outputs for `rows` samples: padded with zero rows
    (see _linear's `output`), the same for every head of an MRLModel."""
    head = model.global_head if isinstance(model, MRLModel) else list(model.children())[-1]
    return aligned_rows(rows, head.out_features)


def step_inputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(rows, patched): the rows `hand_step` takes for samples x (N, ...): vectors (N, F),
    or images channels last (N, H, W, C), and whether they are the patches
    (N, oh, ow, K) of the model's first layer, a convolution: cut once for all steps
    when they take at most PATCHES_ONCE numbers, else at every step (the same numbers)."""
    reader = model.global_ex if isinstance(model, MRLModel) else model
    first = next(iter(reader.children()))
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


Outputs = torch.Tensor | list[torch.Tensor]  # logits (m, B, C), or an MRLModel's heads
ModelBackward = Callable[[Outputs], Grads]  # d loss / d outputs -> the weights' gradients


def _sequential(
    model: nn.Sequential, weights: Sequence[torch.Tensor], x: torch.Tensor, patched: bool,
    bmm: Bmm, output: bool,
) -> tuple[torch.Tensor, ModelBackward]:  # fmt: skip
    """A `sequential_by_hand` model's output on rows x, and its backward (the input's
    gradient is never needed); an `output` model's last Linear is an output layer
    (`_linear`)."""
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
            w = next(taken)
            bias = next(taken) if m.bias is not None else None
            h, back = _linear(h, w, bias, bmm, output and k == len(layers) - 1)
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
    first = next(k for k, m in enumerate(layers) if isinstance(m, WEIGHTED))

    def backward(d: torch.Tensor) -> Grads:
        grads: Grads = []
        for k in range(len(layers) - 1, first - 1, -1):
            back = backwards[k]
            if back is not None:
                d, layer_grads = back(d, k > first)
                grads[:0] = layer_grads
        return grads

    return h, backward


def _mrl(model: MRLModel, weights: Sequence[torch.Tensor], x: torch.Tensor, patched: bool,
         bmm: Bmm) -> tuple[list[torch.Tensor], ModelBackward]:  # fmt: skip
    """MRLModel.forward on rows x, layer by layer (its heads' logits), and its backward."""
    taken = iter(weights)
    take = lambda module: [next(taken) for _ in module.parameters()]  # noqa: E731
    w_global, w_global_head = take(model.global_ex), take(model.global_head)
    w_local, w_projector = take(model.local_ex), take(model.projector)
    w_heads = [w_global_head, *(take(head) for head in model.local_heads)]
    g, global_back = _sequential(model.global_ex, w_global, x, patched, bmm, False)
    loc, local_back = _sequential(model.local_ex, w_local, x, patched, bmm, False)
    r, projector_back = _linear(torch.cat([g, loc], 2), *w_projector, bmm)
    heads, head_backs = [], []
    for (w, b), d in zip(w_heads, model.dims, strict=True):  # head j reads R'[:, :dims[j]]
        out, back = _linear(r[..., :d].contiguous(), w, b, bmm, True)
        heads.append(out)
        head_backs.append(back)
    d1 = model.dims[0]

    def backward(d_heads: list[torch.Tensor]) -> Grads:
        d_r = torch.zeros(r.shape)
        head_grads = []
        for back, d, d_head in zip(head_backs, model.dims, d_heads, strict=True):
            d_in, grads = back(d_head, True)
            d_r[..., :d] += d_in
            head_grads.append(grads)
        d_cat, projector_grads = projector_back(d_r, True)
        global_grads = global_back(d_cat[..., :d1].contiguous())
        local_grads = local_back(d_cat[..., d1:].contiguous())
        return [*global_grads, *head_grads[0], *local_grads, *projector_grads,
                *(g for grads in head_grads[1:] for g in grads)]  # fmt: skip

    return heads, backward


def hand_forward(model: nn.Module, weights: Sequence[torch.Tensor], x: torch.Tensor,
                 patched: bool, bmm: Bmm) -> tuple[Outputs, ModelBackward]:  # fmt: skip
    """The outputs of m clients' parameters `weights` (the model's parameters, stacked
    (m, ...), in its order) on their rows x (m, B, ...) of `step_inputs` (`patched` as
    it says): logits (m, B', C), or an MRLModel's heads, B' = output_rows(model, B) (the
    rows past B are padding); and the backward from the outputs' gradients to the
    weights'."""
    if isinstance(model, MRLModel):
        return _mrl(model, weights, x, patched, bmm)
    return _sequential(model, weights, x, patched, bmm, True)


SampleLoss = Callable[[Outputs, torch.Tensor], torch.Tensor]  # (outputs, y (m, B)) -> (m, B)


def hand_step(
    model: nn.Module,
    weights: Sequence[torch.Tensor],
    x: torch.Tensor,
    patched: bool,
    bmm: Bmm,
    target: torch.Tensor | None = None,
    loss_fn: SampleLoss | None = None,
    y: torch.Tensor | None = None,
    share: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Grads]:
    """The batch losses (m,) and gradients (in `weights`' order) of m clients through
    `hand_forward` (which says what the first arguments are). The loss is cross-entropy
    weighted by `target` (m, B, C) of `loss_targets` (a client's batch loss: the mean
    over its real samples), its gradient at the logits in closed form; or `loss_fn`'s
    per-sample losses of labels y (m, B) weighted by `share` (each sample's share of
    its client's batch loss, 0 for padding), its gradient at the outputs by autograd.
    `bmm` makes the batched products (kit.group_matmul.group_bmm: a client's result does
    not depend on its group). The results are inference tensors: read them, do not
    change them in place."""
    with torch.inference_mode():  # no autograd bookkeeping per call: ~10% of a CNN step
        outputs, backward = hand_forward(model, weights, x, patched, bmm)
        if loss_fn is None:
            log_p = torch.log_softmax(outputs, -1)
            losses = (log_p * target).sum((1, 2)).neg_()
            d = log_p.exp_().mul_(target.sum(2, keepdim=True)).sub_(target)  # d loss / d logits
            return losses, backward(d)
    leaves = [o.clone().requires_grad_(True) for o in _listed(outputs)]
    losses = (per_sample(loss_fn, leaves if isinstance(outputs, list) else leaves[0], y)
              * share).sum(1)  # fmt: skip
    d_outputs = torch.autograd.grad(losses.sum(), leaves)
    with torch.inference_mode():
        d = list(d_outputs) if isinstance(outputs, list) else d_outputs[0]
        return losses.detach(), backward(d)


def per_sample(loss_fn: SampleLoss, outputs: Outputs, y: torch.Tensor) -> torch.Tensor:
    """`loss_fn`'s per-sample losses, shaped as the labels y; ValueError otherwise (a
    mean loss would weigh padding and make a client's loss its group's)."""
    losses = loss_fn(outputs, y)
    if losses.shape != y.shape:
        raise ValueError(
            f"a method's loss must give one loss per sample, shaped as the labels "
            f"{tuple(y.shape)}, not {tuple(losses.shape)} (see kit.batched.ClientTrainer)"
        )
    return losses


def _listed(outputs: Outputs) -> list[torch.Tensor]:
    return outputs if isinstance(outputs, list) else [outputs]


@torch.inference_mode()
def hand_logits(model: nn.Module, weights: Sequence[torch.Tensor], x: torch.Tensor,
                patched: bool, bmm: Bmm) -> Outputs:  # fmt: skip
    """`hand_forward`'s outputs alone (scoring)."""
    return hand_forward(model, weights, x, patched, bmm)[0]
