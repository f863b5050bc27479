"""FedProx's Synthetic(alpha, beta): each client's data generated on demand from its id.

Client k: u_k ~ N(0, alpha), B_k ~ N(0, beta); W_k, b_k ~ N(u_k, 1);
x ~ N(v_k, diag(j^-1.2)) with v_k[j] ~ N(B_k, 1); y = argmax(W_k x + b_k).
The global test set pools the test splits of the first clients (at most 200); the
proxy set is drawn from the family's centre (u = B = 0) and belongs to no client.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from mpifl.data.federated import Split
from mpifl.data.generated import GeneratedData
from mpifl.streams import Purpose, generator

GLOBAL_TEST_CLIENTS = 200
PROXY_KEY = 2**62  # a key no client id reaches


class SyntheticData(GeneratedData):
    """Synthetic(alpha, beta) with lognormal client sizes; nothing is materialised up front."""

    def __init__(self, data: SimpleNamespace, n_clients: int, seed: int) -> None:
        syn = data.synthetic
        self.alpha, self.beta = syn.alpha, syn.beta
        self.features, self.n_classes = syn.features, syn.classes
        self.seed = seed
        self.input_shape = (syn.features,)
        rng = generator(seed, Purpose.SYNTHETIC, -1, n_clients)
        sizes = syn.samples_mean * np.exp(syn.samples_sigma * rng.standard_normal(n_clients))
        total = np.maximum(np.round(sizes).astype(np.int64), data.min_samples + 1)
        n_test = np.floor(data.local_test_fraction * total).astype(np.int64)
        super().__init__(total - n_test, n_test)
        share = data.proxy_fraction / (1 - data.proxy_fraction)
        self._proxy_size = max(1, int(round(share * total[:GLOBAL_TEST_CLIENTS].sum())))
        self._sigma = np.arange(1, self.features + 1, dtype=np.float64) ** -1.2

    def generate(self, key: int, n: int) -> Split:
        rng = generator(self.seed, Purpose.SYNTHETIC, 0, key)
        centred = key == PROXY_KEY
        u = 0.0 if centred else rng.normal(0, np.sqrt(self.alpha))
        b_mean = 0.0 if centred else rng.normal(0, np.sqrt(self.beta))
        w = rng.normal(u, 1, size=(self.features, self.n_classes))
        b = rng.normal(u, 1, size=self.n_classes)
        v = rng.normal(b_mean, 1, size=self.features)
        x = v + np.sqrt(self._sigma) * rng.standard_normal((n, self.features))
        y = np.argmax(x @ w + b, axis=1)
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))

    def global_test(self) -> Split:
        parts = [self.client_test(k) for k in range(min(self.n_clients, GLOBAL_TEST_CLIENTS))]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def proxy(self) -> Split:
        return self.generate(PROXY_KEY, self._proxy_size)
