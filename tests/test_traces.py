"""Fleet files (CSV, HDF5), FedScale import, and the fleet commands."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mpifl.errors import InputError
from mpifl.fleet.devices import CATALOGUE
from mpifl.fleet.profiles import generate_fleet
from mpifl.fleet.traces import import_fedscale, intervals_from_rows, load_fleet, save_fleet
from tests.conftest import mpifl


@pytest.fixture
def fedscale(tmp_path):
    """FedScale-format pickles for 5 clients (ids not contiguous, like the real traces)."""
    ids = [3, 7, 11, 20, 42]
    capacity = {
        c: {"computation": 10.0 * (i + 1), "communication": 1000.0 * (i + 1)}
        for i, c in enumerate(ids)
    }
    behaviour = {
        c: {"active": [0.0, 500.0], "inactive": [100.0 * (i + 1), 800.0], "finish_time": 1000.0}
        for i, c in enumerate(ids)
    }
    (tmp_path / "capacity.pkl").write_bytes(pickle.dumps(capacity))
    (tmp_path / "behaviour.pkl").write_bytes(pickle.dumps(behaviour))
    return tmp_path


def test_fedscale_import(fedscale):
    fleet = import_fedscale(fedscale / "capacity.pkl", fedscale / "behaviour.pkl", 1e9, 0.05)
    p = fleet.profiles
    assert np.allclose(p["flops"], 1e9 / (np.array([10, 20, 30, 40, 50]) / 1000))
    assert np.allclose(p["uplink"], [1e6, 2e6, 3e6, 4e6, 5e6]) and np.all(
        p["downlink"] == p["uplink"]
    )
    assert np.all(p["trace_period"] == 1000.0)
    # client 0 is online [0, 100) and [500, 800): 400 s of 1000
    assert p["availability"][0] == pytest.approx(0.4)
    assert fleet.intervals.offsets.tolist() == [0, 2, 4, 6, 8, 10]
    names = [fleet.class_names[c] for c in p["device_class"]]
    assert set(names) <= set(CATALOGUE)


@pytest.mark.parametrize("suffix", [".csv", ".h5"])
def test_fleet_file_round_trip(tmp_path, fedscale, suffix):
    fleet = import_fedscale(fedscale / "capacity.pkl", fedscale / "behaviour.pkl", 1e9, 0.05)
    path = tmp_path / f"fleet{suffix}"
    save_fleet(fleet, path)
    back = load_fleet(path)
    for col in fleet.profiles.dtype.names:
        if col != "device_class":
            assert np.array_equal(back.profiles[col], fleet.profiles[col]), col
    names = [fleet.class_names[c] for c in fleet.profiles["device_class"]]
    assert [back.class_names[c] for c in back.profiles["device_class"]] == names
    assert np.array_equal(back.intervals.starts, fleet.intervals.starts)


def test_bad_fleet_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("device_class,flops\nmcu,1e8\n")
    with pytest.raises(InputError, match="missing columns"):
        load_fleet(bad)
    fleet = generate_fleet(3, CATALOGUE, 0.3, 0)
    fleet.profiles["memory"][1] = 0
    path = tmp_path / "zero.h5"
    save_fleet(fleet, path)
    with pytest.raises(InputError, match="memory must be > 0"):
        load_fleet(path)
    rows = np.array(
        [(0, 0.0, 10.0), (0, 5.0, 20.0)], dtype=[("client", "i8"), ("start", "f8"), ("end", "f8")]
    )
    with pytest.raises(InputError, match="overlap"):
        intervals_from_rows(rows, 1)
    with pytest.raises(InputError, match="not a readable pickle"):
        (tmp_path / "x.pkl").write_bytes(b"junk")
        import_fedscale(tmp_path / "x.pkl", None, 1e9, 0.05)


def test_fleet_for_more_clients_than_devices(fedscale):
    fleet = import_fedscale(fedscale / "capacity.pkl", fedscale / "behaviour.pkl", 1e9, 0.05)
    many = fleet.for_clients(12)
    assert np.array_equal(many.profiles["flops"][5:10], fleet.profiles["flops"])
    assert many.intervals.offsets[-1] == 2 * 12


def test_fleet_commands(tmp_path, fedscale, small_job):
    out = tmp_path / "f.h5"
    proc = mpifl(
        "fleet",
        "import",
        "--capacity",
        str(fedscale / "capacity.pkl"),
        "--behaviour",
        str(fedscale / "behaviour.pkl"),
        "--output",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "5 clients" in proc.stdout and "availability trace: 10 online intervals" in proc.stdout
    again = mpifl(
        "fleet", "import", "--capacity", str(fedscale / "capacity.pkl"), "--output", str(out)
    )
    assert again.returncode == 2 and "already exists" in again.stderr
    gen = tmp_path / "g.csv"
    proc = mpifl("fleet", "generate", str(small_job), "--output", str(gen))
    assert proc.returncode == 0 and "20 clients" in proc.stdout
    show = mpifl("fleet", "show", str(gen))
    assert show.returncode == 0 and "GFLOP/s" in show.stdout
    missing = mpifl("fleet", "show", str(tmp_path / "none.csv"))
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_fleet_show_numbers_have_no_exponents_and_fitting_units():
    from mpifl.commands.fleet import BYTES, FLOPS, number, spread

    assert [number(v) for v in (0.1256, 4.041, 28.51, 738.2, 1442.0, 0.0, 99.96)] == [
        "0.126", "4.04", "28.5", "738", "1440", "0", "100"]  # fmt: skip
    assert spread(np.array([0.9996 * 2**30] * 3), BYTES) == "1.00/1.00/1.00 GiB"  # rounded first
    assert spread(np.array([1.26e8, 2.1e8, 2.86e8]), FLOPS).endswith("MFLOP/s")
    assert spread(np.array([3.9e9, 4.3e9, 5.3e9]), BYTES).endswith("GiB")
    assert "e+" not in spread(np.array([7.7e8, 1.07e9, 1.5e9]), BYTES)
