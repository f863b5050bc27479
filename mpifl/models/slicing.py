"""Structured width slicing: a narrower dense model as a selection of a global model's units.

A selection keeps, for every hidden layer (each Conv2d and every Linear but the last),
a subset of its output channels/units; the next layer keeps the matching inputs; input
channels of the first layer and the classes of the last stay full. `SliceMap` gives,
for every element of the narrow model's flat parameter vector, its index in the global
model's flat vector, so extraction is a gather and aggregation a scatter.

Selections: "prefix" (the first k units, nested like HeteroFL), "rolling" (a window that
moves by one block per round, like FedRolex), "magnitude" (largest L1 norm in the
current global model; this is also REFT's structured L1 pruning).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mpifl.config.algorithms import SELECTIONS


@dataclass(frozen=True)
class Layout:
    """Where each hidden layer of a model family sits, measured once from the global model."""

    hidden: tuple[int, ...]  # module positions of the hidden (sliceable) layers
    sizes: tuple[int, ...]  # their global output sizes
    flatten_hw: int  # spatial positions per channel at the Flatten (1 for an MLP)


def layout(model: nn.Sequential) -> Layout:
    """The hidden layers of a Sequential built by mpifl's model builders."""
    weighted = [i for i, m in enumerate(model) if isinstance(m, nn.Linear | nn.Conv2d)]
    hidden = tuple(weighted[:-1])
    sizes = tuple(_out_size(model[i]) for i in hidden)
    return Layout(hidden, sizes, _flatten_hw(model))


def _out_size(m: nn.Module) -> int:
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


def _flatten_hw(model: nn.Sequential) -> int:
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    flatten = next(i for i, m in enumerate(model) if isinstance(m, nn.Flatten))
    if not convs or flatten == 0:
        return 1
    first_linear = model[flatten + 1]
    channels = convs[-1].out_channels
    return first_linear.in_features // channels


def select_units(
    lay: Layout,
    keep: tuple[int, ...],
    selection: str,
    round_: int = 0,
    global_model: nn.Sequential | None = None,
) -> list[np.ndarray]:
    """Sorted global unit indices kept in each hidden layer; keep[i] units of layer i."""
    chosen = []
    for pos, size, k in zip(lay.hidden, lay.sizes, keep, strict=True):
        if selection == "prefix" or k == size:
            idx = np.arange(k)
        elif selection == "rolling":
            start = (round_ * max(1, size // 8)) % size  # one block (1/8 of the layer) a round
            idx = np.sort((start + np.arange(k)) % size)
        elif selection == "magnitude":
            if global_model is None:
                raise ValueError("magnitude selection needs the global model")
            w = global_model[pos].weight.detach()
            norms = w.abs().reshape(w.shape[0], -1).sum(dim=1).numpy()
            idx = np.sort(np.argsort(-norms, kind="stable")[:k])
        else:
            raise ValueError(f"unknown selection {selection!r}; use one of {SELECTIONS}")
        chosen.append(idx.astype(np.int64))
    return chosen


class SliceMap:
    """Global flat indices of a narrow model's parameters (in its parameters() order)."""

    def __init__(self, global_model: nn.Sequential, units: list[np.ndarray]) -> None:
        lay = layout(global_model)
        offsets, off = {}, 0
        for p in global_model.parameters():
            offsets[id(p)] = off
            off += p.numel()
        self.global_size = off
        kept = dict(zip(lay.hidden, units, strict=True))
        parts: list[np.ndarray] = []
        current: np.ndarray | None = None  # global indices of the live channels/features
        for pos, m in enumerate(global_model):
            if isinstance(m, nn.Flatten) and current is not None and lay.flatten_hw > 1:
                hw = lay.flatten_hw
                current = (current[:, None] * hw + np.arange(hw)[None, :]).reshape(-1)
            if isinstance(m, nn.Linear | nn.Conv2d):
                n_in = m.in_features if isinstance(m, nn.Linear) else m.in_channels
                ins = np.arange(n_in) if current is None else current
                outs = kept.get(pos, np.arange(_out_size(m)))
                inner = int(np.prod(m.weight.shape[2:])) if m.weight.dim() > 2 else 1
                base = offsets[id(m.weight)]
                rows = (outs[:, None] * n_in + ins[None, :]) * inner
                parts.append((base + rows[..., None] + np.arange(inner)).reshape(-1))
                if m.bias is not None:
                    parts.append(offsets[id(m.bias)] + outs)
                current = outs
            elif isinstance(m, nn.GroupNorm | nn.LayerNorm):
                parts += [offsets[id(m.weight)] + current, offsets[id(m.bias)] + current]
        self.index = torch.from_numpy(np.concatenate(parts))

    @property
    def size(self) -> int:
        """Elements of the narrow model."""
        return self.index.numel()

    def extract(self, global_flat: torch.Tensor) -> torch.Tensor:
        """The narrow model's flat parameters taken from the global flat vector."""
        return global_flat[self.index]

    def scatter(self, narrow_flat: torch.Tensor) -> torch.Tensor:
        """A global-size vector holding `narrow_flat` at its coordinates, zeros elsewhere."""
        out = torch.zeros(self.global_size, dtype=narrow_flat.dtype)
        out[self.index] = narrow_flat
        return out

    def mask(self) -> torch.Tensor:
        """0/1 float32 vector of the global size: the coordinates this model covers."""
        return self.scatter(torch.ones(self.size, dtype=torch.float32))
