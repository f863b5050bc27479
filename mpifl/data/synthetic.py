"""FedProx's Synthetic(alpha, beta): each client's data generated on demand from its id.

As FedProx's generator (alpha and beta are standard deviations): client k has
u_k ~ N(0, alpha^2), B_k ~ N(0, beta^2); W_k, b_k ~ N(u_k, 1); x ~ N(v_k, diag(j^-1.2))
with v_k[j] ~ N(B_k, 1); y = argmax(W_k x + b_k). Client sizes (train + test) are
floor(lognormal(4, 2)) + 50 by default, FedProx's sizes. The global test set pools the
test splits of the first clients (at most 200). The proxy set is drawn from those same
clients' input distributions (fresh samples, labelled by each client's own W_k, b_k), in
proportion to their sizes: it resembles the clients' data but is none of it.
"""

from __future__ import annotations

import numpy as np
import torch

from mpifl.config.sections import DataConfig
from mpifl.data.federated import Split
from mpifl.data.generated import GeneratedData
from mpifl.streams import Purpose, generator

GLOBAL_TEST_CLIENTS = 200


class SyntheticData(GeneratedData):
    """Synthetic(alpha, beta) with lognormal client sizes; nothing is materialised up front."""

    def __init__(self, data: DataConfig, n_clients: int, seed: int) -> None:
        syn = data.synthetic
        self.alpha, self.beta = syn.alpha, syn.beta
        self.features, self.n_classes = syn.features, syn.classes
        self.seed = seed
        self.input_shape = (syn.features,)
        rng = generator(seed, Purpose.SYNTHETIC, -1, n_clients)
        sizes = np.exp(syn.samples_log_mean + syn.samples_sigma * rng.standard_normal(n_clients))
        total = np.floor(np.minimum(sizes, syn.samples_max)).astype(np.int64) + syn.samples_offset
        total = np.clip(total, data.min_samples + 1, syn.samples_max)
        n_test = np.floor(data.local_test_fraction * total).astype(np.int64)
        super().__init__(total - n_test, n_test)
        share = data.proxy_fraction / (1 - data.proxy_fraction)
        pooled = total[:GLOBAL_TEST_CLIENTS]
        self._proxy_sizes = _apportion(max(1, int(round(share * pooled.sum()))), pooled)
        self._sigma = np.arange(1, self.features + 1, dtype=np.float64) ** -1.2

    def generate(self, key: int, n: int) -> Split:
        return self._samples(key, n, 0)

    def _samples(self, client: int, n: int, stream: int) -> Split:
        """n samples of client `client`'s distribution; stream 0 is its own data, stream 1
        the proxy's fresh draws from the same distribution."""
        rng = generator(self.seed, Purpose.SYNTHETIC, 0, client)
        u = rng.normal(0, self.alpha)
        b_mean = rng.normal(0, self.beta)
        w = rng.normal(u, 1, size=(self.features, self.n_classes))
        b = rng.normal(u, 1, size=self.n_classes)
        v = rng.normal(b_mean, 1, size=self.features)
        if stream:
            rng = generator(self.seed, Purpose.SYNTHETIC, stream, client)
        x = v + np.sqrt(self._sigma) * rng.standard_normal((n, self.features))
        y = np.argmax(x @ w + b, axis=1)
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))

    def global_test(self) -> Split:
        parts = [self.client_test(k) for k in range(min(self.n_clients, GLOBAL_TEST_CLIENTS))]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def proxy(self) -> Split:
        parts = [self._samples(k, int(n), 1) for k, n in enumerate(self._proxy_sizes) if n]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _apportion(total: int, weights: np.ndarray) -> np.ndarray:
    """`total` split in proportion to `weights` (largest remainders)."""
    exact = total * weights / weights.sum()
    out = np.floor(exact).astype(np.int64)
    out[np.argsort(out - exact, kind="stable")[: total - out.sum()]] += 1
    return out
