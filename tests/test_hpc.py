"""Batch script rendering and sweep expansion (no SLURM needed)."""

from __future__ import annotations

import h5py

from mpifl.hpc.sweep import load_sweep
from tests.conftest import mpifl, run_ok


def test_submit_dry_run_shows_the_script_even_over_an_existing_output(small_job, tmp_path):
    (tmp_path / "out.h5").write_bytes(b"not a finished run")
    proc = mpifl("submit", str(small_job), "--dry-run")
    assert proc.returncode == 0 and "#SBATCH --requeue" in proc.stdout, proc.stderr


def test_submit_dry_run_renders_the_allocation(small_job):
    proc = mpifl("submit", str(small_job), "--nodes", "4", "--ntasks-per-node", "8",
                 "--cpus-per-task", "2", "--time", "04:00:00", "--partition", "compute",
                 "--account", "lab", "--dry-run", "--set", "run.rounds=5")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    script = proc.stdout
    for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=8", "#SBATCH --cpus-per-task=2",
                 "#SBATCH --time=04:00:00", "#SBATCH --partition=compute",
                 "#SBATCH --account=lab", "#SBATCH --signal=TERM@60", "#SBATCH --requeue",
                 "srun --mpi=pmi2 mpifl run", "--resume",
                 f"job={small_job.parent / 'out.job.toml'}"):  # fmt: skip
        assert line in script, line
    assert "--set" not in script  # the snapshot holds the resolved config
    launcher = mpifl("submit", str(small_job), "--launcher", "mpiexec", "--nodes", "2", "--dry-run")
    assert "mpiexec -n 4 mpifl run" in launcher.stdout


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
    proc = mpifl("submit", str(small_job), "--dry-run", "--mem", "4G", "--mem-per-cpu", "2G",
                 "--gres", "gpu:1", "--qos", "high", "--constraint", "intel&ib",
                 "--mail-type", "END,FAIL", "--mail-user", "a@b.org", "--signal", "300",
                 "--sbatch", "exclusive", "--sbatch", "reservation=r1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for line in ("--mem=4G", "--mem-per-cpu=2G", "--gres=gpu:1", "--qos=high",
                 "--constraint=intel&ib", "--mail-type=END,FAIL", "--mail-user=a@b.org",
                 "--signal=TERM@300", "--exclusive\n", "--reservation=r1"):  # fmt: skip
        assert "#SBATCH " + line in proc.stdout, line
    assert "CPU build" in proc.stderr  # --gres gpu:1 with a CPU torch: said, not refused
    for bad, words in ((["--sbatch", "time=5"], "sets this itself (from --time)"),
                       (["--sbatch", "no-requeue"], "--requeue always"),
                       (["--sbatch", "requeue"], "sets this itself (always, so that"),
                       (["--sbatch", "x y"], "not an sbatch option"),
                       (["--mem", "4G;rm"], "--mem"),
                       (["--signal", "0"], "--signal 0")):  # fmt: skip
        refused = mpifl("submit", str(small_job), "--dry-run", *bad)
        assert refused.returncode == 2 and words in refused.stderr, refused.stderr
    site = tmp_path / "site.template"
    site.write_text("#!/bin/bash\n#SITE {name} {nodes} {ntasks_per_node} {cpus_per_task} "
                    "{time} {log} {signal_lead}\n{extra}\n{venv_bin} {workdir}\n"
                    "{launcher} mpifl run {job} --output {output} --resume\n")  # fmt: skip
    own = mpifl("submit", str(small_job), "--dry-run", "--template", str(site))
    assert own.returncode == 0 and own.stdout.startswith("#!/bin/bash\n#SITE small 1 2 1")
    monkeypatch.setenv("MPIFL_SLURM_TEMPLATE", str(site))
    assert mpifl("submit", str(small_job), "--dry-run").stdout.startswith("#!/bin/bash\n#SITE")
    site.write_text("#!/bin/bash\n{launcher} mpifl run {job}\n")
    lacking = mpifl("submit", str(small_job), "--dry-run")
    assert lacking.returncode == 2 and "lacks the placeholders" in lacking.stderr
    assert "{time}" in lacking.stderr and "\n" not in lacking.stderr.strip()


def test_submit_over_an_existing_output(small_job, tmp_path):
    out = small_job.parent / "out.h5"
    run_ok(small_job, out, ranks=0)
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
