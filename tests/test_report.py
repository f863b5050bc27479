"""The results API (pandas) and `mpifl report`: tables in three formats, figures."""

from __future__ import annotations

import io
import re
import shutil
import signal
import subprocess
import sys
import time

import h5py
import pandas as pd
import pytest

from mpifl.results import read_run, read_runs
from tests.conftest import ROOT, SMALL_JOB, env, mpiexec, mpifl


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    job = folder / "job.toml"
    job.write_text(SMALL_JOB.format(output=folder / "unused.h5"))
    paths = []
    for seed in (0, 1):
        out = folder / f"seed{seed}.h5"
        proc = mpifl("run", str(job), "--output", str(out), "--set", f"run.seed={seed}",
                     "--set", f"run.name='seed{seed}'", ranks=2)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        paths.append(out)
    return job, paths


@pytest.fixture(scope="module")
def faster(runs):
    """A run of the same job at another learning rate (seed 0)."""
    job, paths = runs
    out = paths[0].parent / "lr.h5"
    proc = mpifl("run", str(job), "--output", str(out), "--set", "train.lr=0.1",
                 "--set", "run.name='other'", ranks=2)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


TABLE_NAMES = ("rounds", "participation", "ranks", "eval", "server", "client_metrics",
               "energy", "fleet")  # fmt: skip


def test_read_run(runs):
    _, paths = runs
    run = read_run(paths[0])
    assert run.name == "seed0" and run.attrs["status"] == "complete"
    assert set(run.tables) == set(TABLE_NAMES)
    part = run.tables["participation"]
    trained = part["status"] == "trained"  # FedAvg's client metric: a column, NaN if none
    assert part["update_norm"].notna().equals(trained) and trained.any()
    assert part.attrs["units"]["update_norm"] == "L2 norm"
    assert set(part["status"].cat.categories) >= {"trained", "unavailable", "infeasible"}
    assert len(part) == 3 * 10 and run.config["round"]["cohort"] == 10
    assert run.class_names == ["mcu", "rpi", "phone", "jetson"]
    assert run.tables["fleet"]["client"].tolist() == list(range(20))
    assert run.tables["eval"]["group"].iloc[0] == "global"


def test_the_file_describes_itself(runs):
    _, paths = runs
    with h5py.File(paths[0]) as f:
        for table in TABLE_NAMES:
            ds = f[table]
            assert list(ds.attrs["columns"]) == list(ds.dtype.names)
            assert len(ds.attrs["units"]) == len(ds.attrs["descriptions"]) == len(ds.dtype.names)
            assert all(d for d in ds.attrs["descriptions"])
        classes = h5py.check_enum_dtype(f["participation"].dtype["device_class"])
        assert classes == {"mcu": 0, "rpi": 1, "phone": 2, "jetson": 3}
        assert h5py.check_enum_dtype(f["fleet"].dtype["device_class"]) == classes
        for key in ("mpifl_version", "torch_version", "mpi4py_version", "mpi_library"):
            assert f.attrs[key]
        assert f.attrs["format_version"] == 8 and "git_commit" in f.attrs
    run = read_run(paths[0])
    part = run.tables["participation"]
    assert list(part["device_class"].cat.categories) == ["mcu", "rpi", "phone", "jetson"]
    assert part.attrs["units"]["compute_time"] == "s (virtual)"
    never = part[part["status"].isin(["unavailable", "infeasible"])]
    assert len(never) and (never[["compute_time", "comm_time"]] == 0).all().all()
    assert (part[part["status"] == "trained"]["compute_time"] > 0).all()


def test_a_format_3_file_reads_as_format_4(runs, tmp_path):
    """Format 3 had participation.family (now variant), no participation.group and no
    server table."""
    _, paths = runs
    old = tmp_path / "old.h5"
    shutil.copy(paths[0], old)
    with h5py.File(old, "r+") as f:
        rows = f["participation"][:]
        rows.dtype.names = ["family" if n == "variant" else n for n in rows.dtype.names]
        rows = rows[[n for n in rows.dtype.names if n != "group"]]  # new in format 4
        del f["participation"], f["server"]
        f.create_dataset("participation", data=rows)
        f.attrs["format_version"] = 3
    run, now = read_run(old), read_run(paths[0])
    assert "family" not in run.tables["participation"]
    assert (run.tables["participation"]["group"] == -1).all()
    assert run.tables["participation"]["variant"].equals(now.tables["participation"]["variant"])
    assert len(run.tables["server"]) == 0 and list(run.tables["server"]) == [
        "round",
        "name",
        "value",
    ]


def test_a_format_5_file_reads_with_an_empty_client_metrics_table(runs, tmp_path):
    _, paths = runs
    old = tmp_path / "old.h5"
    shutil.copy(paths[0], old)
    with h5py.File(old, "r+") as f:
        del f["client_metrics"]
        f.attrs["format_version"] = 5
    run = read_run(old)
    table = run.tables["client_metrics"]
    assert len(table) == 0 and list(table) == ["round", "client", "name", "value"]
    assert "update_norm" not in run.tables["participation"]


def test_read_runs_adds_differing_config_keys(runs):
    _, paths = runs
    rounds = read_runs(paths, "rounds")
    assert set(rounds["run"]) == {"seed0", "seed1"}
    assert rounds["file"].tolist() == [str(paths[0])] * 3 + [str(paths[1])] * 3
    assert {"run.seed", "run.name", "run.output"} <= set(rounds.columns)
    assert "train.lr" not in rounds.columns  # the same in both runs
    assert rounds.groupby("run.seed").size().tolist() == [3, 3]
    chosen = read_runs(paths, "participation", ["train.lr"])
    assert (chosen["train.lr"] == 0.05).all()


def test_read_a_file_being_written(runs, tmp_path):
    job, _ = runs
    out = tmp_path / "live.h5"
    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "mpifl", "run", str(job), "--output",
           str(out), "--set", "run.rounds=40"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL)
    seen = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and seen is None:
            try:
                run = read_run(out)
                if run.attrs["status"] == "running" and len(run.tables["rounds"]) >= 2:
                    seen = run
            except (OSError, KeyError):
                pass
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)  # seen: the rest of the run is not needed
        proc.wait(timeout=120)
    assert seen is not None
    n = len(seen.tables["rounds"])
    assert seen.tables["rounds"]["round"].tolist() == list(range(1, n + 1))
    assert seen.tables["participation"]["round"].max() <= n


def test_a_round_under_way_is_not_read(runs, tmp_path):
    """A reader of a file being written saw the round under way in part: its participation
    rows without its `rounds` row (tables are read one after another while the run
    appends), as it would in a file left by a run that failed in the middle of a round.
    It now reads the rounds the file holds in full: those `ranks` (the last table a round
    appends to) lists."""
    _, paths = runs
    live = tmp_path / "live.h5"
    shutil.copy(paths[0], live)
    with h5py.File(live, "r+") as f:  # round 3 written up to its `rounds` row
        f.attrs["status"] = "running"
        ranks = f["ranks"]
        ranks.resize((int((ranks["round"] < 3).sum()),))
    run = read_run(live)
    for name in ("rounds", "participation", "eval", "ranks"):
        assert run.tables[name]["round"].max() == 2, name
    assert (
        run.tables["participation"].attrs["units"]["round"]
        == read_run(paths[0]).tables["participation"].attrs["units"]["round"]
    )
    assert read_run(paths[0]).tables["rounds"]["round"].tolist() == [1, 2, 3]  # a whole file
    with h5py.File(live, "r+") as f:  # a failure in the middle of round 3, recorded
        f.attrs["status"] = "failed"
    assert read_run(live).tables["participation"]["round"].max() == 2


def test_report_formats(runs):
    _, paths = runs
    text = mpifl("report", *map(str, paths))
    assert text.returncode == 0, text.stderr
    assert (
        "final_global_test_acc" in text.stdout
        and "seeds" in text.stdout
        and "jetson" in text.stdout
    )
    csv = mpifl("report", *map(str, paths), "--csv", "--target", "0.5")
    table = pd.read_csv(io.StringIO(csv.stdout))
    assert table["run"].tolist() == ["seed0"] and table["seeds"].tolist() == [2]  # grouped
    wanted = {"final_global_test_acc", "best_global_test_acc", "last5_global_test_acc",
              "last5_global_test_acc_sd", "final_client_acc_mean", "rounds_to_0.5", "MB_down",
              "MB_up", "client_MFLOP", "client_footprint_kB", "trained", "infeasible",
              "wall_s"}  # fmt: skip
    assert wanted <= set(table.columns)
    one = [read_run(p).tables["rounds"]["test_accuracy"].tail(3).mean() for p in paths]
    assert table["last5_global_test_acc"][0] == pytest.approx(sum(one) / 2)
    assert table["last5_global_test_acc_sd"][0] == pytest.approx(pd.Series(one).std())
    md = mpifl("report", *map(str, paths), "--markdown")
    assert md.stdout.startswith("| run |") and "|---|" in md.stdout


def test_report_names_runs_by_the_keys_that_differ(runs, faster):
    _, paths = runs
    csv = mpifl("report", *map(str, paths), str(faster), "--csv")
    assert csv.returncode == 0, csv.stderr
    table = pd.read_csv(io.StringIO(csv.stdout))
    assert table["run"].tolist() == ["train.lr=0.05", "train.lr=0.1"]
    assert table["seeds"].tolist() == [2, 1]
    assert table["train.lr"].tolist() == [0.05, 0.1]  # a column per key that differs
    per_run = pd.read_csv(io.StringIO(mpifl("report", *map(str, paths), str(faster), "--csv",
                                            "--per-run").stdout))  # fmt: skip
    assert per_run["file"].tolist() == [str(paths[0]), str(paths[1]), str(faster)]
    assert per_run["setting"].tolist() == ["train.lr=0.05", "train.lr=0.05", "train.lr=0.1"]
    assert per_run["seed"].tolist() == [0, 1, 0]
    # text: runs named by their files below the folder they share
    text = mpifl("report", *map(str, paths), str(faster), "--per-run").stdout
    assert f"files under {paths[0].parent}/" in text and re.search(r"\n *seed1\.h5 ", text)


def test_report_csv_counts_are_integers(runs):
    _, paths = runs
    csv = mpifl("report", str(paths[0]), "--csv", "--per-run", "--target", "0.01").stdout
    header, values = csv.splitlines()[:2]
    row = dict(zip(header.split(","), values.split(","), strict=True))
    for count in ("seed", "rounds", "trained", "infeasible", "rounds_to_0.01"):
        assert row[count].isdigit(), (count, row[count])


def test_report_text_is_compact_and_fits_a_width(runs):
    _, paths = runs
    text = mpifl("report", str(paths[0])).stdout  # one seed: no empty _sd columns
    assert "_sd " not in text and "best_global_test_acc" not in text
    assert "last5_global_test_acc" in text and "mean over each setting's seeds" in text
    wide = mpifl("report", str(paths[0]), "--wide").stdout
    assert "best_global_test_acc" in wide and "client_MFLOP" in wide
    from mpifl.report.summary import render  # (the command passes the terminal's width)

    frame = pd.DataFrame({f"column_{i}": [0.123456, 1.5] for i in range(20)})
    lines = render(frame, "text", 80).splitlines()
    assert max(map(len, lines)) <= 80 and len(lines) > 3


def test_report_figures(runs, tmp_path):
    _, paths = runs
    proc = mpifl("report", *map(str, paths), "--plot", str(tmp_path / "fig"))
    assert proc.returncode == 0, proc.stderr
    for name in ("accuracy", "eval_groups", "participation", "ranks"):
        png = tmp_path / "fig" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_report_bad_file(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"not hdf5")
    proc = mpifl("report", str(bad))
    assert proc.returncode == 2 and "not an mpifl result file" in proc.stderr


def test_figures_lay_out_without_warnings(runs, faster, tmp_path):
    """Legends beside the panels and long labels keyed as S1, S2: matplotlib lays the
    figures out ("Tight layout not applied" was a warning before)."""
    import warnings

    from mpifl.report.labels import legend
    from mpifl.report.plots import write_all

    _, paths = runs
    files = [*paths, faster]
    labels = ["algorithm.name=fedavg, train.lr=0.05, round.cohort=10, " * 5] * 2 + ["short"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written = write_all([read_run(p) for p in files], labels, tmp_path)
    assert len(written) == 5 and all(p.stat().st_size > 10_000 for p in written)
    assert legend(labels, 40) == (["S1", "S1", "S2"], [f"  S1  {labels[0]}", "  S2  short"])


def test_report_warns_of_what_a_mean_hides_and_refuses_bad_input(runs, tmp_path):
    _, paths = runs
    again = tmp_path / "again.h5"
    shutil.copy(paths[0], again)
    proc = mpifl("report", str(paths[0]), "seed1.h5", str(again), cwd=paths[0].parent)
    assert proc.returncode == 0, proc.stderr  # (absolute and relative paths mixed)
    assert f"{again} repeats seed 0 of {paths[0]}" in proc.stderr
    for args, message in (
        (["--target", "nan"], "--target nan: must be an accuracy in (0, 1]"),
        (["--plot", str(paths[0])], "cannot write figures there"),
    ):
        bad = mpifl("report", str(paths[0]), *args)
        assert bad.returncode == 2 and message in bad.stderr and not bad.stdout, bad.stderr
    missing = mpifl("report", str(tmp_path / "none.h5"))
    assert missing.returncode == 2 and "none.h5 does not exist" in missing.stderr
