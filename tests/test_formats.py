"""Real data formats, read from small files the tests write in each format."""

from __future__ import annotations

import gzip
import json
import pickle
import struct

import h5py
import numpy as np
import pytest

from mpifl.data import build_dataset
from mpifl.data.formats.idx import read_idx
from mpifl.errors import ConfigError, InputError
from mpifl.jobs import validate_job

RNG = np.random.default_rng(0)


def _cfg(**data):
    return validate_job({"data": data, "fleet": {"clients": 0}, "round": {"cohort": 1}}).data


def write_idx(path, array, gz=False):
    code = {np.uint8: 0x08, np.int32: 0x0C}[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.fixture
def mnist_dir(tmp_path):
    for stem, n in (("train", 300), ("t10k", 100)):
        write_idx(
            tmp_path / f"{stem}-images-idx3-ubyte.gz",
            RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            gz=True,
        )
        write_idx(tmp_path / f"{stem}-labels-idx1-ubyte", RNG.integers(0, 10, n).astype(np.uint8))
    return tmp_path


def test_mnist_idx(mnist_dir):
    data = build_dataset(_cfg(name="mnist", path=str(mnist_dir)), 10, seed=0)
    assert data.input_shape == (1, 28, 28) and data.n_classes == 10
    x, y = data.global_test()
    assert len(x) == 100  # the official test set is the global test set
    expected = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    assert np.allclose(np.sort(x.numpy().ravel()), np.sort(expected.ravel() / 255.0))
    assert data.n_train.sum() + data.n_test.sum() + len(data.proxy()[0]) == 300


def test_mnist_errors(mnist_dir, tmp_path):
    (mnist_dir / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(InputError, match="missing t10k-labels"):
        build_dataset(_cfg(name="mnist", path=str(mnist_dir)), 10, seed=0)
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x01\x02\x03\x04junk")
    with pytest.raises(InputError, match="magic"):
        read_idx(bad)
    short = tmp_path / "short-idx"
    write_idx(short, np.zeros((4, 2), np.uint8))
    short.write_bytes(short.read_bytes()[:-3])
    with pytest.raises(InputError, match="header says"):
        read_idx(short)


def _cifar_batch(path, n, label_key):
    d = {
        b"data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key: list(RNG.integers(0, 10, n)),
    }
    path.write_bytes(pickle.dumps(d))


def test_cifar10_and_100(tmp_path):
    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    for i in range(1, 6):
        _cifar_batch(c10 / f"data_batch_{i}", 40, b"labels")
    _cifar_batch(c10 / "test_batch", 50, b"labels")
    data = build_dataset(_cfg(name="cifar10", path=str(c10)), 8, seed=0)
    assert data.input_shape == (3, 32, 32) and len(data.global_test()[0]) == 50
    c100 = tmp_path / "cifar-100-python"
    c100.mkdir()
    _cifar_batch(c100 / "train", 200, b"fine_labels")
    _cifar_batch(c100 / "test", 30, b"fine_labels")
    assert (
        len(build_dataset(_cfg(name="cifar100", path=str(c100)), 5, seed=0).global_test()[0]) == 30
    )
    (c10 / "test_batch").write_bytes(b"garbage")
    with pytest.raises(InputError, match="not a CIFAR python batch"):
        build_dataset(_cfg(name="cifar10", path=str(c10)), 8, seed=0)


@pytest.fixture
def leaf_dir(tmp_path):
    """LEAF layout: train/ and test/ JSON files over the same 20 writers."""
    for split, n in (("train", 12), ("test", 3)):
        (tmp_path / split).mkdir()
        users = [f"f{u:04d}" for u in range(20)]
        doc = {
            "users": users,
            "num_samples": [n] * 20,
            "user_data": {
                u: {
                    "x": RNG.random((n, 784)).round(3).tolist(),
                    "y": RNG.integers(0, 62, n).tolist(),
                }
                for u in users
            },
        }
        (tmp_path / split / f"all_data_0_{split}.json").write_text(json.dumps(doc))
    return tmp_path


def test_femnist_natural_partition(leaf_dir):
    cfg = _cfg(name="femnist", path=str(leaf_dir), test_fraction=0.1, proxy_fraction=0.1)
    data = build_dataset(cfg, 0, seed=0)
    assert data.n_clients == 16  # 20 writers minus 2 test and 2 proxy writers
    assert np.all(data.n_train == 12) and np.all(data.n_test == 3)  # LEAF's own test split
    assert len(data.global_test()[0]) == 2 * 15 and len(data.proxy()[0]) == 2 * 15
    assert data.input_shape == (1, 28, 28)
    with pytest.raises(ConfigError, match="must be 0 or 16"):
        build_dataset(cfg, 50, seed=0)


def test_femnist_malformed(tmp_path):
    (tmp_path / "x.json").write_text('{"users": []}')
    with pytest.raises(InputError, match="not a LEAF JSON file"):
        build_dataset(_cfg(name="femnist", path=str(tmp_path)), 0, seed=0)


def test_tff_h5(tmp_path):
    path = tmp_path / "fed.h5"
    with h5py.File(path, "w") as f:
        for c in range(12):
            g = f.create_group(f"examples/client_{c:02d}")
            g["pixels"] = RNG.random((10 + c, 28, 28), dtype=np.float32)
            g["label"] = RNG.integers(0, 10, 10 + c)
    data = build_dataset(_cfg(name="tff", path=str(path)), 0, seed=0)
    assert data.n_clients == 12 - 2 - 1  # test_fraction 0.2 -> 2 writers, proxy 0.1 -> 1
    assert np.all(data.n_train + data.n_test >= 10)
    with pytest.raises(InputError, match="has no 'img'"):
        build_dataset(_cfg(name="tff", path=str(path), tff_x="img"), 0, seed=0)
    (tmp_path / "junk.h5").write_bytes(b"nope")
    with pytest.raises(InputError, match="not a readable HDF5"):
        build_dataset(_cfg(name="tff", path=str(tmp_path / "junk.h5")), 0, seed=0)


def test_pooled_data_needs_a_client_count():
    with pytest.raises(ConfigError, match="fleet.clients"):
        build_dataset(_cfg(name="digits"), 0, seed=0)


def test_w1_matches_the_benchmark_definition():
    data = build_dataset(
        validate_job({"data": {"name": "w1", "local_test_fraction": 0.0}}).data, 1000, 0
    )
    assert np.all(data.n_train == 50)
    x, y = data.client_train(7)
    rng = np.random.default_rng(7)
    mu = np.random.default_rng(0).standard_normal((10, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, 50)
    assert np.array_equal(y.numpy(), labels)
    noise = rng.standard_normal((50, 3, 32, 32), dtype=np.float32)
    assert np.allclose(x.numpy(), mu[labels] + 0.5 * noise)
