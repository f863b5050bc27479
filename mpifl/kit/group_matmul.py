"""Batched matrix products whose result for one client is the one it gets alone.

MKL rounds a matrix product in an order that depends on where its operands and result
sit in memory (their 64-byte alignment). A client's matrices inside a group's stacked
tensor start wherever the group's layout puts them, so the same client rounded
differently in different groups, and a stateful method's results changed with the rank
count (its groups form within each rank: REFT's 1- and 2-rank runs differed in the last
bit). `group_bmm` gives every client's operands and result a 64-byte-aligned start, as
a tensor of its own has, copying the operands that lack it, in their layout (row- or
column-major matrices take different paths too); and a batch of one, which MKL
computes another way than a batch, runs as two. tests/test_batched.py checks it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

Bmm = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
ALIGN = 16  # float32 numbers in 64 bytes


def aligned(t: torch.Tensor, m: int | None = None) -> torch.Tensor:
    """t (m, rows, cols), or a copy in the same layout (row- or column-major matrices)
    whose every matrix starts 64-byte aligned; with `m`, t's matrices repeated to m. The
    copy is one padding of the matrices as flat rows (a copy into a strided view took
    eight times as long)."""
    if m is None and t.stride(0) % ALIGN == 0 and t.data_ptr() % 64 == 0 and t.stride(0):
        return t  # (float32: a stride of 16 numbers is 64 bytes)
    m, rows, cols = m or t.shape[0], *t.shape[1:]
    column_major = t.stride(1) == 1 and t.stride(2) != 1
    matrices = t.transpose(1, 2) if column_major else t
    size = rows * cols
    flat = matrices.reshape(t.shape[0], size).expand(m, size)
    out = nn.functional.pad(flat, (0, -size % ALIGN))[:, :size].view(m, *matrices.shape[1:])
    return out.transpose(1, 2) if column_major else out


def aligned_rows(rows: int, cols: int) -> int:
    """The fewest rows r' >= rows whose (r', cols) float32 matrices, one after another,
    each start 64-byte aligned."""
    step = ALIGN // math.gcd(cols, ALIGN)
    return -(-rows // step) * step


def group_bmm(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a[k] @ b[k] (+ bias[k] on every row) for each client k, as each would get alone:
    a (m, r, n), b (m, n, c), bias (m, c). The result is a view (m, r, c) of torch's
    (m, r', c) product, r' >= r the rows a is zero-padded to so that every client's
    result starts 64-byte aligned (r' c a multiple of 16): MKL rounds by the result's
    alignment too, and an aligned buffer of another layout made torch multiply the
    matrices one by one (tens of times slower for small ones)."""
    m, rows, cols = a.shape[0], a.shape[1], b.shape[2]
    padded = rows if rows * cols % ALIGN == 0 else aligned_rows(rows, cols)
    if padded != rows:
        a = nn.functional.pad(a, (0, 0, 0, padded - rows))
    if m == 1:  # a batch of one goes another way than a batch: run two
        a, b = aligned(a, 2), aligned(b, 2)
        bias = None if bias is None else bias.expand(2, -1)
    else:
        a, b = aligned(a), aligned(b)
    out = torch.bmm(a, b) if bias is None else torch.baddbmm(bias.unsqueeze(1), a, b)
    return out if m > 1 and padded == rows else out[:m, :rows]
