"""The federated data set seen by the engine: per-client train/test splits, global test, proxy."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

Split = tuple[torch.Tensor, torch.Tensor]


class FederatedData(ABC):
    """Client data by id, plus server-side global test and proxy sets."""

    input_shape: tuple[int, ...]
    n_classes: int
    n_train: np.ndarray  # int64 per client
    n_test: np.ndarray  # int64 per client

    @property
    def n_clients(self) -> int:
        return len(self.n_train)

    @abstractmethod
    def client_train(self, client: int) -> Split:
        """(x, y) of the client's training split."""

    @abstractmethod
    def client_test(self, client: int) -> Split:
        """(x, y) of the client's own test split (same label mix as its training data)."""

    @abstractmethod
    def global_test(self) -> Split:
        """The global test set (never given to a client)."""

    @abstractmethod
    def proxy(self) -> Split:
        """The server's proxy set (never given to a client)."""


@dataclass
class Csr:
    """Variable-length index lists in two arrays: offsets (n+1) and flat indices."""

    offsets: np.ndarray
    indices: np.ndarray

    @classmethod
    def from_lists(cls, lists: list[np.ndarray]) -> Csr:
        offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(x) for x in lists])
        flat = np.concatenate(lists).astype(np.int64) if lists else np.empty(0, np.int64)
        return cls(offsets, flat)

    def row(self, i: int) -> np.ndarray:
        return self.indices[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


class PooledData(FederatedData):
    """A pooled array data set (digits, npz, ...) partitioned into clients by index lists."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        train: Csr,
        test: Csr,
        global_test_idx: np.ndarray,
        proxy_idx: np.ndarray,
        n_classes: int,
    ) -> None:
        self.x, self.y = x, y
        self.train, self.test = train, test
        self.global_test_idx, self.proxy_idx = global_test_idx, proxy_idx
        self.input_shape = tuple(x.shape[1:])
        self.n_classes = n_classes
        self.n_train = train.lengths()
        self.n_test = test.lengths()

    def _take(self, idx: np.ndarray) -> Split:
        t = torch.from_numpy(idx)
        return self.x[t], self.y[t]

    def client_train(self, client: int) -> Split:
        return self._take(self.train.row(client))

    def client_test(self, client: int) -> Split:
        return self._take(self.test.row(client))

    def global_test(self) -> Split:
        return self._take(self.global_test_idx)

    def proxy(self) -> Split:
        return self._take(self.proxy_idx)
