"""Label partitioners: assign pool indices to N clients (iid, Dirichlet, shards, FedMRL)."""

from __future__ import annotations

import numpy as np

from mpifl.errors import ConfigError

MAX_DRAWS = 100


def partition(
    labels: np.ndarray,
    n_clients: int,
    scheme: str,
    rng: np.random.Generator,
    *,
    alpha: float = 0.5,
    classes_per_client: int = 2,
    min_samples: int = 1,
) -> list[np.ndarray]:
    """Split positions 0..len(labels)-1 over clients; every client gets >= min_samples."""
    n_classes = int(labels.max()) + 1
    if len(labels) < n_clients * min_samples:
        raise ConfigError(
            "fleet.clients",
            n_clients,
            f"too many for {len(labels)} training samples at data.min_samples = {min_samples}",
        )
    if scheme in ("shards", "fedmrl") and classes_per_client > n_classes:
        raise ConfigError(
            "data.classes_per_client",
            classes_per_client,
            f"must be <= the number of classes ({n_classes})",
        )
    for _ in range(MAX_DRAWS):
        if scheme == "iid":
            parts = np.array_split(rng.permutation(len(labels)), n_clients)
        elif scheme == "dirichlet":
            parts = _dirichlet(labels, n_clients, n_classes, alpha, rng)
        else:
            parts = _class_subsets(
                labels, n_clients, n_classes, classes_per_client, scheme == "fedmrl", rng
            )
        if min(len(p) for p in parts) >= min_samples:
            return [np.sort(p) for p in parts]
    key = "data.alpha" if scheme == "dirichlet" else "data.classes_per_client"
    value = alpha if scheme == "dirichlet" else classes_per_client
    raise ConfigError(
        key,
        value,
        f"left a client with fewer than data.min_samples = {min_samples} samples in "
        f"{MAX_DRAWS} draws; use fewer clients, a larger alpha, or a smaller min_samples",
    )


def _by_class(labels: np.ndarray, n_classes: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.permutation(np.flatnonzero(labels == c)) for c in range(n_classes)]


def _split_by_shares(idx: np.ndarray, shares: np.ndarray) -> list[np.ndarray]:
    cuts = (np.cumsum(shares / shares.sum()) * len(idx)).round().astype(int)[:-1]
    return np.split(idx, cuts)


def _dirichlet(
    labels: np.ndarray, n: int, n_classes: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    buckets: list[list[np.ndarray]] = [[] for _ in range(n)]
    for idx in _by_class(labels, n_classes, rng):
        for k, piece in enumerate(_split_by_shares(idx, rng.dirichlet(np.full(n, alpha)))):
            buckets[k].append(piece)
    return [np.concatenate(b) for b in buckets]


def _class_subsets(
    labels: np.ndarray,
    n: int,
    n_classes: int,
    k: int,
    fedmrl: bool,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """k distinct classes per client.

    shards: each class's samples split equally over the clients holding it.
    fedmrl: client k's label mix is w_k ~ U(0.4, 0.6)^k normalised; every client gets the
    same size m, the largest that no class runs out of (some samples stay unused).
    """
    chosen = np.stack([rng.choice(n_classes, size=k, replace=False) for _ in range(n)])
    pools = _by_class(labels, n_classes, rng)
    buckets: list[list[np.ndarray]] = [[] for _ in range(n)]
    if not fedmrl:
        for c, idx in enumerate(pools):
            holders = np.nonzero(chosen == c)[0]
            if len(holders) == 0:
                continue  # a class nobody holds stays unused
            for holder, piece in zip(holders, np.array_split(idx, len(holders)), strict=True):
                buckets[holder].append(piece)
        return [np.concatenate(b) for b in buckets]
    shares = rng.uniform(0.4, 0.6, size=(n, k))
    shares /= shares.sum(axis=1, keepdims=True)
    demand = np.zeros(n_classes)
    np.add.at(demand, chosen, shares)
    size = min(len(pools[c]) / demand[c] for c in range(n_classes) if demand[c] > 0)
    taken = np.zeros(n_classes, dtype=np.int64)
    for client in range(n):
        for c, w in zip(chosen[client], shares[client], strict=True):
            count = int(np.floor(w * size))
            buckets[client].append(pools[c][taken[c] : taken[c] + count])
            taken[c] += count
    return [np.concatenate(b) for b in buckets]


def stratified_split(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions into (rest, taken) with `fraction` of each class taken.

    A class never gives up its last sample, so a small client keeps something to train on.
    """
    taken = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_take = min(int(round(fraction * len(idx))), len(idx) - 1) if len(idx) > 1 else 0
        taken.append(idx[:n_take])
    take = np.sort(np.concatenate(taken)) if taken else np.empty(0, dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(labels)), take, assume_unique=True)
    return rest, take
