"""FedMRL's client model: a shared global extractor/header G and a personal heterogeneous
extractor F_k with a projector P_k and nested (Matryoshka) headers.

R = concat(G_ex(x), F_ex(x)) (d1 + d2), R' = P(R) (d2). The global header sees the prefix
R'[:, :d1]; for every further nested size d in dims[1:], a local header sees R'[:, :d].
Inference uses the local header on the full R'.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mpifl.models.cnn import conv_blocks
from mpifl.models.spec import ModelSpec


def extractor(spec: ModelSpec, fc: int, out: int) -> nn.Sequential:
    """The configured architecture's feature layers, then Linear(fc) ReLU Linear(out).

    The representation is the last Linear's output without a ReLU: with one, over half of
    the units died on small client data sets and the model learnt only class priors."""
    if spec.arch == "cnn":
        layers, width = conv_blocks(spec)
    else:
        layers, width = [], math.prod(spec.input_shape)
    layers += [nn.Flatten(), nn.Linear(width, fc), nn.ReLU(), nn.Linear(fc, out)]
    return nn.Sequential(*layers)


def standalone_model(spec: ModelSpec, fc: int, dim: int) -> nn.Sequential:
    """FedMRL's personal extractor F_k alone (fc width `fc`, `dim` outputs), then a header:
    what its paper's Standalone baseline trains."""
    return nn.Sequential(*extractor(spec, fc, dim), nn.Linear(dim, spec.n_classes))


class MRLModel(nn.Module):
    """G (global_ex, global_head) and the personal part (local_ex, projector, local heads)."""

    def __init__(self, spec: ModelSpec, global_fc: int, local_fc: int, dims: list[int]) -> None:
        super().__init__()
        d1, d2 = dims[0], dims[-1]
        self.dims = list(dims)
        self.global_ex = extractor(spec, global_fc, d1)
        self.global_head = nn.Linear(d1, spec.n_classes)
        self.local_ex = extractor(spec, local_fc, d2)
        self.projector = nn.Linear(d1 + d2, d2)
        self.local_heads = nn.ModuleList(nn.Linear(d, spec.n_classes) for d in dims[1:])

    def global_parameters(self) -> list[nn.Parameter]:
        """G: what is uploaded and aggregated."""
        return [*self.global_ex.parameters(), *self.global_head.parameters()]

    def local_modules(self) -> list[nn.Module]:
        """The personal part's modules, in a fixed order."""
        return [*self.local_ex.modules(), self.projector, *self.local_heads]

    def local_parameters(self) -> list[nn.Parameter]:
        """F_k, P_k and the local headers: client state that never leaves the client."""
        return [
            *self.local_ex.parameters(),
            *self.projector.parameters(),
            *self.local_heads.parameters(),
        ]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of the global header, then of each local header (the last is inference)."""
        r = self.projector(torch.cat([self.global_ex(x), self.local_ex(x)], dim=1))
        heads = [self.global_head(r[:, : self.dims[0]])]
        heads += [head(r[:, :d]) for head, d in zip(self.local_heads, self.dims[1:], strict=True)]
        return heads
