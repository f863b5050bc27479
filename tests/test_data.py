"""Built-in data sets, npz input, and per-client splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpifl.data import build_dataset
from mpifl.data.arrays import load_npz
from mpifl.data.digits import load_digits
from mpifl.errors import ConfigError, InputError
from mpifl.jobs import validate_job


def _data_cfg(**data):
    return validate_job({"data": data, "model": {"arch": "mlp"}}).data


def test_digits_is_the_real_data_set():
    x, y = load_digits()
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,)
    assert float(x.max()) == 1.0 and float(x.min()) == 0.0
    assert np.array_equal(np.unique(y.numpy()), np.arange(10))


def test_pooled_splits_are_disjoint_and_cover_roles():
    data = build_dataset(_data_cfg(), 50, seed=0)
    seen = [data.global_test_idx, data.proxy_idx]
    for k in range(data.n_clients):
        seen += [data.train.row(k), data.test.row(k)]
        assert len(data.client_train(k)[0]) == data.n_train[k] >= 1
    flat = np.concatenate(seen)
    assert len(flat) == len(np.unique(flat)) == 1797
    assert abs(len(data.global_test_idx) - 0.2 * 1797) < 11
    assert abs(len(data.proxy_idx) - 0.1 * 1797) < 11


def test_a_validation_set_replaces_the_test_set_which_is_used_nowhere():
    """data.validation: the same test set is carved first and then left out entirely; a
    held-out set of that fraction of the data takes its place; the proxy keeps its size."""
    plain = build_dataset(_data_cfg(), 50, seed=0)
    tuned = build_dataset(_data_cfg(validation=0.1), 50, seed=0)
    test = set(plain.global_test_idx.tolist())
    used = [tuned.global_test_idx, tuned.proxy_idx]
    used += [r for k in range(tuned.n_clients) for r in (tuned.train.row(k), tuned.test.row(k))]
    flat = np.concatenate(used)
    assert len(flat) == len(np.unique(flat)) == 1797 - len(test)
    assert not test & set(flat.tolist())
    assert abs(len(tuned.global_test_idx) - 0.1 * 1797) < 11
    assert abs(len(tuned.proxy_idx) - len(plain.proxy_idx)) < 11
    with pytest.raises(ConfigError, match="data.validation"):
        build_dataset(_data_cfg(name="synthetic", validation=0.1), 30, seed=0)


def test_a_test_seed_fixes_the_test_set_for_every_seed_and_tuning_never_sees_it():
    """data.test_seed: one global test set for every run.seed (the clients' data still
    differ); a tuning run at another seed validates on images outside it."""
    a = build_dataset(_data_cfg(test_seed=0), 50, seed=1)
    b = build_dataset(_data_cfg(test_seed=0), 50, seed=2)
    assert np.array_equal(a.global_test_idx, b.global_test_idx)
    assert not np.array_equal(a.train.row(0), b.train.row(0))
    plain = [build_dataset(_data_cfg(), 50, seed=s).global_test_idx for s in (1, 2)]
    assert not np.array_equal(*plain)  # without it, each seed draws its own
    tuning = build_dataset(_data_cfg(test_seed=0, validation=0.1), 50, seed=100)
    assert not set(tuning.global_test_idx.tolist()) & set(a.global_test_idx.tolist())


def test_local_test_split_has_train_labels():
    data = build_dataset(_data_cfg(partition="shards", classes_per_client=2), 30, seed=1)
    for k in range(data.n_clients):
        train_labels = set(data.client_train(k)[1].tolist())
        assert set(data.client_test(k)[1].tolist()) <= train_labels


def test_partition_is_deterministic_in_seed():
    a = build_dataset(_data_cfg(), 40, seed=3)
    b = build_dataset(_data_cfg(), 40, seed=3)
    c = build_dataset(_data_cfg(), 40, seed=4)
    assert np.array_equal(a.train.indices, b.train.indices)
    assert not np.array_equal(a.train.indices, c.train.indices)


def test_synthetic_clients_are_generated_from_their_id():
    cfg = _data_cfg(name="synthetic")
    a = build_dataset(cfg, 1000, seed=0)
    b = build_dataset(cfg, 1000, seed=0)
    x1, y1 = a.client_train(777)
    x2, y2 = b.client_train(777)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (a.n_train[777], 60)
    assert a.proxy()[0].shape[1] == 60 and len(a.global_test()[0]) > 0
    # heterogeneous clients: label distributions differ between clients
    assert not torch.equal(a.client_train(1)[1].bincount(minlength=10), y1.bincount(minlength=10))


def test_npz_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path, x=rng.integers(0, 255, (200, 28, 28), dtype=np.uint8), y=rng.integers(0, 10, 200)
    )
    x, y = load_npz(path)
    assert x.shape == (200, 1, 28, 28) and x.dtype == torch.float32 and float(x.max()) <= 1.0
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((5, 3)), labels=np.zeros(5))
    with pytest.raises(InputError, match="missing arrays"):
        load_npz(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable .npz"):
        load_npz(junk)
    mismatch = tmp_path / "mismatch.npz"
    np.savez(mismatch, x=np.zeros((5, 3)), y=np.zeros(4, dtype=int))
    with pytest.raises(InputError, match="shape"):
        load_npz(mismatch)


def test_mnist5k_is_the_real_mnist_sample_and_needs_no_network(monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("mnist5k tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    from mpifl.data.mnist5k import load_mnist5k

    x, y = load_mnist5k()
    assert x.shape == (5000, 1, 28, 28) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert np.bincount(y.numpy()).tolist() == [500] * 10
    assert 0.1 < float(x.mean()) < 0.15  # real digits: mostly black background
    data = build_dataset(_data_cfg(name="mnist5k"), 60, seed=0)
    assert data.input_shape == (1, 28, 28) and data.n_classes == 10
    assert np.median(data.n_train) >= 40 and np.median(data.n_test) >= 10


def _nearest(points: torch.Tensor, reference: torch.Tensor) -> float:
    """Median distance from each point to its nearest reference point."""
    return float(torch.cdist(points, reference).min(dim=1).values.median())


def test_synthetic_has_fedprox_sizes_and_a_proxy_from_the_clients_distributions():
    data = build_dataset(_data_cfg(name="synthetic"), 30, seed=0)
    total = data.n_train + data.n_test
    assert total.min() >= 50 and np.median(total) > 80  # floor(lognormal(4, 2)) + 50
    test_x, _ = data.global_test()
    train_x = torch.cat([data.client_train(k)[0] for k in range(data.n_clients)])
    proxy_x, proxy_y = data.proxy()
    to_clients, to_proxy = _nearest(test_x, train_x), _nearest(test_x, proxy_x)
    assert to_proxy < 1.5 * to_clients, (to_proxy, to_clients)
    assert np.bincount(proxy_y.numpy()).max() < 0.6 * len(proxy_y)
