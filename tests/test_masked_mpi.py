"""Masked aggregation over real ranks equals the formula, bitwise for 1, 2 and 4 ranks."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import mpi_script

SNIPPET = """
import sys
from pathlib import Path

import numpy as np
import torch

from mpifl.comm import world
from mpifl.kit.accumulate import Accumulators

comm = world()
G, K = 1000, 24
rng = np.random.default_rng(0)
masks = [(rng.random(G) < rng.uniform(0.1, 0.9)).astype(np.float32) for _ in range(K)]
models = [rng.normal(0, 1, G).astype(np.float32) for _ in range(K)]
n = rng.integers(5, 60, K)
acc = Accumulators({"num": G, "den": G}, 40, scale=1 / n.sum())
for k in range(comm.rank, K, comm.size):  # clients dealt out over the ranks
    acc.add("num", torch.from_numpy(models[k] * masks[k]), int(n[k]))
    acc.add("den", torch.from_numpy(masks[k]), int(n[k]))
    acc.commit()
sums = acc.reduce(comm)
w = np.zeros(G)
covered = sums["den"] > 0
w[covered] = sums["num"][covered] / sums["den"][covered]
if comm.rank == 0:
    np.save(Path(sys.argv[1]) / "w.npy", w)
    num = sum(n[k] * masks[k] * models[k] for k in range(K))
    den = sum(n[k] * masks[k] for k in range(K))
    expected = np.where(den > 0, num / np.maximum(den, 1), 0.0)
    np.save(Path(sys.argv[1]) / "expected.npy", expected)
"""


@pytest.mark.mpi
def test_masked_aggregation_matches_the_formula_for_any_rank_count(tmp_path):
    results = {}
    for ranks in (1, 2, 4):
        out = tmp_path / str(ranks)
        out.mkdir()
        proc = mpi_script(SNIPPET, ranks, out)
        assert proc.returncode == 0, proc.stderr
        results[ranks] = np.load(out / "w.npy")
    expected = np.load(tmp_path / "1" / "expected.npy")
    assert np.allclose(results[1], expected, rtol=1e-6, atol=1e-7)
    assert results[1].tobytes() == results[2].tobytes() == results[4].tobytes()
