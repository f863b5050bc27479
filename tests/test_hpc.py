"""Batch script rendering and sweep expansion (no SLURM needed)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import h5py
import pytest

from mpifl.hpc.queue import parse
from mpifl.hpc.sweep import _state, array_spec, load_sweep, status, unfinished, write_tasks
from mpifl.results.lock import lock_path
from mpifl.results.status import read_status
from tests.conftest import ROOT, env, mpifl, mpifl_cases, run_here


def test_submit_dry_run_shows_the_script_even_over_an_existing_output(small_job, tmp_path):
    (tmp_path / "out.h5").write_bytes(b"not a finished run")
    proc = mpifl("submit", str(small_job), "--dry-run")
    assert proc.returncode == 0 and "#SBATCH --requeue" in proc.stdout, proc.stderr


def test_submit_dry_run_renders_the_allocation(small_job):
    job = str(small_job)
    proc, launcher, pmix, default, bad = mpifl_cases([
        ["submit", job, "--nodes", "4", "--ntasks-per-node", "8", "--cpus-per-task", "2",
         "--time", "04:00:00", "--partition", "compute", "--account", "lab", "--dry-run",
         "--set", "run.rounds=5"],
        ["submit", job, "--launcher", "mpiexec", "--nodes", "2", "--dry-run"],
        ["submit", job, "--srun-mpi", "pmix", "--dry-run"],
        ["submit", job, "--srun-mpi", "default", "--dry-run"],
        ["submit", job, "--srun-mpi", "pmi2 --x", "--dry-run"],
    ])  # fmt: skip
    assert proc["rc"] == 0, proc["stderr"]
    script = proc["stdout"]
    for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=8", "#SBATCH --cpus-per-task=2",
                 "#SBATCH --time=04:00:00", "#SBATCH --partition=compute",
                 "#SBATCH --account=lab", "#SBATCH --signal=TERM@60", "#SBATCH --requeue",
                 "srun --mpi=pmi2 mpifl run", "--resume",
                 f"job={small_job.parent / 'out.job.toml'}"):  # fmt: skip
        assert line in script, line
    assert "--set" not in script  # the snapshot holds the resolved config
    assert "mpiexec -n 4 mpifl run" in launcher["stdout"]
    for other, line in ((pmix, "srun --mpi=pmix mpifl run"), (default, "srun mpifl run")):
        assert line in other["stdout"], other["stderr"]
    assert bad["rc"] == 2 and "--srun-mpi 'pmi2 --x'" in bad["stderr"] and not bad["stdout"]


def test_sweep_expands_and_validates(small_job, tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f'job = "{small_job}"\nfolder = "{tmp_path / "sw"}"\nseeds = [0, 1]\n'
                     '[grid]\n"train.lr" = [0.01, 0.1]\n"data.alpha" = [0.5]\n')  # fmt: skip
    proc = mpifl("sweep", "submit", str(sweep), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --array=0-3" in proc.stdout
    assert 'task_"${SLURM_ARRAY_TASK_ID}".toml' in proc.stdout
    assert "task_%A_%a.log" in proc.stdout  # a resubmission keeps the earlier task logs
    assert not (tmp_path / "sw").exists()  # --dry-run prints and writes nothing
    tasks = load_sweep(sweep).tasks
    assert len(tasks) == 4
    assert "lr = 0.1" in tasks[3] and "seed = 1" in tasks[3]
    status = mpifl("sweep", "status", str(sweep))
    assert "not submitted 4" in status.stdout
    assert "train.lr=0.1 data.alpha=0.5 seed=1" in status.stdout  # task 3's grid values
    sweep.write_text(f'job = "{small_job}"\n[grid]\n"train.lrr" = [0.1]\n')
    bad = mpifl("sweep", "submit", str(sweep), "--dry-run")
    assert bad.returncode == 2 and "train.lrr" in bad.stderr and "task 0" in bad.stderr


def test_submit_options_pass_through_and_template(small_job, tmp_path, monkeypatch):
    submit = ["submit", str(small_job), "--dry-run"]
    refusals = [(["--sbatch", "time=5"], "sets this itself (from --time)"),
                (["--sbatch", "no-requeue"], "--requeue always"),
                (["--sbatch", "requeue"], "sets this itself (always, so that"),
                (["--sbatch", "x y"], "not an sbatch option"),
                (["--mem", "4G;rm"], "--mem"),
                (["--signal", "0"], "--signal 0")]  # fmt: skip
    site = tmp_path / "site.template"
    site.write_text("#!/bin/bash\n#SITE {name} {nodes} {ntasks_per_node} {cpus_per_task} "
                    "{time} {log} {signal_lead}\n{extra}\n{venv_bin} {workdir}\n"
                    "{launcher} mpifl run {job} --output {output} --resume\n")  # fmt: skip
    proc, own, *refused = mpifl_cases([
        [*submit, "--mem", "4G", "--mem-per-cpu", "2G", "--gres", "gpu:1", "--qos", "high",
         "--constraint", "intel&ib", "--mail-type", "END,FAIL", "--mail-user", "a@b.org",
         "--signal", "300", "--sbatch", "exclusive", "--sbatch", "reservation=r1"],
        [*submit, "--template", str(site)],
        *([*submit, *bad] for bad, _ in refusals),
    ])  # fmt: skip
    assert proc["rc"] == 0, proc["stderr"]
    for line in ("--mem=4G", "--mem-per-cpu=2G", "--gres=gpu:1", "--qos=high",
                 "--constraint=intel&ib", "--mail-type=END,FAIL", "--mail-user=a@b.org",
                 "--signal=TERM@300", "--exclusive\n", "--reservation=r1"):  # fmt: skip
        assert "#SBATCH " + line in proc["stdout"], line
    assert "CPU build" in proc["stderr"]  # --gres gpu:1 with a CPU torch: said, not refused
    for (bad, words), result in zip(refusals, refused, strict=True):
        assert result["rc"] == 2 and words in result["stderr"], (bad, result["stderr"])
    assert own["rc"] == 0 and own["stdout"].startswith("#!/bin/bash\n#SITE small 1 2 1")
    monkeypatch.setenv("MPIFL_SLURM_TEMPLATE", str(site))
    assert mpifl("submit", str(small_job), "--dry-run").stdout.startswith("#!/bin/bash\n#SITE")
    site.write_text("#!/bin/bash\n{launcher} mpifl run {job}\n")
    lacking = mpifl("submit", str(small_job), "--dry-run")
    assert lacking.returncode == 2 and "lacks the placeholders" in lacking.stderr
    assert "{time}" in lacking.stderr and "\n" not in lacking.stderr.strip()


def test_submit_over_an_existing_output(small_job, tmp_path):
    out = small_job.parent / "out.h5"
    run_here(small_job, out)
    done = mpifl("submit", str(small_job))  # no sbatch here: it must not get that far
    assert done.returncode == 0 and "already complete; nothing submitted" in done.stdout
    with h5py.File(out, "r+") as f:
        f.attrs["status"] = "interrupted"
    unfinished = mpifl("submit", str(small_job))
    assert unfinished.returncode == 2 and "--resume" in unfinished.stderr
    with h5py.File(out, "r+") as f:
        f.attrs["status"] = "complete"
    before = out.read_bytes()
    again = mpifl("submit", str(small_job), "--overwrite")  # sbatch fails here: nothing lost
    assert again.returncode == 2 and "sbatch" in again.stderr
    assert out.read_bytes() == before and not list(tmp_path.glob(".*replaced"))


def test_sweep_throttle(small_job, tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f'job = "{small_job}"\nfolder = "{tmp_path / "sw"}"\nseeds = [0, 1, 2]\n')
    proc = mpifl("sweep", "submit", str(sweep), "--dry-run", "--throttle", "2")
    assert proc.returncode == 0 and "#SBATCH --array=0-2%2" in proc.stdout


def test_sweep_submit_leaves_out_the_tasks_done(small_job, tmp_path):
    sweep = tmp_path / "sweep.toml"
    folder = tmp_path / "sw"
    sweep.write_text(f'job = "{small_job}"\nfolder = "{folder}"\nseeds = [0, 1, 2, 3]\n')
    run_here(small_job, folder / "task_1.h5", "run.seed=1")
    proc = mpifl("sweep", "submit", str(sweep), "--dry-run")
    assert proc.returncode == 0 and "#SBATCH --array=0,2-3\n" in proc.stdout, proc.stderr
    for i in (0, 2, 3):
        run_here(small_job, folder / f"task_{i}.h5", f"run.seed={i}")
    none = mpifl("sweep", "submit", str(sweep), "--dry-run")
    assert none.returncode == 0 and "nothing submitted" in none.stdout, none.stderr


def test_array_spec_and_squeue_sacct_lines():
    assert array_spec([0, 1, 2, 3, 7, 9, 10]) == "0-3,7,9-10" and array_spec([5]) == "5"
    text = "41_3 RUNNING\n41_[5-7,9%2] PENDING\n42_0|CANCELLED by 0\n42_1|COMPLETED\n43 RUNNING\n"
    assert parse(text) == {("41", 3): "RUNNING", ("41", 5): "PENDING", ("41", 6): "PENDING",
                           ("41", 7): "PENDING", ("41", 9): "PENDING", ("42", 0): "CANCELLED",
                           ("42", 1): "COMPLETED"}  # fmt: skip


def test_a_task_state_tells_dead_from_live(small_job, tmp_path):
    """The file's word, corrected by SLURM's: a file that says running whose task SLURM
    no longer runs was killed; a task that left the queue without a file died before
    writing; a live SLURM task is running even where its lock is not visible."""
    missing = tmp_path / "none.h5"
    assert _state(missing, False, None) == "not submitted"
    assert _state(missing, True, None) == "queued"
    assert _state(missing, True, "PENDING") == "queued"
    assert _state(missing, True, "RUNNING") == "running"
    assert _state(missing, True, "FAILED") == "died before writing (SLURM: FAILED)"
    assert _state(missing, True, "ENDED") == "died before writing"
    done = tmp_path / "done.h5"
    run_here(small_job, done)
    assert _state(done, True, "ENDED") == "done"
    stuck = tmp_path / "stuck.h5"  # a file that says running, whose lock nobody holds
    shutil.copy(done, stuck)
    with h5py.File(stuck, "a") as f:
        f.attrs["status"] = "running"
    assert _state(stuck, True, None) == "running"  # no lock file to ask
    lock_path(stuck).touch()
    assert _state(stuck, True, None) == "killed"
    assert _state(stuck, True, "TIMEOUT") == "killed (SLURM: TIMEOUT)"
    assert _state(stuck, True, "ENDED") == "killed"
    assert _state(stuck, True, "RUNNING") == "running"
    with h5py.File(stuck, "a") as f:
        f.attrs["status"] = "interrupted"
    assert _state(stuck, True, "PENDING") == "interrupted, requeued"
    assert unfinished([(0, "done"), (1, "killed"), (2, "queued"), (3, "interrupted, requeued"),
                       (4, "died before writing")]) == [1, 4]  # fmt: skip


@pytest.mark.mpi
def test_sweep_run_runs_what_is_left_here_and_stops_on_sigterm(small_job, tmp_path):
    sweep, folder = tmp_path / "sweep.toml", tmp_path / "sw"
    sweep.write_text(f'job = "{small_job}"\nfolder = "{folder}"\nseeds = [0, 1]\n'
                     '[grid]\n"run.rounds" = [20]\n')  # fmt: skip
    cmd = [sys.executable, "-m", "mpifl", "sweep", "run", str(sweep), "--ranks", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with h5py.File(folder / "task_0.h5", "r", libver="latest", swmr=True) as f:
                if len(f["rounds"]) >= 2:
                    break
        except (OSError, KeyError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # what a user's Ctrl-C or a scheduler does
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3 and "checkpointed: `mpifl sweep run` resumes it" in out, err
    assert read_status(folder / "task_0.h5")[0] == "interrupted"
    assert not (folder / "task_1.h5").exists()
    again = mpifl("sweep", "run", str(sweep))  # on 1 rank: task 0 resumes, task 1 runs
    assert again.returncode == 0 and "all 2 tasks done" in again.stdout, again.stderr
    with h5py.File(folder / "task_0.h5") as f:
        assert f.attrs["status"] == "complete" and "parts" in f.attrs
    assert "resuming" in (folder / "task_0.local.log").read_text()
    status = mpifl("sweep", "status", str(sweep))
    assert "done 2" in status.stdout
    nothing = mpifl("sweep", "run", str(sweep))
    assert nothing.returncode == 0 and "no task of" in nothing.stdout


def test_sweep_leaves_alone_the_files_that_need_a_person(small_job, tmp_path):
    """A truncated file is unreadable at once (a SWMR reader would hang on it), a file of
    another config is stale (the sweep file changed): status says so, submit and run
    leave them out; a submission record mpifl did not write is refused, not overwritten."""
    sweep_file, folder = tmp_path / "sweep.toml", tmp_path / "sw"
    sweep_file.write_text(f'job = "{small_job}"\nfolder = "{folder}"\nseeds = [0, 1, 2]\n')
    sweep = load_sweep(sweep_file)
    write_tasks(sweep)
    ran = mpifl("run", str(sweep.task_job(0)), ranks=1)
    assert ran.returncode == 0, ran.stderr
    whole = sweep.task_output(0).read_bytes()
    sweep.task_output(1).write_bytes(whole[: len(whole) // 2])  # a partial copy
    shutil.copy(sweep.task_output(0), sweep.task_output(2))  # seed 0's run as seed 2's
    started = time.monotonic()
    states = dict(status(sweep))
    assert time.monotonic() - started < 30
    assert states[0] == "done"
    assert states[1].startswith("unreadable (truncated: ") and "bytes of the" in states[1]
    assert states[2].startswith("stale: run.")
    proc = mpifl("sweep", "submit", str(sweep_file), "--dry-run")
    assert proc.returncode == 0 and "nothing submitted" in proc.stdout, proc.stderr
    assert "task 1 left out, unreadable" in proc.stderr and "task 2 left out, stale" in proc.stderr
    report = mpifl("report", str(sweep.task_output(1)))
    assert report.returncode == 2 and "truncated" in report.stderr
    sweep.submission.write_text("null\n")
    bad = mpifl("sweep", "status", str(sweep_file))
    assert bad.returncode == 2 and "not a submission record mpifl wrote" in bad.stderr
    assert sweep.submission.read_text() == "null\n"
