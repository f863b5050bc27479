"""Grouping is a speed knob: every built-in method's job gives the same bytes with its
clients trained one at a time on one rank and in the planner's groups on two."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from mpifl.methods import BUILT_IN
from tests.conftest import assert_same_results, run_here, run_ok

JOBS = {  # method -> (job, its --set overrides)
    "fedavg": ("quickstart", ()),
    "fedprox": ("fedprox_digits", ()),
    "fednova": ("fednova_digits", ()),
    "scaffold": ("scaffold_digits", ()),
    "fedavgm": ("quickstart", ("algorithm.name='fedavgm'",)),
    "fedadagrad": ("quickstart", ("algorithm.name='fedadagrad'", "algorithm.server_lr=0.1")),
    "fedadam": ("fedadam_digits", ()),
    "fedyogi": ("quickstart", ("algorithm.name='fedyogi'", "algorithm.server_lr=0.03")),
    "fedbuff": ("fedbuff_digits", ("run.rounds=20",)),
    "fedasync": ("fedasync_digits", ("run.rounds=20",)),
    "fedmrl": ("fedmrl_digits", ()),
    "koala": ("koala_hetero_digits", ()),
    "reft": ("reft_digits", ()),
    "submodel": ("submodel_digits", ()),
    "local": ("fedavg_hetero_digits", ("algorithm.name='local'",)),
    "standalone": ("standalone_digits", ()),
    "majority": ("fedavg_hetero_digits", ("algorithm.name='majority'",)),
    "centralized": ("fedavg_hetero_digits", ("algorithm.name='centralized'", "train.epochs=1")),
}

ONE_AT_A_TIME = {"majority", "centralized"}  # they train no client

pytestmark = pytest.mark.mpi


def test_every_built_in_method_has_a_job_here():
    assert set(JOBS) == set(BUILT_IN)


@pytest.mark.parametrize("method", sorted(JOBS))
def test_one_at_a_time_on_one_rank_is_groups_on_two(method, tmp_path):
    job, sets = JOBS[method]
    sets = ("run.rounds=2", *sets)
    run_here(f"jobs/{job}.toml", tmp_path / "alone.h5", *sets, "train.group=1")
    run_ok(f"jobs/{job}.toml", tmp_path / "groups.h5", *sets, ranks=2)
    assert_same_results(tmp_path / "alone.h5", tmp_path / "groups.h5")
    with h5py.File(tmp_path / "groups.h5") as f:
        group = f["participation"]["group"]
    largest = np.bincount(group[group >= 0]).max() if (group >= 0).any() else 0
    assert (largest > 1) == (method not in ONE_AT_A_TIME), largest
