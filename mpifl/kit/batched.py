"""A group of clients trained as one batched computation.

Each client's maths is its own, as in `training.sgd_epochs`: its own start, its own
minibatch order from its own random stream, its own sample count, the same SGD
(momentum, weight decay). Each parameter of the G clients is one (G, ...) block
(`GroupLayout`); every step runs the group's batches through the model at once, and
one backward pass gives every client its own gradient (the clients do not interact):
written by hand for mpifl's layers under cross-entropy in fp32 (`hand_backward`),
autograd's otherwise. A client whose epoch is over leaves the step (no padding steps);
a short last batch is masked. A Sequential of Linear, Conv2d, LayerNorm, GroupNorm,
ReLU, MaxPool2d and Flatten layers (every model of mpifl.models, and FedMRL's model
made of two) is batched by hand: batched matrix products for Linear layers and for
convolutions (over unfolded patches), per-sample layers over the group's samples; any
other model goes through torch.func's vmap of `functional_call`.

The results agree with the one-by-one path to float rounding. The planner forms the
same groups for any rank count, so a run stays bitwise the same for any rank count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from mpifl.config import Config
from mpifl.config.sections import TrainConfig
from mpifl.data.federated import Split
from mpifl.errors import ConfigError
from mpifl.kit.group_matmul import ALIGN, Bmm, GroupBmm, fast_bmm, group_bmm
from mpifl.kit.hand_backward import (
    conv_output_size,
    differentiable_by_hand,
    hand_step,
    loss_targets,
    step_inputs,
    supported,
)
from mpifl.kit.method import ClientResult, ClientTask
from mpifl.kit.training import Head, precision
from mpifl.models.mrl import MRLModel

BatchedProduct = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # torch.bmm or GroupBmm
AUTO_MAX_PARAMS = 100_000  # train.vectorize = auto batches models up to this size


def group_size(cfg: Config, params: int) -> int:
    """Clients per batched group for a model of `params` parameters: `train.group` when
    vectorising (`train.vectorize = on`, or `auto` and at most AUTO_MAX_PARAMS), else 1.
    Memory measured per client (`emulation.memory` measured or both) needs one-by-one
    training: `auto` then trains one by one, `on` is refused."""
    mode, measured = cfg.train.vectorize, cfg.emulation.memory != "analytic"
    if mode == "on" and measured:
        raise ConfigError(
            "train.vectorize", "on", "must be off or auto when emulation.memory measures "
            "each client's memory (a batched group is one computation)",
        )  # fmt: skip
    on = mode == "on" or (mode == "auto" and not measured and params <= AUTO_MAX_PARAMS)
    return cfg.train.group if on else 1


def pinned_group_size(cfg: Config, params: int, groups: Sequence[GroupModel]) -> int:
    """`group_size` for a method that keeps client state: its groups form within each
    home rank and change with the rank count, so it batches only models batched by hand
    with products that give a client its result alone (GroupModel's `invariant`), in
    fp32 on one torch thread (several split a group's reductions by its size); else 1."""
    if not all(g.invariant for g in groups):
        raise ValueError("a stateful method's GroupModels must be built invariant=True")
    alike = cfg.train.precision == "fp32" and torch.get_num_threads() == 1
    return group_size(cfg, params) if alike and all(g.by_hand for g in groups) else 1


def stack(splits: Sequence[Split]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, y, n): the splits zero-padded to the longest, x (G, N, ...), y (G, N), and
    each one's length."""
    n = torch.tensor([len(s[0]) for s in splits])
    longest = max(int(n.max()), 1)
    first_x, first_y = splits[0]
    x = first_x.new_zeros((len(splits), longest, *first_x.shape[1:]))
    y = first_y.new_zeros((len(splits), longest))
    real = torch.arange(longest)[None, :] < n[:, None]  # row by row: the splits in order
    x[real], y[real] = torch.cat([s[0] for s in splits]), torch.cat([s[1] for s in splits])
    return x, y, n


def _conv(
    h: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, m: nn.Conv2d, bmm: BatchedProduct
) -> torch.Tensor:
    """Each client's convolution of its (G, B, C, H, W) inputs, as one batched product of
    its weights (G, C_out, C k k) with its unfolded input patches."""
    g, b, c, height, width = h.shape
    patches = nn.functional.unfold(h.reshape(g * b, c, height, width), m.kernel_size,
                                   m.dilation, m.padding, m.stride)  # fmt: skip
    locations = patches.shape[-1]
    patches = patches.view(g, b, -1, locations).transpose(1, 2).reshape(g, -1, b * locations)
    out = bmm(w.reshape(g, w.shape[1], -1), patches)  # (G, C_out, B L)
    if bias is not None:
        out = out + bias.unsqueeze(2)
    size = conv_output_size(height, width, m.kernel_size, m.padding, m.stride, m.dilation)
    return out.view(g, -1, b, *size).transpose(1, 2)


def _linear(
    h: torch.Tensor, params: dict[str, torch.Tensor], prefix: str, bmm: BatchedProduct
) -> torch.Tensor:
    """Each client's Linear layer on its (G, B, in) activations."""
    out = bmm(h, params[prefix + "weight"].transpose(1, 2))
    bias = params.get(prefix + "bias")
    return out if bias is None else out + bias.unsqueeze(1)


def _run(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    prefix: str,
    x: torch.Tensor,
    bmm: BatchedProduct,
) -> torch.Tensor:
    """A batchable Sequential's layers on (G, B, ...) activations: batched matrix products
    (`bmm`) for Linear layers and for convolutions (over unfolded patches), per-sample layers on
    (G * B, ...)."""
    g, b = x.shape[:2]
    h = x
    for name, m in model.named_children():
        w, bias = params.get(f"{prefix}{name}.weight"), params.get(f"{prefix}{name}.bias")
        if isinstance(m, nn.Conv2d):
            h = _conv(h, w, bias, m, bmm)
        elif isinstance(m, nn.GroupNorm | nn.LayerNorm):
            shape = h.shape
            if isinstance(m, nn.GroupNorm):
                h = nn.functional.group_norm(h.flatten(0, 1), m.num_groups, eps=m.eps)
                w, bias = w.view(g, 1, -1, *[1] * (h.dim() - 2)), bias.view(g, 1, -1, 1, 1)
            else:
                h = nn.functional.layer_norm(h, m.normalized_shape, eps=m.eps)
                w, bias = w.unsqueeze(1), bias.unsqueeze(1)
            h = h.view(shape) * w + bias
        elif isinstance(m, nn.MaxPool2d):
            pooled = nn.functional.max_pool2d(
                h.flatten(0, 1), m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode
            )
            h = pooled.view(g, b, *pooled.shape[1:])
        elif isinstance(m, nn.ReLU):
            h = torch.relu(h)
        elif isinstance(m, nn.Flatten):
            h = h.reshape(g, b, -1)
        else:  # Linear
            h = _linear(h, params, f"{prefix}{name}.", bmm)
    return h


def _batchable(model: nn.Module) -> bool:
    """A Sequential of layers batched by hand, in the forms the hand-written backward
    takes too (convolutions of one group with zero padding, affine norms)."""
    return isinstance(model, nn.Sequential) and all(
        isinstance(m, BY_HAND) and supported(m) for m in model.children()
    )


BY_HAND = (nn.Linear, nn.Conv2d, nn.LayerNorm, nn.GroupNorm, nn.ReLU, nn.MaxPool2d, nn.Flatten)


class GroupModel:
    """One model architecture applied to G stacked parameter vectors at once.

    `by_hand` says whether it runs on the hand-batched layers; with `invariant`, their
    products give a client the result it gets alone, bit for bit, whatever group it is
    in (kit.group_matmul; tests/test_batched.py), as methods whose groups change with
    the rank count need (`pinned_group_size`); torch.func's vmap, for other models, does
    not promise that."""

    def __init__(self, model: nn.Module, invariant: bool = False) -> None:
        self.model, self.invariant = model, invariant
        self.shapes = [(name, p.shape, p.numel()) for name, p in model.named_parameters()]
        self.size = sum(numel for _, _, numel in self.shapes)
        if _batchable(model):
            self.by_hand, self._forward = True, self._sequential
        elif isinstance(model, MRLModel) and all(
            _batchable(m) for m in (model.global_ex, model.local_ex)
        ):
            self.by_hand, self._forward = True, self._mrl
        else:
            self.by_hand, self._forward = False, vmap(self._one)

    @property
    def bmm(self) -> BatchedProduct:
        """The batched product of the forward (autograd's, or group_bmm's under it)."""
        return GroupBmm.apply if self.invariant else torch.bmm

    @property
    def hand_bmm(self) -> Bmm:
        """The batched product (with bias) of the hand-written step."""
        return group_bmm if self.invariant else fast_bmm

    def batches(self, input_shape: tuple[int, ...]) -> bool:
        """Whether a group of clients can train this model at once: always on the
        hand-batched layers; through vmap if two clients' forward and backward pass runs
        (it does not for layers that update buffers, e.g. BatchNorm, or draw random
        numbers, e.g. Dropout)."""
        if self.by_hand:
            return True
        w = torch.zeros(2, self.size, requires_grad=True)
        try:
            torch.autograd.grad(self(w, torch.zeros(2, 1, *input_shape)).sum(), w)
        except Exception:  # noqa: BLE001  (any failure means: not batchable)
            return False
        return True

    def _one(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, params, (x,))

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The per-parameter views (G, *shape) of a (G, P) matrix."""
        out, offset = {}, 0
        for name, shape, numel in self.shapes:
            out[name] = flat[:, offset : offset + numel].view(len(flat), *shape)
            offset += numel
        return out

    def _sequential(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return _run(self.model, params, "", x, self.bmm)

    def _mrl(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
        """MRLModel.forward on (G, B, ...) inputs, layer by layer."""
        m: MRLModel = self.model  # type: ignore[assignment]
        both = [
            _run(m.global_ex, params, "global_ex.", x, self.bmm),
            _run(m.local_ex, params, "local_ex.", x, self.bmm),
        ]
        r = _linear(torch.cat(both, dim=2), params, "projector.", self.bmm)
        heads = [_linear(r[..., : m.dims[0]], params, "global_head.", self.bmm)]
        for i, d in enumerate(m.dims[1:]):
            heads.append(_linear(r[..., :d], params, f"local_heads.{i}.", self.bmm))
        return heads

    def __call__(
        self, params: torch.Tensor | dict[str, torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        """Logits (G, B, C) of each client's parameters, a (G, P) matrix or per-parameter
        tensors (G, *shape), on its own inputs x (G, B, ...)."""
        return self._forward(self.views(params) if torch.is_tensor(params) else params, x)


def sample_cross_entropy(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy (G, B) of logits (G, B, C)."""
    flat = nn.functional.cross_entropy(
        output.reshape(-1, output.shape[-1]), y.reshape(-1), reduction="none"
    )
    return flat.view(y.shape)


SampleLoss = Callable[[object, torch.Tensor], torch.Tensor]  # (output, y (G, B)) -> (G, B)


def train_group(
    group: GroupModel,
    start: torch.Tensor,
    splits: Sequence[Split],
    train: TrainConfig,
    generators: Sequence[torch.Generator],
    loss_fn: SampleLoss = sample_cross_entropy,
    clip: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train G clients for `train.epochs` epochs of minibatch SGD from `start` ((P,) for
    all, or (G, P)); returns their parameters (G, P) and mean batch losses (G,).
    `loss_fn` gives per-sample losses (a batch's loss is their mean, as in sgd_epochs);
    `clip` clips each client's gradient norm, as torch's clip_grad_norm_ does.

    Clients are ordered by their number of steps, longest first, so that the clients
    still training at any step are a prefix: a step computes only on them (no client
    pads another's)."""
    g, b = len(splits), train.batch_size
    n = torch.tensor([len(split[0]) for split in splits])
    order = torch.argsort(-n, stable=True)
    x, y, n = stack([splits[int(k)] for k in order])
    generators = [generators[int(k)] for k in order]
    w = start.expand(g, group.size) if start.dim() == 1 else start[order]
    layout = GroupLayout(group, g)
    params = layout.of(w)
    velocity = list(layout.zeros().values()) if train.momentum else []
    steps_of = (n + b - 1) // b  # (G,), non-increasing
    steps = int(steps_of[0])
    training = [int((steps_of > s).sum()) for s in range(steps)]  # the prefix at step s
    slots = torch.arange(steps * b)[None, :] < n[:, None]  # (G, steps * b): real samples
    weight_of = slots.float().view(g, steps, b)
    share_of = weight_of / weight_of.sum(2, keepdim=True).clamp_(min=1)  # of a batch's loss
    loss_sum = torch.zeros(g, dtype=torch.float64)
    longest = x.shape[1]
    x, y = x.reshape(g * longest, *x.shape[2:]), y.reshape(-1)  # row k * longest + i
    base = (torch.arange(g) * longest)[:, None]
    hand = (
        loss_fn is sample_cross_entropy
        and train.precision == "fp32"
        and differentiable_by_hand(group.model, x.dim() - 1)
    )
    if hand:
        x, patched = step_inputs(group.model, x)
        classes = list(group.model.children())[-1].out_features
    prefixes: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    for _ in range(train.epochs):
        index = torch.zeros(g, steps * b, dtype=torch.long)
        orders = [torch.randperm(int(k), generator=r) for k, r in zip(n, generators, strict=True)]
        index[slots] = torch.cat(orders)
        index = index.view(g, steps, b)
        if hand:  # (G, steps, B, classes): no more numbers than x's unless classes > features
            labels = y.index_select(0, (base + index.view(g, -1)).view(-1)).view(g, steps, b)
            target_of = loss_targets(labels, share_of, classes)
        for s, m in enumerate(training):
            if m not in prefixes:  # the clients still training: a prefix
                prefixes[m] = [v[:m] for v in params.values()], [v[:m] for v in velocity]
            weights, buffers = prefixes[m]
            picked = (base[:m] + index[:m, s]).view(-1)
            xs = x.index_select(0, picked).view(m, b, *x.shape[1:])
            if hand:
                losses, grads = hand_step(group.model, weights, xs, target_of[:m, s], patched,
                                          group.hand_bmm)  # fmt: skip
            else:
                ys = y.index_select(0, picked).view(m, b)
                losses, grads = _autograd_step(group, params, m, xs, ys, share_of[:m, s],
                                               loss_fn, train)  # fmt: skip
            if clip is not None:
                grads = _clipped(grads, clip)
            loss_sum[:m].add_(losses)
            _sgd_step(weights, grads, buffers, train, fused=not group.invariant)
    losses = (loss_sum / (steps_of * train.epochs)).float()
    back = torch.argsort(order)
    return layout.packed(params, back), losses[back]


class GroupLayout:
    """A group's parameters laid out parameter by parameter: parameter p of the G
    clients is one (G, n_p) block, n_p its size, so that the first m clients' copies of
    it are one contiguous tensor, as torch's fused SGD wants them (`_sgd_step`). For an
    invariant group (GroupModel.invariant), n_p is rounded up to a multiple of 16, so
    that every client's copy starts 64-byte aligned, as group_bmm wants its operands
    (else it copies them)."""

    def __init__(self, group: GroupModel, g: int) -> None:
        self.group, self.shapes, self.g = group, group.shapes, g
        align = ALIGN if group.invariant else 1
        self.widths = [-(-numel // align) * align for _, _, numel in self.shapes]

    def zeros(self) -> dict[str, torch.Tensor]:
        """Zero parameters: per name, a (G, *shape) view of its block."""
        blocks = torch.zeros(self.g * sum(self.widths)).split([self.g * w for w in self.widths])
        return {
            name: block.view(self.g, width)[:, :numel].view(self.g, *shape)
            for (name, shape, numel), block, width in zip(
                self.shapes, blocks, self.widths, strict=True
            )  # fmt: skip
        }

    def of(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flat parameter rows (G, P) laid out."""
        params = self.zeros()
        for view, part in zip(params.values(), self.group.views(flat).values(), strict=True):
            view.copy_(part)
        return params

    def packed(self, params: dict[str, torch.Tensor], order: torch.Tensor) -> torch.Tensor:
        """Laid-out parameters back to flat parameter rows (G, P), rows in `order`."""
        return torch.cat([v[order].reshape(self.g, -1) for v in params.values()], 1)


def _autograd_step(
    group: GroupModel,
    params: dict[str, torch.Tensor],
    m: int,
    x: torch.Tensor,
    y: torch.Tensor,
    share: torch.Tensor,
    loss_fn: SampleLoss,
    train: TrainConfig,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The first m clients' batch losses (m,) and gradients, by autograd; `share` (m, B)
    is each sample's share of its client's batch loss (0 for padding)."""
    leaves = {name: v[:m].detach().requires_grad_(True) for name, v in params.items()}
    with precision(train):
        per_sample = loss_fn(group(leaves, x), y.view(m, -1))
    losses = (per_sample * share).sum(1)
    grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
    return losses.detach(), list(grads)


def _clipped(grads: list[torch.Tensor], clip: float) -> list[torch.Tensor]:
    """Each client's gradients (row k of every tensor) scaled to norm at most `clip`."""
    squares = sum(g.flatten(1).square().sum(1) for g in grads)
    scale = (clip / (squares.sqrt() + 1e-6)).clamp(max=1.0)
    return [g * scale.view(-1, *[1] * (g.dim() - 1)) for g in grads]


@torch.no_grad()
def _sgd_step(
    weights: list[torch.Tensor],
    grads: list[torch.Tensor],
    momentum: list[torch.Tensor],
    train: TrainConfig,
    fused: bool,
) -> None:
    """torch.optim.SGD's step (weight decay, momentum without dampening), in place, on
    every parameter at once. With `fused`, torch's fused kernel: it takes every tensor
    to be contiguous (the weights and buffers of an unpadded GroupLayout are), and the
    numbers it leaves over from its vector loop may round differently (tests/
    test_batched.py), so which they are depends on the group's composition, which the
    planner fixes for any rank count. Else (an invariant group's) its multi-tensor
    kernels: bit for bit torch.optim.SGD's, client by client, in any group."""
    if fused:
        torch._fused_sgd_(weights, [g.contiguous() for g in grads], momentum,
                          weight_decay=train.weight_decay, momentum=train.momentum,
                          lr=train.lr, dampening=0.0, nesterov=False, maximize=False,
                          is_first_step=False)  # fmt: skip
        return
    if train.weight_decay:
        grads = torch._foreach_add(grads, weights, alpha=train.weight_decay)
    if train.momentum:
        torch._foreach_mul_(momentum, train.momentum)
        torch._foreach_add_(momentum, grads)
        grads = momentum
    torch._foreach_add_(weights, grads, alpha=-train.lr)


def train_as_group(
    group: GroupModel,
    start: torch.Tensor,
    tasks: Sequence[ClientTask],
    train: TrainConfig,
    loss_fn: SampleLoss = sample_cross_entropy,
    clip: float | None = None,
    head: Head | None = None,
) -> Iterator[tuple[ClientTask, torch.Tensor, ClientResult]]:
    """Train the tasks' clients as one group from `start` (`loss_fn` and `clip` as in
    train_group); yields, per task in order, the task, its trained parameters (P,) and
    its result (mean batch loss; accuracy of the trained model, through `head`, on the
    client's own test split, NaN if it has none)."""
    splits, gens = [t.train for t in tasks], [t.generator for t in tasks]
    trained, losses = train_group(group, start, splits, train, gens, loss_fn, clip)
    _, correct = group_scores(group, trained, [t.test for t in tasks], head)
    for k, task in enumerate(tasks):
        n_test = len(task.test[0])
        accuracy = int(correct[k]) / n_test if n_test else math.nan
        yield task, trained[k], ClientResult(float(losses[k]), accuracy)


@torch.no_grad()
def group_scores(
    group: GroupModel, w: torch.Tensor, splits: Sequence[Split], head: Head | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed cross-entropy, correct predictions) of each client's parameters (G, P) on
    its own split; `head` picks the predicting logits from the model's output."""
    x, y, n = stack(splits)
    logits = group(w, x) if head is None else head(group(w, x))
    valid = torch.arange(x.shape[1])[None, :] < n[:, None]
    ce = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none"
    ).view(len(n), -1)
    right = (logits.argmax(-1) == y) & valid
    return (ce * valid).sum(1), right.sum(1)
