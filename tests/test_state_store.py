"""The bounded client-state store."""

from __future__ import annotations

import numpy as np

from mpifl.kit.state_store import ClientStateStore


def test_lru_spills_and_reloads_exactly(tmp_path):
    store = ClientStateStore(bound=3 * 800, folder=tmp_path / "rank0")
    states = {k: {"w": np.full(100, k, dtype=np.float64)} for k in range(6)}  # 800 B each
    for k, s in states.items():
        store.put(k, s)
    assert store.ram_bytes <= 3 * 800
    assert len(list((tmp_path / "rank0").glob("*.npz"))) == 3  # clients 0, 1, 2 spilled
    stats = store.take_stats()
    assert stats.bytes_written == 3 * 800
    for k in range(6):
        assert np.array_equal(store.get(k)["w"], states[k]["w"])
    stats = store.take_stats()
    assert stats.misses >= 3 and stats.bytes_read >= 3 * 800
    assert store.get(99) is None
    store.close()
    assert not (tmp_path / "rank0").exists()


def test_recent_clients_stay_in_memory(tmp_path):
    store = ClientStateStore(bound=2 * 800, folder=tmp_path)
    for k in range(2):
        store.put(k, {"w": np.zeros(100)})
    store.get(0)  # 0 is now the most recent
    store.put(2, {"w": np.zeros(100)})  # evicts 1, not 0
    store.take_stats()
    store.get(0)
    assert store.take_stats().hits == 1
    store.get(1)
    assert store.take_stats().misses == 1
