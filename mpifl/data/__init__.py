"""Federated data sets: built-in sources, partitioners, per-client splits."""

from __future__ import annotations

from types import SimpleNamespace

from mpifl.data.federated import FederatedData


def build_dataset(data: SimpleNamespace, n_clients: int, seed: int) -> FederatedData:
    """The federated data set that `data` (the config section) describes."""
    if data.name == "synthetic":
        from mpifl.data.synthetic import SyntheticData

        return SyntheticData(data, n_clients, seed)
    from mpifl.data.pooled import partition_pool

    if data.name == "digits":
        from mpifl.data.digits import load_digits

        x, y = load_digits()
    else:
        from mpifl.data.arrays import load_npz

        x, y = load_npz(data.path)
    return partition_pool(x, y, data, n_clients, seed)


__all__ = ["FederatedData", "build_dataset"]
