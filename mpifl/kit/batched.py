"""The one client path: how a client trains, alone or in a group, with the same result.

A method says how its clients of one model variant train with a `ClientTrainer` (the
model, its loss, a gradient-norm clip, the head that predicts); the trainer trains the
planner's groups. Each client's maths is its own: its own start, its own minibatch
order from its own random stream, its own sample count, the same SGD
(`training.sgd_update`). How it is computed depends on the model, the loss, the batch
size and the precision, never on which or how many clients share a group, so a
client's result is the same bits in any group (`train.group` is a speed knob):

- batched (`ClientTrainer.batched`): a model of mpifl's layers (a Sequential, or
  FedMRL's made of two) in fp32 on one torch thread, small enough that batching beats
  torch's own kernels client by client (`HAND_MAX_PARAMS`, and convolutions over a
  batch of at most `HAND_CONV_MAX` outputs; measured in docs/performance.md): each
  parameter of the G clients is one (G, ...) block (`GroupLayout`), every step runs the
  group's batches through the hand-written layers at once (`hand_backward.hand_step`),
  whose products give each client the result it gets alone (`group_matmul.group_bmm`).
  A client whose epoch is over leaves the step (no padding steps); a short last batch
  is masked.
- one by one (every other model, or precision): the module's own forward and autograd
  (`training.sgd_epochs`), each client from the module's initial buffers, with the
  global random stream (e.g. Dropout's) seeded from the client's own.

The loss is written once, per sample (`hand_backward.SampleLoss`; default
cross-entropy on the logits): a batch's loss is the mean over its samples either way.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from mpifl.config import Config
from mpifl.config.sections import TrainConfig
from mpifl.data.federated import Split
from mpifl.kit.group_matmul import ALIGN, group_bmm
from mpifl.kit.hand_backward import (
    SampleLoss,
    differentiable_by_hand,
    hand_logits,
    hand_step,
    loss_targets,
    output_rows,
    per_sample,
    step_inputs,
)
from mpifl.kit.task import ClientResult, ClientTask
from mpifl.kit.training import (
    Head,
    client_accuracies,
    clip_norms,
    get_flat,
    set_flat,
    sgd_epochs,
    sgd_update,
)

HAND_CONV_MAX = 2048  # a batch's largest convolution output (samples x positions) by hand
HAND_MAX_PARAMS = 100_000  # a model's parameters by hand: larger ones are bound by arithmetic
GROUP_NUMBERS = 2**23  # a group's parameters at most (32 MiB), unless one client has more


def conv_outputs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """The largest convolution output of the model on one sample, in positions (0 if it
    has no convolution)."""
    sizes = [0]
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: sizes.append(out[0, 0].numel()))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return max(sizes)


class GroupModel:
    """One model architecture applied to G stacked parameter vectors: the parameters'
    names, shapes and sizes, and views of a (G, P) matrix."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.shapes = [(name, p.shape, p.numel()) for name, p in model.named_parameters()]
        self.size = sum(numel for _, _, numel in self.shapes)

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The per-parameter views (G, *shape) of a (G, P) matrix."""
        out, offset = {}, 0
        for name, shape, numel in self.shapes:
            out[name] = flat[:, offset : offset + numel].view(len(flat), *shape)
            offset += numel
        return out


class ClientTrainer:
    """How a method's clients of one model variant train: `model` (a module the method
    owns; the trainer loads clients' parameters into it), the per-sample `loss` on its
    output (default cross-entropy on the logits), a gradient-norm `clip`, the `head`
    that picks the predicting logits from the output (accuracy on the client's own test
    split), `accuracies`: client metrics that are other heads' accuracies on it (from
    the same forward pass), and `update_norm`: whether to report the client metric
    `update_norm`, ||trained - start|| (summed in float64; one product for a group), and
    `proximal`: FedProx's mu, adding mu/2 ||w - start||^2 to each client's local loss.
    A partial client (`ClientTask.steps`) trains only its first steps."""

    def __init__(
        self,
        model: nn.Module,
        train: TrainConfig,
        input_shape: tuple[int, ...],
        loss: SampleLoss | None = None,
        clip: float | None = None,
        head: Head | None = None,
        accuracies: dict[str, Head] | None = None,
        update_norm: bool = False,
        proximal: float = 0.0,
    ) -> None:
        self.model, self.train, self.clip, self.loss = model, train, clip, loss
        self.proximal = proximal
        self.accuracies, self.update_norm = dict(accuracies or {}), update_norm
        self.heads = [head, *self.accuracies.values()]
        self.group = GroupModel(model)
        self.batched = (
            train.precision == "fp32"
            and all(p.requires_grad for p in model.parameters())
            and torch.get_num_threads() == 1
            and self.group.size <= HAND_MAX_PARAMS
            and differentiable_by_hand(model, len(input_shape))
            and train.batch_size * conv_outputs(model, input_shape) <= HAND_CONV_MAX
        )
        self.buffers = {name: b.clone() for name, b in model.named_buffers()}

    def group_size(self, cfg: Config) -> int:
        """Clients per planned group: `train.group` for a batched trainer (fewer if their
        parameters would pass GROUP_NUMBERS), 1 otherwise or when each client's memory
        is measured (`emulation.memory`)."""
        if not self.batched or cfg.emulation.memory != "analytic":
            return 1
        return max(1, min(cfg.train.group, GROUP_NUMBERS // self.group.size))

    def train_tasks(
        self,
        starts: Sequence[torch.Tensor],
        tasks: Sequence[ClientTask],
        offsets: Sequence[torch.Tensor] | None = None,
    ) -> Iterator[tuple[ClientTask, torch.Tensor, ClientResult]]:
        """Train the tasks' clients, client k from `starts[k]` (P,), adding `offsets[k]`
        (P,) to each of its gradients if given; yields, per task in order, the task, its
        trained parameters (P,) and its result (mean batch loss; accuracy of the trained
        model on the client's own test split, NaN if none)."""
        if not self.batched:
            for k, (task, start) in enumerate(zip(tasks, starts, strict=True)):
                offset = None if offsets is None else offsets[k]
                trained, result = self._alone(task, start, offset)
                yield task, trained, result
            return
        same = all(s is starts[0] for s in starts)
        start = starts[0] if same else torch.stack(list(starts))
        splits, gens = [t.train for t in tasks], [t.generator for t in tasks]
        trained, losses = train_group(
            self.group, start, splits, self.train, gens, self.loss, self.clip,
            [t.steps for t in tasks], self.proximal,
            None if offsets is None else torch.stack(list(offsets)),
        )  # fmt: skip
        tests = [t.test for t in tasks]
        _, correct = group_scores(self.group, trained, tests, self.heads, self.train.batch_size)
        norms = _norms(trained - start) if self.update_norm else None
        for k, task in enumerate(tasks):
            n_test = len(task.test[0])
            scores = [int(c) / n_test if n_test else math.nan for c in correct[:, k]]
            norm = None if norms is None else float(norms[k])
            yield task, trained[k], self._result(float(losses[k]), scores, norm)

    def _alone(
        self, task: ClientTask, start: torch.Tensor, offset: torch.Tensor | None
    ) -> tuple[torch.Tensor, ClientResult]:
        """One client through the module's own forward and autograd."""
        model = self.model
        set_flat(model, start)
        self._reset_buffers()
        x, y = task.train
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(task.generator.initial_seed())
            kwargs = {} if self.loss is None else {"loss_fn": self._batch_loss}
            loss = sgd_epochs(model, x, y, self.train, task.generator, clip=self.clip,
                              steps=task.steps, mu=self.proximal, offset=offset,
                              **kwargs)  # fmt: skip
        scores = client_accuracies(model, task.test, self.heads)
        self._reset_buffers()  # the method evaluates with this module too
        trained = get_flat(model)
        norm = float(_norms(trained - start)) if self.update_norm else None
        return trained, self._result(loss, scores, norm)

    @torch.no_grad()
    def _reset_buffers(self) -> None:
        """The module's buffers (BatchNorm's statistics) as they were at construction."""
        for name, buffer in self.model.named_buffers():
            buffer.copy_(self.buffers[name])

    def _result(self, loss: float, scores: list[float], norm: float | None) -> ClientResult:
        """The result of a client's mean batch loss, its heads' accuracies and its update
        norm (if measured)."""
        metrics = dict(zip(self.accuracies, scores[1:], strict=True))
        if norm is not None:
            metrics["update_norm"] = norm
        return ClientResult(loss, scores[0], metrics)

    def _batch_loss(self, output: object, y: torch.Tensor) -> torch.Tensor:
        """A batch's loss: the mean of `loss`'s per-sample losses."""
        return per_sample(self.loss, output, y).mean()


def _norms(updates: torch.Tensor) -> torch.Tensor:
    """The L2 norms of updates (P,) or (G, P) along their last dimension, in float64."""
    return torch.linalg.vector_norm(updates, dim=-1, dtype=torch.float64)


def group_size(cfg: Config, trainers: Sequence[ClientTrainer]) -> int:
    """Clients per planned group for a method whose variants train with `trainers`."""
    return min(t.group_size(cfg) for t in trainers)


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


def train_group(
    group: GroupModel,
    start: torch.Tensor,
    splits: Sequence[Split],
    train: TrainConfig,
    generators: Sequence[torch.Generator],
    loss_fn: SampleLoss | None = None,
    clip: float | None = None,
    steps: Sequence[int | None] | None = None,
    mu: float = 0.0,
    offsets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train G clients of a batched trainer for `train.epochs` epochs of minibatch SGD
    from `start` ((P,) for all, or (G, P)) under `loss_fn`'s per-sample losses (default
    cross-entropy on the logits), client k only its first `steps[k]` steps if not None;
    returns their parameters (G, P) and mean batch losses (G,). `clip` clips each
    client's gradient norm; `mu` adds FedProx's proximal term mu/2 ||w - start||^2;
    `offsets` (G, P) adds a constant to each client's every gradient (SCAFFOLD).

    Step t of the computation is step t of each client still training, whatever its
    epoch (a client's epochs follow one another); clients are ordered by their number
    of steps, longest first, so that the clients still training at any step are a
    prefix: a step computes only on them (no client pads another's)."""
    g, b = len(splits), train.batch_size
    n = torch.tensor([len(split[0]) for split in splits])
    total = (n + b - 1) // b * train.epochs
    if steps is not None and any(k is not None for k in steps):
        total = torch.tensor([t if k is None else min(k, t)
                              for k, t in zip(steps, total.tolist(), strict=True)])  # fmt: skip
    order = torch.argsort(-total, stable=True)
    x, y, n = stack([splits[int(k)] for k in order])
    total = total[order]
    w = start.expand(g, group.size) if start.dim() == 1 else start[order]
    layout = GroupLayout(group, g)
    params = layout.of(w)
    velocity = list(layout.zeros().values()) if train.momentum else []
    anchor = list(layout.of(w).values()) if mu else []
    shifts = [] if offsets is None else list(layout.of(offsets[order]).values())
    index, share_of = batch_schedule(n, total, b, [generators[int(k)] for k in order])
    longest_run = int(total[0]) if g else 0
    done_by = np.cumsum(np.bincount(total.numpy(), minlength=longest_run + 1))
    training = (g - done_by[:longest_run]).tolist()  # clients with more than s steps
    loss_sum = torch.zeros(g, dtype=torch.float64)
    longest = x.shape[1]
    x, y = x.reshape(g * longest, *x.shape[2:]), y.reshape(-1)  # row k * longest + i
    base = (torch.arange(g) * longest)[:, None]
    x, patched = step_inputs(group.model, x)
    pad = output_rows(group.model, b) - b  # the outputs' zero rows (hand_forward)
    share_of = nn.functional.pad(share_of, (0, pad))
    window = max(int((n.max() + b - 1) // b), 1)  # steps whose targets are made at once
    prefixes: dict[int, list[list[torch.Tensor]]] = {}
    for lo in range(0, len(training), window):
        at = index[:, lo : lo + window]
        labels = y.index_select(0, (base + at.reshape(g, -1)).view(-1)).view(at.shape)
        labels = nn.functional.pad(labels, (0, pad))
        shares = share_of[:, lo : lo + window]
        if loss_fn is None:  # (G, window, B, classes): as many numbers as x's, or fewer
            classes = list(group.model.children())[-1].out_features
            target_of = loss_targets(labels, shares, classes)
        for s, m in enumerate(training[lo : lo + window]):
            if m not in prefixes:  # the clients still training: a prefix
                prefixes[m] = [
                    [v[:m] for v in vs] for vs in (params.values(), velocity, anchor, shifts)
                ]
            weights, buffers, anchors, offset = prefixes[m]
            picked = (base[:m] + at[:m, s]).view(-1)
            xs = x.index_select(0, picked).view(m, b, *x.shape[1:])
            if loss_fn is None:
                losses, grads = hand_step(group.model, weights, xs, patched, group_bmm,
                                          target_of[:m, s])  # fmt: skip
            else:
                losses, grads = hand_step(group.model, weights, xs, patched, group_bmm,
                                          loss_fn=loss_fn, y=labels[:m, s],
                                          share=shares[:m, s])  # fmt: skip
            if clip is not None:
                clip_norms(grads, clip)
            loss_sum[:m].add_(losses)
            sgd_update(weights, grads, buffers, train.lr, train.momentum, train.weight_decay,
                       mu, anchors, offset)  # fmt: skip
    losses = (loss_sum / total.clamp(min=1)).float()
    back = torch.argsort(order)
    return layout.packed(params, back), losses[back]


def batch_schedule(
    n: torch.Tensor, total: torch.Tensor, b: int, generators: Sequence[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each client's minibatches over its `total` steps, as sgd_epochs draws them: per
    epoch a permutation of its n samples from its own generator, cut in batches of b
    (the last one short). Returns sample indices (G, T, b), T the most steps, and each
    slot's share of its batch's loss (G, T, b): 1 / batch length, 0 for padding."""
    g, steps = len(n), int(total.max()) if len(n) else 0
    index = torch.zeros(g, steps, b, dtype=torch.long)
    share = torch.zeros(g, steps, b)
    if not steps:
        return index, share
    per_epoch = (n + b - 1) // b
    epochs = torch.where(total > 0, (total + per_epoch - 1) // per_epoch.clamp(min=1), 0)
    drawn = torch.cat([torch.randperm(size, generator=gen)
                       for size, count, gen in zip(n.tolist(), epochs.tolist(), generators,
                                                   strict=True)
                       for _ in range(count)])  # fmt: skip
    block_owner = torch.repeat_interleave(torch.arange(g), epochs)  # a block: an epoch
    block_epoch = torch.arange(len(block_owner)) - torch.repeat_interleave(
        torch.cumsum(epochs, 0) - epochs, epochs
    )
    sizes = n[block_owner]
    owner = torch.repeat_interleave(block_owner, sizes)
    i = torch.arange(len(drawn)) - torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes)
    step = torch.repeat_interleave(block_epoch, sizes) * per_epoch[owner] + i // b
    kept = step < total[owner]
    owner, step, i = owner[kept], step[kept], i[kept]
    index[owner, step, i % b] = drawn[kept]
    share[owner, step, i % b] = 1.0 / torch.clamp(n[owner] - i // b * b, max=b).float()
    return index, share


class GroupLayout:
    """A group's parameters laid out parameter by parameter: parameter p of the G
    clients is one (G, n_p') block, n_p rounded up to a multiple of 16, so that every
    client's copy starts 64-byte aligned, as group_bmm wants its operands (else it
    copies them), and the first m clients' copies are one tensor."""

    def __init__(self, group: GroupModel, g: int) -> None:
        self.group, self.shapes, self.g = group, group.shapes, g
        self.widths = [-(-numel // ALIGN) * ALIGN for _, _, numel in self.shapes]

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


@torch.no_grad()
def group_scores(
    group: GroupModel,
    w: torch.Tensor,
    splits: Sequence[Split],
    heads: Sequence[Head | None],
    rows: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed cross-entropy of the first head (G,), correct predictions of each head
    (H, G)) of each client's parameters (G, P) of a batched trainer on its own split,
    through the hand-written forward; a head picks the predicting logits from the
    outputs (None: the outputs are the logits). Each split is scored in chunks of `rows`
    samples (the last zero-padded), so that every product has the same shape whatever
    the group: a client's scores do not depend on its group."""
    n = [len(split[0]) for split in splits]
    owner = torch.tensor([k for k, size in enumerate(n) for _ in range(0, size, rows)])
    summed, right = torch.zeros(len(n)), torch.zeros(len(heads), len(n), dtype=torch.long)
    if not len(owner):
        return summed, right
    x, y, valid = _chunks(splits, rows)
    v = len(owner)
    flat, patched = step_inputs(group.model, x.reshape(v * rows, *x.shape[2:]))
    weights = list(GroupLayout(group, v).of(w[owner]).values())
    outputs = hand_logits(group.model, weights, flat.view(v, rows, *flat.shape[1:]), patched,
                          group_bmm)  # fmt: skip
    logits = [(outputs if head is None else head(outputs))[:, :rows] for head in heads]
    ce = nn.functional.cross_entropy(
        logits[0].reshape(-1, logits[0].shape[-1]), y.reshape(-1), reduction="none"
    ).view(v, rows)
    summed.index_add_(0, owner, (ce * valid).sum(1))
    for h, z in enumerate(logits):
        right[h].index_add_(0, owner, ((z.argmax(-1) == y) & valid).sum(1))
    return summed, right


def _chunks(splits: Sequence[Split], rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, y, valid): the splits cut into chunks of `rows` samples, client by client, the
    last of each zero-padded: x (V, rows, ...), y (V, rows), valid (V, rows)."""
    parts = [
        (x[lo : lo + rows], y[lo : lo + rows])
        for x, y in splits
        for lo in range(0, len(x), rows)
    ]  # fmt: skip
    x, y, n = stack(parts)
    pad = rows - x.shape[1]
    x = nn.functional.pad(x, (0,) * (2 * (x.dim() - 2)) + (0, pad))
    y = nn.functional.pad(y, (0, pad))
    return x, y, torch.arange(rows)[None, :] < n[:, None]
