"""The W1 benchmark data (docs/benchmarks.md, W1): synthetic 3x32x32 inputs, 10 classes.

Class c has a fixed pattern mu_c drawn once from N(0, 1) with seed 0 (10x3x32x32); a
sample of class c is mu_c + noise * N(0, 1). Client k draws its labels uniformly and its
noise from numpy's default_rng(k). The global test and proxy sets come from keys above
every client id. Independent of run.seed, so that any simulator can rebuild the same data.
"""

from __future__ import annotations

import numpy as np
import torch

from mpifl.config.sections import DataConfig
from mpifl.data.federated import Split
from mpifl.data.generated import GeneratedData

N_CLASSES = 10
SHAPE = (3, 32, 32)
TEST_KEY, PROXY_KEY = 10**12, 10**12 + 1
TEST_SIZE = 2000


def class_patterns() -> np.ndarray:
    """mu: (10, 3, 32, 32) float32, from N(0, 1) with seed 0."""
    return np.random.default_rng(0).standard_normal((N_CLASSES, *SHAPE)).astype(np.float32)


def w1_samples(mu: np.ndarray, key: int, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """n samples of the stream `key`: labels uniform, x = mu[y] + noise * N(0, 1)."""
    rng = np.random.default_rng(key)
    y = rng.integers(0, N_CLASSES, size=n)
    x = mu[y] + np.float32(noise) * rng.standard_normal((n, *SHAPE), dtype=np.float32)
    return x, y


class W1Data(GeneratedData):
    """Every client holds `data.w1.samples` samples (train + own test)."""

    def __init__(self, data: DataConfig, n_clients: int) -> None:
        total = data.w1.samples
        n_test = int(np.floor(data.local_test_fraction * total))
        super().__init__(
            np.full(n_clients, total - n_test, np.int64), np.full(n_clients, n_test, np.int64)
        )
        self.noise = data.w1.noise
        self.input_shape, self.n_classes = SHAPE, N_CLASSES
        self._mu = class_patterns()
        self._proxy_size = max(1, int(round(data.proxy_fraction * TEST_SIZE)))

    def generate(self, key: int, n: int) -> Split:
        x, y = w1_samples(self._mu, key, n, self.noise)
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    def global_test(self) -> Split:
        return self.generate(TEST_KEY, TEST_SIZE)

    def proxy(self) -> Split:
        return self.generate(PROXY_KEY, self._proxy_size)
