"""Hostile and careless input, kept fixed: bad config values, paths, data files, fleet files,
pickles and shell metacharacters. Each must give one line naming the problem, exit 2,
and leave nothing written."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import stat
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from mpifl import safe_pickle
from mpifl.engine import checkpoint
from mpifl.errors import ConfigError, InputError
from mpifl.hpc.slurm import Resources, render
from mpifl.jobs import load_job
from tests.conftest import ROOT, SMALL_JOB, env, mpifl, mpifl_cases


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def one_line_exit_2(result: dict, expect: str) -> None:
    lines = result["stderr"].strip().splitlines()
    assert result["rc"] == 2, result
    assert len(lines) == 1 and lines[0].startswith("mpifl: "), result["stderr"][-2000:]
    assert len(lines[0]) < 400, lines[0]
    assert expect in lines[0], lines[0]


def _idx(path: Path, array: np.ndarray, code: int) -> None:
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    path.write_bytes(header + array.tobytes())


def _npz(path: Path, x: np.ndarray, y: np.ndarray) -> str:
    np.savez(path, x=x, y=y)
    return str(path)


class Evil:
    """Unpickling this runs `touch MARKER`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Huge:
    """Unpickles as a request for a 10^12-byte numpy array."""

    def __reduce__(self):
        return (np.ndarray, ((10**12,), "u1"))


def bad_inputs(tmp: Path) -> list[tuple[list[str], str]]:
    """(extra `mpifl run` arguments, text the error must contain)."""
    data = tmp / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    x = rng.random((200, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, 200)
    nan_x = x.copy()
    nan_x[3, 2, 2] = np.nan
    mnist_trunc, mnist_plain = data / "mnist_trunc", data / "mnist_plain"
    for folder in (mnist_trunc, mnist_plain):
        folder.mkdir()
        for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # fmt: skip
            raw = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3, 4]))
            (folder / f"{stem}.gz").write_bytes(
                raw[:-6] if folder is mnist_trunc else b"not gzip at all"
            )
    cifar = data / "cifar"
    cifar.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (cifar / name).write_bytes(pickle.dumps(Evil(tmp / "PWNED")))
    many = data / "many.csv"
    many.write_text(
        "device_class,flops,memory,uplink,downlink,latency,availability,trace_period\n"
        + "".join(f"c{i},1e9,1e9,1e6,1e6,0.1,1.0,0\n" for i in range(300))
    )
    nan_latency = data / "nanlat.csv"
    nan_latency.write_text(
        "device_class,flops,memory,uplink,downlink,latency,availability,trace_period\n"
        "a,1e9,1e9,1e6,1e6,nan,1.0,0\n"
    )
    nan_iv = data / "naniv.csv"
    nan_iv.write_text(nan_latency.read_text().replace("nan", "0.1"))
    (data / "naniv.intervals.csv").write_text("client,start,end\n0,nan,10\n")
    not_ckpt = data / "notes.txt"
    not_ckpt.write_text("not a checkpoint")
    regular = data / "regular_file"
    regular.write_text("x")
    directory = data / "a_directory.h5"
    directory.mkdir()
    koala = ["algorithm.name='koala'"]
    huge_label, neg_label = data / "mnist_huge_label", data / "mnist_neg_label"
    images = rng.integers(0, 256, (40, 28, 28)).astype(np.uint8)
    for folder, labels in (
        (huge_label, np.full(40, 10**9, ">i4")),
        (neg_label, -np.ones(40, "i1")),
    ):
        folder.mkdir()
        for stem in ("train", "t10k"):
            _idx(folder / f"{stem}-images-idx3-ubyte", images, 0x08)
            _idx(
                folder / f"{stem}-labels-idx1-ubyte", labels, 0x0C if labels.itemsize == 4 else 0x09
            )
    leaf_nan, leaf_list = data / "leaf_nan", data / "leaf_list"
    for folder, user_data in (
        (leaf_nan, {"u": {"x": [[float("nan")] * 784] * 3, "y": [1, 2, 3]}}),
        (leaf_list, []),
    ):
        folder.mkdir()
        (folder / "a.json").write_text(json.dumps({"users": ["u"], "user_data": user_data}))
    tff = data / "tff_len.h5"
    with h5py.File(tff, "w") as f:
        f["examples/a/pixels"] = np.zeros((10, 28, 28), np.float32)
        f["examples/a/label"] = np.zeros(4, np.int32)
    short = data / "short.csv"
    short.write_text(nan_latency.read_text().replace("nan", "0.1") + "b,1e9\n")
    iv2 = data / "iv2.csv"
    iv2.write_text(short.read_text().replace("b,1e9\n", ""))
    (data / "iv2.intervals.csv").write_text("client,start\n0,1\n")
    plain = data / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["profiles"] = np.zeros((3, 3))
        f["profiles"].attrs["device_classes"] = ["a"]
    mnist = ["data.name='mnist'", "data.min_samples=1", "fleet.clients=5", "round.cohort=2"]
    natural = ["fleet.clients=0", "round.cohort=1"]
    return [
        (["round.overcommit=inf"], "round.overcommit"),
        (["algorithm.server_lr=inf"], "algorithm.server_lr"),
        (["emulation.mode='throttled'", "emulation.time_scale=1e12"], "emulation.time_scale"),
        (["model.fc=1000000000"], "model.fc"),
        (["model.channels=[60000, 60000]"], "parameters"),
        (["emulation.rlimit_data=1"], "emulation.rlimit_data"),
        (['algorithm.name=["fedavg"]'], "algorithm.name"),
        ([r'run.name="a\u0000b"'], "run.name"),
        ([f"run.name='{'n' * 5000}'"], "run.name"),
        ([r'run.name="a\nb"'], "run.name"),
        (["train.lr=inf"], "train.lr"),
        (["train.weight_decay=inf"], "train.weight_decay"),
        (["run.threads=1000000"], "run.threads"),
        (["run.threads=1000"], "run.threads"),
        (["data.alpha=inf"], "data.alpha"),
        (["fleet.classes.mcu.latency=nan"], "latency"),
        (["fleet.classes.mcu.flops=1e-300"], "flops"),
        (["fleet.spread=1000"], "fleet.spread"),
        ([f"model.hidden=[{', '.join(['1'] * 100000)}]"], "model.hidden"),
        ([*koala, f"algorithm.server_init='{not_ckpt}'"], "server_init"),
        ([f"run.output='{directory}'"], "is a directory"),
        ([f"run.output='{regular}/x.h5'"], "output error"),
        (["run.output='/dev/null/x.h5'"], "output error"),
        (["data.name='mnist'", f"data.path='{mnist_trunc}'"], "mnist_trunc"),
        (["data.name='mnist'", f"data.path='{mnist_plain}'"], "mnist_plain"),
        (["data.name='npz'", f"data.path='{_npz(data / 'nan.npz', nan_x, y)}'"], "NaN"),
        (["data.name='npz'", f"data.path='{_npz(data / 'empty.npz', x[:0], y[:0])}'"], "N >= 1"),
        (
            ["data.name='npz'", f"data.path='{_npz(data / 'd5.npz', x[:, None, None], y)}'"],
            "shape",
        ),
        (
            ["data.name='npz'", f"data.path='{_npz(data / 'd2.npz', x.reshape(200, -1), y)}'"],
            "model.arch",
        ),
        (
            ["data.name='npz'", f"data.path='{_npz(data / 'big.npz', x, y * 10**8)}'"],
            "labels",
        ),
        ([f"fleet.trace='{many}'"], "device classes"),
        ([f"fleet.trace='{nan_latency}'"], "latency"),
        ([f"fleet.trace='{nan_iv}'"], "intervals"),
        (["data.name='cifar10'", f"data.path='{cifar}'"], "refused"),
        ([*mnist, f"data.path='{huge_label}'"], "labels must be integers"),
        ([*mnist, f"data.path='{neg_label}'"], "labels must be integers"),
        (["data.name='femnist'", f"data.path='{leaf_nan}'", *natural], "NaN"),
        (["data.name='femnist'", f"data.path='{leaf_list}'", *natural], "femnist"),
        (["data.name='tff'", f"data.path='{tff}'", *natural], "10 inputs but 4 labels"),
        (
            [
                "data.name='npz'",
                f"data.path='{_npz(data / 'e300.npz', x.astype(np.float64) * 1e300, y)}'",
            ],
            "NaN",
        ),
        ([f"fleet.trace='{short}'"], "not a fleet file"),
        ([f"fleet.trace='{iv2}'"], "not a fleet file"),
        ([f"fleet.trace='{plain}'"], "not a fleet file"),
        (["train.lr=1e308"], "train.lr"),
        (["data.name='synthetic'", "model.arch='mlp'", "fleet.clients=1000000000"], "GiB"),
        (["data.name='w1'", "data.w1.samples=1000000"], "largest client"),
    ]


def test_bad_run_inputs_exit_2_with_one_line_and_write_nothing(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(SMALL_JOB.format(output=tmp_path / "out" / "never.h5"))
    cases = bad_inputs(tmp_path)
    before = files_under(tmp_path)
    args = [["run", str(job), *[a for s in sets for a in ("--set", s)]] for sets, _ in cases]
    results = mpifl_cases(args, tmp_path)
    for (_, expect), result in zip(cases, results, strict=True):
        one_line_exit_2(result, expect)
    assert files_under(tmp_path) == before
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only file system needs root")
def test_output_on_a_read_only_file_system(tmp_path, small_job):
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)]).returncode:
        pytest.skip("cannot mount tmpfs here")
    try:
        (result,) = mpifl_cases(
            [["run", str(small_job), "--output", str(mount / "sub" / "x.h5")]], tmp_path
        )
        one_line_exit_2(result, "Read-only file system")
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_pickles_run_no_code(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        safe_pickle.loads(evil.read_bytes())
    objects = np.array([Evil(marker)], dtype=object)
    with pytest.raises(pickle.UnpicklingError):
        safe_pickle.loads(pickle.dumps(objects))
    plain = {b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), b"labels": [np.int64(1), 2]}
    back = safe_pickle.loads(pickle.dumps(plain))
    assert np.array_equal(back[b"data"], plain[b"data"]) and back[b"labels"] == [1, 2]
    bomb = tmp_path / "bomb.pkl"  # 100 bytes that ask for a 931 GiB array
    bomb.write_bytes(pickle.dumps(Huge()))
    for capacity in (evil, bomb):
        proc = mpifl("fleet", "import", "--capacity", str(capacity), "--output",
                     str(tmp_path / "f.csv"))  # fmt: skip
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not marker.exists() and not (tmp_path / "f.csv").exists()


@pytest.mark.parametrize(
    ("sets", "key"),
    [
        (["round.overcommit=inf"], "round.overcommit"),
        (["train.lr=nan"], "train.lr"),
        (["data.synthetic.samples_sigma=50"], "samples_sigma"),
        (["fleet.classes.mcu.uplink=inf"], "uplink"),
    ],
)
def test_non_finite_and_out_of_range_values_are_refused(small_job, sets, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_job(small_job, sets)


def test_a_huge_value_gives_a_short_message(small_job):
    with pytest.raises(ConfigError) as info:
        load_job(small_job, [f"model.hidden=[{', '.join(['7'] * 50000)}]"])
    assert len(str(info.value)) < 300


def test_set_under_a_catalogue_class_keeps_the_other_classes(small_job):
    cfg = load_job(small_job, ["fleet.classes.mcu.memory=100000"])
    classes = cfg.as_dict()["fleet"]["classes"]
    assert list(classes) == ["mcu", "rpi", "phone", "jetson"]
    assert classes["mcu"]["memory"] == 100000 and classes["rpi"]["memory"] == 512 * 2**20
    cfg = load_job(small_job, ["run={rounds=2}"])
    assert (cfg.run.rounds, cfg.run.name) == (2, "small")


def test_more_than_256_device_classes_are_refused(small_job):
    sets = [f"fleet.classes.c{i}={{weight=1, flops=1e9, memory=1e9, uplink=1e6, "
            "downlink=1e6, latency=0.1, availability=1}" for i in range(257)]  # fmt: skip
    with pytest.raises(ConfigError, match="at most 256"):
        load_job(small_job, sets)


def test_a_checkpoint_of_another_run_is_not_resumed(tmp_path):
    out = tmp_path / "run.h5"
    folder = checkpoint.folder_of(out) / "round_000006"
    folder.mkdir(parents=True)
    np.savez(folder / "method.npz", w=np.zeros(3))
    meta = {"next_round": 6, "virtual_time": 1.0, "n_ranks": 2, "run_id": "old"}
    np.savez(folder / "meta.npz", **{k: np.array(v) for k, v in meta.items()})
    (folder.parent / "latest").write_text(folder.name)
    assert checkpoint.load(out, "new") is None
    assert checkpoint.load(out, "old").next_round == 6


def _fake_srun(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "srun"
    fake.write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {tmp_path / "srun_args"}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return bin_dir


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("job", "jobs/a job\"'; touch {marker}.toml"),
        ("output", "results/`touch {marker}` x';touch {marker}.h5"),
    ],
)
def test_batch_script_values_are_quoted(tmp_path, field, value):
    marker = tmp_path / "INJECTED"
    value = value.format(marker=marker)
    args = {"job": "jobs/x.toml", "output": "results/x.h5"}
    args[field] = value
    script = render("name", args["job"], args["output"], "log.txt", Resources())
    bin_dir = _fake_srun(tmp_path)
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    run_env = {**env(), "PATH": f"{bin_dir}:{env()['PATH']}"}
    proc = subprocess.run(["bash", str(path)], capture_output=True, text=True, env=run_env,
                          cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    srun_args = (tmp_path / "srun_args").read_text().splitlines()
    assert value in srun_args


@pytest.mark.parametrize("field", ["job", "output"])
def test_paths_with_a_dollar_never_reach_a_batch_script(field):
    args = {"job": "jobs/x.toml", "output": "results/x.h5"}
    args[field] = "results/$(touch x).h5"
    with pytest.raises(InputError, match="must not contain"):
        render("name", args["job"], args["output"], "log.txt", Resources())


UNSAFE_OPTIONS = [  # submit options refused, and the text their one-line message holds
    (["--account", "lab\ntouch /tmp/x"], "--account"),
    (["--partition", "a b"], "--partition"),
    (["--time", "4h"], "--time"),
    (["--nodes", "0"], "--nodes"),
    (["--account", "x\x01y"], "--account"),
    (["--time", "\u0661:00"], "--time"),
    (["--set", "run.output='results/${SLURM_ARRAY_TASK_ID}.h5'"], "{SLURM_ARRAY_TASK_ID}"),
    (["--set", 'run.name="a\\ntouch x"'], "run.name"),  # a newline in the job name
]


def test_submit_refuses_unsafe_or_malformed_options(small_job):
    results = mpifl_cases([["submit", str(small_job), "--dry-run", *a] for a, _ in UNSAFE_OPTIONS])
    for (args, text), result in zip(UNSAFE_OPTIONS, results, strict=True):
        assert result["rc"] == 2 and text in result["stderr"], (args, result["stderr"])
        assert len(result["stderr"].strip().splitlines()) == 1, (args, result["stderr"])


def test_set_values_never_reach_a_batch_script(small_job):
    values = ["run.name='x; touch M'", "run.name='$(touch M)'", "run.name='a b;c'"]
    results = mpifl_cases([["submit", str(small_job), "--dry-run", "--set", v] for v in values])
    for value, result in zip(values, results, strict=True):
        assert result["rc"] == 0, (value, result["stderr"])  # into the job snapshot
        assert "touch M" not in result["stdout"] and "--set" not in result["stdout"], value
    assert "#SBATCH --job-name=a_b_c\n" in results[-1]["stdout"]


MALFORMED_SWEEPS = [  # sweep file -> the text its one-line message holds
    ("job = 5", "job = 5"),
    ('job = "{job}"\nseeds = []', "seeds"),
    ('job = "{job}"\nseeds = 5', "seeds"),
    ('job = "{job}"\ngrid = 5', "[grid]"),
    ('job = "{job}"\nfolder = "sw${{SLURM_ARRAY_TASK_ID}}"', "'$'"),
]


def test_malformed_sweep_files(small_job, tmp_path):
    cases = []
    for i, (content, _) in enumerate(MALFORMED_SWEEPS):
        sweep = tmp_path / f"sweep{i}.toml"
        sweep.write_text(content.format(job=small_job))
        cases.append(["sweep", "submit", str(sweep), "--dry-run"])
    for (content, text), result in zip(MALFORMED_SWEEPS, mpifl_cases(cases), strict=True):
        assert result["rc"] == 2 and text in result["stderr"], (content, result["stderr"])
        assert len(result["stderr"].strip().splitlines()) == 1, (content, result["stderr"])
