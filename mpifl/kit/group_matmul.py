"""Batched matrix products whose result for one client is the one it gets alone.

MKL rounds a matrix product in an order that depends on where its operands and result
sit in memory (their 64-byte alignment). A client's matrices inside a group's stacked
tensor start wherever the group's layout puts them, so the same client rounded
differently in different groups, and a stateful method's results changed with the rank
count (its groups form within each rank: REFT's 1- and 2-rank runs differed in the last
bit). `group_bmm` gives every client's operands and result a 64-byte-aligned start, as
a tensor of its own has, copying the operands that lack it, in their layout (row- or
column-major matrices take different paths too); and a batch of one, which MKL
computes another way than a batch, runs as two. tests/test_batched.py checks it. The
copies cost time, so only methods whose groups change with the rank count use it
(`batched.pinned_group_size`); others, whose groups the planner fixes, use `fast_bmm`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Bmm = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
ALIGN = 16  # float32 numbers in 64 bytes


def aligned_empty(m: int, rows: int, cols: int) -> torch.Tensor:
    """An uninitialised (m, rows, cols) float32 tensor whose every matrix starts 64-byte
    aligned (torch's allocations do)."""
    size = rows * cols
    return torch.empty(m, -(-size // ALIGN) * ALIGN)[:, :size].view(m, rows, cols)


def aligned(t: torch.Tensor, m: int | None = None) -> torch.Tensor:
    """t (m, rows, cols), or a copy in the same layout (row- or column-major matrices)
    whose every matrix starts 64-byte aligned; with `m`, t's matrices repeated to m."""
    step = t.stride(0) * t.element_size()
    if m is None and step and step % 64 == 0 and t.data_ptr() % 64 == 0:
        return t
    m, rows, cols = m or len(t), *t.shape[1:]
    if t.stride(1) == 1 and t.stride(2) != 1:  # column-major matrices
        out = aligned_empty(m, cols, rows).transpose(1, 2)
    else:
        out = aligned_empty(m, rows, cols)
    return out.copy_(t.expand(m, rows, cols))


def group_bmm(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a[k] @ b[k] (+ bias[k] on every row) for each client k, as each would get alone:
    a (m, r, n), b (m, n, c), bias (m, c); no autograd (see `GroupBmm`)."""
    m = len(a)
    if m == 1:  # a batch of one goes another way than a batch: run two
        a, b = aligned(a, 2), aligned(b, 2)
    else:
        a, b = aligned(a), aligned(b)
    rows, cols = a.shape[1], b.shape[2]
    if rows * cols % ALIGN == 0:  # torch's own result is aligned client by client
        out = torch.bmm(a, b)[:m]
    else:  # into an aligned buffer, then packed: a padded layout would change later kernels
        out = aligned_empty(len(a), rows, cols)
        out = torch.bmm(a, b, out=out)[:m].contiguous()
    return out if bias is None else out.add_(bias.unsqueeze(1))


def fast_bmm(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a[k] @ b[k] (+ bias[k] on every row), as torch computes it: a client's last bit
    may depend on its group (for groups that do not change with the rank count)."""
    return torch.bmm(a, b) if bias is None else torch.baddbmm(bias.unsqueeze(1), a, b)


class GroupBmm(torch.autograd.Function):
    """`group_bmm` under autograd: its backward's products are group_bmm's too."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, a: torch.Tensor, b: torch.Tensor
                ) -> torch.Tensor:  # fmt: skip
        ctx.save_for_backward(a, b)
        return group_bmm(a, b)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        a, b = ctx.saved_tensors
        return group_bmm(grad, b.transpose(1, 2)), group_bmm(a.transpose(1, 2), grad)
