"""Heterogeneous methods end to end under mpiexec: results in the HDF5 file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from mpifl.results.schema import Status
from tests.conftest import mpifl

pytestmark = pytest.mark.mpi

TINY_MCU = """
[fleet.classes.mcu]
weight = 0.5
memory = 60000

[fleet.classes.rpi]
weight = 0.5
"""


def _run(job, tmp_path, name, *sets, ranks=2):
    out = tmp_path / f"{name}.h5"
    args = [a for s in sets for a in ("--set", s)]
    proc = mpifl("run", str(job), "--output", str(out), *args, ranks=ranks)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f:
        return f["rounds"][:], f["participation"][:], f["eval"][:]


def test_full_width_submodel_is_fedavg(small_job, tmp_path):
    fedavg, _, _ = _run(small_job, tmp_path, "fedavg")
    sub, part, _ = _run(
        small_job, tmp_path, "sub", "algorithm.name='submodel'", "algorithm.tiers=[1.0]"
    )
    assert np.all(part["width"] == 1.0)
    for field in ("test_loss", "test_accuracy", "train_loss"):
        assert fedavg[field].tobytes() == sub[field].tobytes(), field


@pytest.mark.parametrize("selection", ["prefix", "rolling", "magnitude"])
def test_submodel_lets_small_devices_train(small_job, tmp_path, selection):
    small_job.write_text(small_job.read_text() + TINY_MCU)
    fedavg, fpart, _ = _run(small_job, tmp_path, "fedavg", "emulation.availability='always'")
    assert np.any(fpart["status"] == Status.INFEASIBLE)
    sets = [
        "algorithm.name='submodel'",
        f"algorithm.selection='{selection}'",
        "emulation.availability='always'",
    ]
    rounds, part, evals = _run(small_job, tmp_path, "sub", *sets)
    mcu = part[part["device_class"] == 0]
    assert not np.any(part["status"] == Status.INFEASIBLE)
    assert np.all(mcu["width"] < 1.0) and np.all(mcu["status"] != Status.INFEASIBLE)
    assert np.all(mcu["footprint"] <= mcu["memory"])
    assert np.all(mcu["bytes_down"] < fpart["bytes_down"].max())
    groups = {g.decode() for g in evals["group"]}
    assert {"global", "width=0.5", "width=0.25", "width=0.125"} <= groups
    assert rounds["trained"].sum() > fedavg["trained"].sum()
