"""The pieces that keep a run's files consistent: the end of a run under signals, the
client-state store's rounds, the output lock, failure notes and atomic files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mpifl.errors import InputError
from mpifl.files import write_npz
from mpifl.kit.state_store import ClientStateStore
from mpifl.results.lock import OutputLock
from mpifl.results.status import read_status, remove_failure_note, write_failure_note
from tests.conftest import ROOT, env

# A 1-rank run in which something happens to the process at the moment the final status
# is written; `sig` is sent to the process itself right there.
AT_THE_END = """
import os, signal, sys
import h5py
from mpifl.cli import main

sig, job, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
setitem = h5py.AttributeManager.__setitem__

def hooked(self, name, value):
    if name == "status" and value == "complete":
        os.kill(os.getpid(), sig)
    setitem(self, name, value)

h5py.AttributeManager.__setitem__ = hooked
sys.exit(main(["run", job, "--output", out, "--set", "run.rounds=2"]))
"""


def run_until_the_end(small_job: Path, out: Path, sig: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", AT_THE_END, str(sig), str(small_job), str(out)],
        capture_output=True, text=True, timeout=120, env=env(), cwd=ROOT,
    )  # fmt: skip


def test_sigterm_during_the_final_write_still_completes(small_job, tmp_path):
    out = tmp_path / "run.h5"
    proc = run_until_the_end(small_job, out, 15)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f:
        assert f.attrs["status"] == "complete" and "final_state" in f


def test_kill_9_during_the_final_write_leaves_a_readable_file(small_job, tmp_path):
    out = tmp_path / "run.h5"
    proc = run_until_the_end(small_job, out, 9)
    assert proc.returncode == -9
    with h5py.File(out, "r", libver="latest", swmr=True) as f:
        assert f.attrs["status"] == "running"  # the status is written last
        assert f["rounds"]["round"][:].tolist() == [1, 2]


def _state(k: int) -> dict[str, np.ndarray]:
    return {"w": np.full(100, k, dtype=np.float64)}  # 800 bytes


def test_a_rolled_back_round_leaves_the_store_as_it_was(tmp_path):
    store = ClientStateStore(bound=2 * 800, folder=tmp_path / "rank0")
    for k in range(4):
        store.put(k, _state(k))  # two of them spill
    store.begin()
    for k in range(4):
        assert store.get(k)["w"][0] == k
        store.put(k, _state(100 + k))
        assert store.get(k)["w"][0] == 100 + k  # visible inside the round
    store.rollback()
    assert [store.get(k)["w"][0] for k in range(4)] == [0, 1, 2, 3]
    store.begin()
    store.put(1, _state(7))
    store.commit()
    assert store.get(1)["w"][0] == 7
    exported = tmp_path / "export"
    assert store.export(exported) == 4
    back = ClientStateStore(bound=10**6, folder=tmp_path / "back")
    back.import_from(exported, lambda k: True)
    assert [back.get(k)["w"][0] for k in range(4)] == [0, 7, 2, 3]


def test_unchanged_spilled_states_are_not_written_again(tmp_path):
    store = ClientStateStore(bound=800, folder=tmp_path)
    store.put(0, _state(0))
    store.put(1, _state(1))  # spills 0
    store.take_stats()
    store.get(0)  # read back: clean, spills 1
    store.get(1)  # evicts 0 again without writing it
    assert store.take_stats().bytes_written == 800  # only client 1's first spill


class Unconvertible:
    def __array__(self, *args: object, **kwargs: object) -> np.ndarray:
        raise ValueError("boom")


def test_npz_files_are_replaced_whole(tmp_path):
    path = tmp_path / "a.npz"
    write_npz(path, {"x": np.arange(3)}, "a test")
    with pytest.raises(ValueError, match="boom"):
        write_npz(path, {"x": np.arange(4), "bad": Unconvertible()}, "a test")  # fails midway
    with np.load(path) as f:
        assert f["x"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


def test_the_output_lock_admits_one_holder(tmp_path):
    out = tmp_path / "sub" / "run.h5"
    lock = OutputLock.acquire(out)
    other = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from mpifl.results.lock import OutputLock; OutputLock.acquire(Path(sys.argv[1]))",
         str(out)],
        capture_output=True, text=True, env=env(), cwd=ROOT,
    )  # fmt: skip
    assert other.returncode != 0 and "in use by another mpifl run" in other.stderr
    lock.release()
    OutputLock.acquire(out).release(remove=True)  # removes only a lock file it created
    assert (out.parent / ".run.h5.lock").exists()
    fresh = OutputLock.acquire(tmp_path / "other.h5")
    fresh.release(remove=True)  # a failed start leaves nothing behind
    assert not (tmp_path / ".other.h5.lock").exists()
    with pytest.raises(InputError, match="is a directory"):
        OutputLock.acquire(tmp_path)


def test_a_failure_note_marks_a_running_file_failed(tmp_path):
    out = tmp_path / "run.h5"
    with h5py.File(out, "w") as f:
        f.attrs["status"] = "running"
    write_failure_note(out, 1, "Traceback: boom")
    assert read_status(out) == ("failed", "rank 1:\nTraceback: boom")
    remove_failure_note(out)
    assert read_status(out) == ("running", None)


CHECKPOINT_TWICE = """
import sys
from pathlib import Path
import numpy as np
from mpifl.comm import world
from mpifl.engine import checkpoint
from mpifl.kit.state_store import ClientStateStore

out = Path(sys.argv[1]) / "run.h5"
comm = world()
store = ClientStateStore(10**6, Path(sys.argv[1]) / "spill")
store.put(1, {"w": np.ones(3)})
checkpoint.save(comm, out, "id", 3, 1.5, {"w": np.arange(4.0)}, store)

def full(folder):
    raise OSError(28, "No space left on device")

store.export = full  # the same round checkpointed again, and the disk is full
try:
    checkpoint.save(comm, out, "id", 3, 1.5, {"w": np.arange(4.0)}, store)
except OSError:
    pass
ckpt = checkpoint.load(out, "id")
print(ckpt.next_round, ckpt.method_state["w"].tolist(), (ckpt.folder / "clients").exists())
"""


def test_a_failed_checkpoint_of_the_same_round_keeps_the_previous_one(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", CHECKPOINT_TWICE, str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env(), cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3", "[0.0,", "1.0,", "2.0,", "3.0]", "True"]


def test_the_result_file_appears_only_once_it_is_in_swmr_mode(tmp_path, monkeypatch):
    """A live monitor polling for the result file may open it the moment it appears; if
    that is before the writer enters SWMR mode, HDF5's file lock makes the writer fail
    (seen as "unable to lock file" when a reader polled a starting run). So the file is
    built under another name and appears in SWMR mode, which a reader cannot disturb."""
    from mpifl.results import writer
    from mpifl.results.schema import FLEET_DTYPE

    path, seen = tmp_path / "run.h5", []
    describe = writer._describe

    def describe_and_look(ds, table):  # runs in the middle of the creation
        seen.append(path.exists())
        describe(ds, table)

    monkeypatch.setattr(writer, "_describe", describe_and_look)
    w = writer.ResultsWriter(path, False, {"name": "x"}, np.zeros(2, FLEET_DTYPE), ["a"])
    assert seen and not any(seen)
    with h5py.File(path, "r", libver="latest", swmr=True) as reader:  # held while writing
        w.close("complete")
        assert len(reader["fleet"]) == 2
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete"


def test_a_resume_with_other_torch_threads_is_refused(small_job, tmp_path):
    """How a client trains (batched or one at a time) depends on the torch threads per
    rank; with `run.threads` unset they come from $SLURM_CPUS_PER_TASK, which a requeued
    job may get otherwise: the resume must not silently change the results."""
    out = tmp_path / "out.h5"

    def run(cpus: str, *args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "mpifl", "run", str(small_job), "--output", str(out)]
        environment = {**env(), "SLURM_CPUS_PER_TASK": cpus}
        return subprocess.run([*cmd, *args], capture_output=True, text=True, env=environment,
                              cwd=ROOT, timeout=120)  # fmt: skip

    assert run("1", "--set", "run.rounds=1").returncode == 0
    proc = run("2", "--set", "run.rounds=1", "--resume")
    assert proc.returncode == 2 and "ran with 1 torch threads per rank" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert run("1", "--set", "run.rounds=1", "--resume").returncode == 0  # already complete


def test_a_resumed_run_counts_the_wall_time_of_its_earlier_parts(tmp_path):
    """wall_seconds (and the summary's wall) of a resumed run counted only its last part."""
    from mpifl.engine import checkpoint
    from mpifl.results import read_run
    from tests.conftest import in_process
    from tests.test_methods import tiny

    cfg = tiny("fedavg", tmp_path, run__rounds=4)
    out = tmp_path / "run.h5"
    interrupted, code = in_process(cfg, out, abandon_at=2)
    assert code == 3
    with h5py.File(out, "r+") as f:  # the first part's two rounds took 1000 s each
        rows = f["rounds"][()]
        rows["wall_time"] = 1000.0
        f["rounds"][...] = rows
    resumed, code = in_process(cfg, out, resume=checkpoint.load(out, interrupted.run_id))
    assert code == 0
    run = read_run(out)
    walls = run.tables["rounds"]["wall_time"].to_numpy()
    this_part = run.attrs["wall_seconds"] - 2000.0
    assert len(walls) == 4 and walls[2:].sum() <= this_part < 60
    assert f"{run.attrs['wall_seconds']:.1f} s wall ({this_part:.1f} s in this part)" in (
        resumed.stream.getvalue()
    )
