"""`mpifl submit` and `mpifl sweep submit | status | run`."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections import Counter
from pathlib import Path

from mpifl.errors import InputError
from mpifl.files import write_text
from mpifl.hpc.local import run_locally
from mpifl.hpc.slurm import (
    ARRAY_TASK,
    LAUNCHERS,
    OPTIONAL,
    TEMPLATE_ENV,
    Resources,
    render,
    require_sbatch,
    submit,
)
from mpifl.hpc.sweep import (
    Sweep,
    array_spec,
    blocked,
    load_sweep,
    record_submission,
    status,
    submissions,
    unfinished,
    write_tasks,
)


def _resources(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=1, help="nodes")
    p.add_argument("--ntasks-per-node", type=int, default=2, help="MPI ranks per node")
    p.add_argument("--cpus-per-task", type=int, default=1, help="torch threads per rank")
    p.add_argument("--time", default="01:00:00", help="time limit: minutes, HH:MM:SS or D-HH:MM:SS")
    for key in OPTIONAL:
        p.add_argument(
            "--" + key.replace("_", "-"), default="", help="#SBATCH option (left out if not given)"
        )
    p.add_argument(
        "--signal",
        type=int,
        default=60,
        dest="signal_lead",
        metavar="SECONDS",
        help="SIGTERM this long before the time limit, for a checkpoint",
    )
    p.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="OPTION[=VALUE]",
        help="any other #SBATCH option, e.g. --sbatch exclusive (repeatable)",
    )
    p.add_argument("--template", default="",
                   help=f"site batch-script template (default: ${TEMPLATE_ENV}, else "
                   "launch/slurm/job.sbatch.template)")  # fmt: skip
    p.add_argument("--launcher", choices=LAUNCHERS, default="srun", help="how ranks are started")
    p.add_argument("--srun-mpi", default="pmi2", metavar="TYPE",
                   help="srun --mpi=TYPE: pmi2 suits the mpich wheel; pmix or cray_shasta "
                   "for an mpi4py built on the site's MPI; 'default': the site's own")  # fmt: skip
    p.add_argument(
        "--dry-run", action="store_true", help="print the batch script only (write nothing)"
    )


SUBMIT_EXAMPLES = """examples:
  mpifl submit jobs/quickstart.toml --partition cpu --ntasks-per-node 4 --time 02:00:00
  mpifl submit job.toml --dry-run                      # show the batch script only
  mpifl submit job.toml --resume                       # continue an interrupted run
"""
SWEEP_EXAMPLES = """examples:
  mpifl sweep submit sweeps/lr.toml --partition cpu --throttle 8
  mpifl sweep status sweeps/lr.toml
  mpifl sweep submit sweeps/lr.toml        # again: only the tasks failed or killed
  mpifl sweep run sweeps/lr.toml --ranks 2 # here, without SLURM, one after another
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `submit` and `sweep`."""
    sub_p = sub.add_parser("submit", help="submit a job to SLURM (sbatch)",
                           epilog=SUBMIT_EXAMPLES)  # fmt: skip
    sub_p.add_argument("job", help="job file (TOML); a snapshot of it is what runs")
    sub_p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key (repeatable)")  # fmt: skip
    again = sub_p.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="an unfinished run.output exists: continue it from its checkpoint",
    )
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="run.output exists: delete it (and its checkpoints) now, run again",
    )
    _resources(sub_p)
    sweep = sub.add_parser("sweep", help="SLURM job arrays over a grid of configs and seeds",
                           epilog=SWEEP_EXAMPLES)  # fmt: skip
    verbs = sweep.add_subparsers(dest="sweep_command", required=True)
    run = verbs.add_parser(
        "submit", help="write every task's job file and submit the tasks not done, queued or "
        "running as one array (a resubmission runs only what is left)"
    )  # fmt: skip
    run.add_argument("sweep")
    run.add_argument(
        "--throttle",
        type=int,
        default=0,
        metavar="N",
        help="at most N array tasks at once (#SBATCH --array=...%%N; 0: no limit)",
    )
    _resources(run)
    stat = verbs.add_parser(
        "status", help="each task's state (done, running, failed, interrupted, killed, queued, "
        "died before writing, not submitted: from its file and, where SLURM is, squeue and "
        "sacct) and grid values"
    )  # fmt: skip
    stat.add_argument("sweep")
    local = verbs.add_parser(
        "run", help="run the tasks not done here, one after another, without SLURM (each "
        "resumes from its checkpoint; its output goes to <folder>/task_<i>.local.log)"
    )  # fmt: skip
    local.add_argument("sweep")
    local.add_argument("--ranks", type=int, default=1,
                       help="MPI ranks per task (mpiexec -n; 1 runs without mpiexec)")  # fmt: skip


def _installed_torch() -> str:
    """The installed torch's version ("" if none), without importing it."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return ""


def _res(args: argparse.Namespace) -> Resources:
    optional = {key: getattr(args, key) for key in OPTIONAL}
    torch = _installed_torch()
    if "gpu" in args.gres and torch.endswith("+cpu"):
        print(f"mpifl: warning: --gres {args.gres} asks for GPUs, but this torch is a CPU "
              f"build ({torch}): mpifl would not use them", file=sys.stderr)  # fmt: skip
    return Resources(
        args.nodes, args.ntasks_per_node, args.cpus_per_task, args.time,
        launcher=args.launcher, srun_mpi=args.srun_mpi, signal_lead=args.signal_lead,
        sbatch_options=tuple(args.sbatch), template=args.template, **optional,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Execute `submit` or `sweep`; InputError propagates (exit 2)."""
    if args.command == "submit":
        return _submit_job(args)
    sweep = load_sweep(args.sweep)
    if args.sweep_command == "status":
        return _sweep_status(sweep)
    if args.sweep_command == "run":
        return run_locally(sweep, args.ranks)
    if args.throttle < 0:
        raise InputError(f"submit error: --throttle {args.throttle}: must be >= 0")
    states = status(sweep)
    tasks = unfinished(states)
    for line in blocked(sweep, states):
        print(line, file=sys.stderr)
    left = len(sweep.tasks) - len(tasks)
    if not tasks:
        print(f"mpifl: no task of {sweep.name} is left to submit; nothing submitted "
              "(`mpifl sweep status` shows them)")  # fmt: skip
        return 0
    task = ARRAY_TASK
    script = render(
        sweep.name,
        str(sweep.task_job(task)),
        str(sweep.task_output(task)),
        str(sweep.folder / "task_%A_%a.log"),  # a resubmission keeps the earlier logs
        _res(args),
        array=array_spec(tasks) + (f"%{args.throttle}" if args.throttle else ""),
    )
    if not args.dry_run:
        require_sbatch()
        write_tasks(sweep)
    what = f"{len(tasks)} tasks" + (f" ({left} left out: see sweep status)" if left else "")
    job_id = _emit(script, sweep.folder / f"{sweep.name}.sbatch", args.dry_run, what)
    if job_id:
        record_submission(sweep, job_id, tasks)
    return 0


def _sweep_status(sweep: Sweep) -> int:
    """Print the submissions and each task's state and grid values; 0."""
    states = status(sweep)
    for record in submissions(sweep):
        print(f"submitted as job {record['job_id']} at {record.get('submitted', '?')}: "
              f"tasks {array_spec(record['tasks'])}")  # fmt: skip
    for i, state in states:
        print(f"task {i:>4}  {state:<13} {sweep.describe(i)}  {sweep.task_output(i)}")
    counts = Counter(s for _, s in states)
    print("  ".join(f"{k} {n}" for k, n in counts.items()))
    return 0


def _submit_job(args: argparse.Namespace) -> int:
    """Snapshot the resolved job beside run.output and submit a script that runs it; an
    existing output is refused unless --resume or --overwrite (a complete one: nothing to
    do, exit 0)."""
    from mpifl.engine.startup import replaced
    from mpifl.jobs import load_job

    cfg = load_job(args.job, args.overrides)
    output = Path(cfg.run.output).resolve()
    snapshot = snapshot_path(output)
    script = render(
        cfg.run.name,
        str(snapshot),
        str(output),
        str(output.with_suffix(".slurm-%j.log")),
        _res(args),
    )
    if args.dry_run:  # shows the script whatever the output's state
        _emit(script, output.with_suffix(".sbatch"), True, "")
        return 0
    if output.exists() and not _may_submit_over(output, args):
        return 0
    require_sbatch()
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    write_text(snapshot, cfg.to_toml(), "the job snapshot")
    if not (args.overwrite and output.exists()):
        _emit(script, output.with_suffix(".sbatch"), False, f"job {snapshot}")
        return 0
    with replaced(output):  # the old run is deleted only once sbatch has taken the new one
        _emit(script, output.with_suffix(".sbatch"), False, f"job {snapshot}, replacing")
    return 0


def snapshot_path(output: Path) -> Path:
    """The resolved job a submitted batch script runs: RUN.job.toml beside RUN.h5."""
    return output.with_suffix(".job.toml")


def _may_submit_over(output: Path, args: argparse.Namespace) -> bool:
    """False (saying so) when the existing output is complete and not to be overwritten;
    InputError when it is in use, unreadable or unfinished without --resume/--overwrite."""
    from mpifl.results.lock import OutputLock
    from mpifl.results.status import read_status

    OutputLock.acquire(output).release()  # InputError if a run is writing it now
    try:
        state, _ = read_status(output)
    except OSError:
        state = "unreadable"
    if args.overwrite:
        return True
    if state == "complete":
        print(f"mpifl: {output} is already complete; nothing submitted (--overwrite runs it "
              "again)")  # fmt: skip
        return False
    if state == "unreadable" or not args.resume:
        raise InputError(
            f"submit error: {output} exists ({state}); pass --resume to continue it from its "
            "last checkpoint, or --overwrite to delete it and start again"
        )
    return True


def _emit(script: str, path: Path, dry_run: bool, what: str) -> str:
    """Print the script (dry run, returns "") or write and sbatch it (returns the job id);
    callers check for sbatch before they write anything."""
    if dry_run:
        print(script, end="")
        return ""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, script, "the batch script")
    job_id = submit(path)
    print(f"submitted job {job_id}: {path} ({what}); logs as #SBATCH --output in the script")
    return job_id
