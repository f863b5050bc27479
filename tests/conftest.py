"""Shared test helpers: small job files and launching mpifl under mpiexec."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The suite oversubscribes its cores (two workers, each launching 2-4 ranks): a rank that
# waits in a collective sleeps between polls instead of spinning on a core another rank
# needs (MPICH; results are the same bytes either way; about a tenth off a multi-rank test).
os.environ.setdefault("MPIR_CVAR_ENABLE_HEAVY_YIELD", "1")

SMALL_JOB = """
[run]
name = "small"
rounds = 3
output = "{output}"

[data]
name = "digits"
partition = "dirichlet"

[fleet]
clients = 20

[model]
arch = "cnn"
channels = [8, 16]
fc = 32
norm = "group"

[train]
epochs = 1
batch_size = 8
lr = 0.05

[round]
cohort = 10
deadline = 3.0
"""


def mpiexec() -> str:
    """The mpiexec next to this Python (the venv's mpich), else the one on PATH."""
    local = BIN / "mpiexec"
    found = str(local) if local.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec found")
    return found


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.pop("SLURM_CPUS_PER_TASK", None)
    return e


def mpifl(
    *args: str, ranks: int = 0, timeout: float = 180, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run `mpifl ARGS` (under `mpiexec -n ranks` when ranks > 0) and capture its output."""
    cmd = [sys.executable, "-m", "mpifl", *args]
    if ranks:
        cmd = [mpiexec(), "-n", str(ranks), *cmd]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env(), cwd=cwd or ROOT
    )


CASES_RUNNER = """
import contextlib, io, json, sys
from mpifl.cli import main
out = []
for args in json.loads(sys.stdin.read()):
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        try:
            rc = main(args)
        except SystemExit as exc:
            rc = exc.code
    out.append({"rc": rc, "stderr": err.getvalue(), "stdout": std.getvalue()})
print(json.dumps(out))
"""


def mpifl_cases(cases: list[list[str]], cwd: Path = ROOT) -> list[dict]:
    """`mpifl` with each argument list, one after another in one process (one torch
    import for all: for inputs refused before a run starts); per case its exit code
    ("rc"), "stderr" and "stdout"."""
    proc = subprocess.run(
        [sys.executable, "-c", CASES_RUNNER], input=json.dumps(cases),
        capture_output=True, text=True, timeout=600, env=env(), cwd=cwd,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def set_args(*sets: str) -> list[str]:
    """`--set` arguments for each KEY=VALUE."""
    return [a for s in sets for a in ("--set", s)]


def run_ok(job: Path, out: Path, *sets: str, ranks: int = 2) -> subprocess.CompletedProcess:
    """`mpifl run JOB --output OUT --set ...`, asserting that it succeeds."""
    proc = mpifl("run", str(job), "--output", str(out), *set_args(*sets), ranks=ranks)
    assert proc.returncode == 0, proc.stderr
    return proc


def mpi_script(
    code: str, ranks: int, tmp_path: Path, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run a Python snippet on `ranks` ranks; it gets tmp_path as argv[1]."""
    script = tmp_path / "snippet.py"
    script.write_text(code)
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, str(script), str(tmp_path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env())


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory) -> tuple[Path, str]:
    """The quick start as the README runs it (2 ranks): its result file (read only: copy
    it to change it) and what it printed."""
    path = tmp_path_factory.mktemp("quickstart") / "quickstart.h5"
    proc = run_ok(ROOT / "jobs" / "quickstart.toml", path)
    return path, proc.stdout


@pytest.fixture
def small_job(tmp_path: Path) -> Path:
    """A 3-round job on 20 digits clients writing to tmp_path/out.h5."""
    job = tmp_path / "job.toml"
    job.write_text(SMALL_JOB.format(output=tmp_path / "out.h5"))
    return job


# columns that say where and how fast a client or rank ran, not what it computed
PLACEMENT = {"wall_time", "rank", "group", "measured_memory"}


def result_contents(path: Path) -> dict[str, bytes]:
    """What a run computed, table by table: every dataset's bytes (participation sorted
    by round and client, without PLACEMENT columns; `ranks` left out: it is about the
    ranks), and the `rounds` table without its wall time."""
    import h5py
    import numpy as np

    out: dict[str, bytes] = {}

    def visit(name: str, obj: object) -> None:
        if not isinstance(obj, h5py.Dataset) or name in ("ranks", "fleet"):
            return
        data = obj[()]
        if data.dtype.names:
            if "client" in data.dtype.names:
                data = data[np.lexsort((data["client"], data["round"]))]
            for column in data.dtype.names:
                if column not in PLACEMENT:
                    out[f"{name}/{column}"] = np.ascontiguousarray(data[column]).tobytes()
        else:
            out[name] = np.asarray(data).tobytes()

    with h5py.File(path) as f:
        f.visititems(visit)
    return out


def assert_same_results(a: Path, b: Path) -> None:
    """Two runs computed the same bytes (result_contents), column by column."""
    ca, cb = result_contents(a), result_contents(b)
    assert ca.keys() == cb.keys()
    differ = [k for k in ca if ca[k] != cb[k]]
    assert not differ, f"{a.name} and {b.name} differ in {differ}"


def run_here(job: Path | str, out: Path, *sets: str) -> None:
    """`mpifl run JOB --output OUT --set ...` on one rank in this process, asserting that it
    completes: a multi-rank test's 1-rank reference without a launch (and a torch import).
    Torch runs 1 thread, as a rank does without run.threads."""
    from mpifl.jobs import load_job

    saved = os.environ.pop("SLURM_CPUS_PER_TASK", None)
    try:
        engine, code = in_process(load_job(ROOT / job, list(sets)), out)
        assert code == 0, engine.stream.getvalue()
    finally:
        if saved is not None:
            os.environ["SLURM_CPUS_PER_TASK"] = saved


def in_process(cfg, output: Path, abandon_at: int = -1, resume=None):
    """Run `cfg` on one in-process rank (resuming from a checkpoint if given), abandoning
    round `abandon_at` (from 0) as a SIGTERM would; (the engine, its exit code)."""
    import io

    from mpifl.comm import Comm
    from mpifl.engine.loop import Engine, RoundAbandoned

    engine = Engine(cfg, Comm(), output, stream=io.StringIO())
    engine.start(resume)
    play = engine.round

    def round_(t: int):
        if t == abandon_at:
            raise RoundAbandoned(t)
        return play(t)

    engine.round = round_
    return engine, engine.run()


def plugin_module(tmp_path: Path, monkeypatch, name: str, source: str):
    """Make `source` importable as module `name` from the working directory (tmp_path),
    with the method plugin cache cleared around the test (a fixture's body: yield from)."""
    from mpifl.methods import plugin_method

    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin_method.cache_clear()
    yield name
    plugin_method.cache_clear()
