"""Base class of data sets whose client data is generated on demand from the client id."""

from __future__ import annotations

from abc import abstractmethod
from functools import lru_cache

import numpy as np

from mpifl.data.checks import CACHED_CLIENTS
from mpifl.data.federated import FederatedData, Split


class GeneratedData(FederatedData):
    """Clients' (train + test) samples come from `generate(client, n)`; the first
    `n_train[client]` are its training split, the rest its own test split."""

    def __init__(self, n_train: np.ndarray, n_test: np.ndarray) -> None:
        self.n_train, self.n_test = n_train, n_test
        self._client = lru_cache(maxsize=CACHED_CLIENTS)(self._generate_client)

    @abstractmethod
    def generate(self, key: int, n: int) -> Split:
        """n samples of the stream `key` (a client id, or a server-side key)."""

    def _generate_client(self, client: int) -> Split:
        return self.generate(client, int(self.n_train[client] + self.n_test[client]))

    def client_train(self, client: int) -> Split:
        x, y = self._client(client)
        n = int(self.n_train[client])
        return x[:n], y[:n]

    def client_test(self, client: int) -> Split:
        x, y = self._client(client)
        n = int(self.n_train[client])
        return x[n:], y[n:]
