"""Batch script rendering and sweep expansion (no SLURM needed)."""

from __future__ import annotations

from mpifl.hpc.sweep import load_sweep
from tests.conftest import mpifl


def test_submit_dry_run_renders_the_allocation(small_job):
    proc = mpifl("submit", str(small_job), "--nodes", "4", "--ntasks-per-node", "8",
                 "--cpus-per-task", "2", "--time", "04:00:00", "--partition", "compute",
                 "--account", "lab", "--dry-run", "--set", "run.rounds=5")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    script = proc.stdout
    for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=8", "#SBATCH --cpus-per-task=2",
                 "#SBATCH --time=04:00:00", "#SBATCH --partition=compute",
                 "#SBATCH --account=lab", "#SBATCH --signal=TERM@60", "#SBATCH --requeue",
                 "srun --mpi=pmi2 mpifl run", "--set run.rounds=5", "--resume"):  # fmt: skip
        assert line in script, line
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
    assert not (tmp_path / "sw").exists()  # --dry-run prints and writes nothing
    tasks = load_sweep(sweep).tasks
    assert len(tasks) == 4
    assert "lr = 0.1" in tasks[3] and "seed = 1" in tasks[3]
    status = mpifl("sweep", "status", str(sweep))
    assert "missing 4" in status.stdout
    sweep.write_text(f'job = "{small_job}"\n[grid]\n"train.lrr" = [0.1]\n')
    bad = mpifl("sweep", "submit", str(sweep), "--dry-run")
    assert bad.returncode == 2 and "train.lrr" in bad.stderr and "task 0" in bad.stderr
