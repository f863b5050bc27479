"""`mpifl submit` and `mpifl sweep submit | status`."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from mpifl.hpc.slurm import ARRAY_TASK, LAUNCHERS, Resources, render, submit
from mpifl.hpc.sweep import load_sweep, status, write_tasks


def _resources(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--ntasks-per-node", type=int, default=2, help="MPI ranks per node")
    p.add_argument("--cpus-per-task", type=int, default=1, help="torch threads per rank")
    p.add_argument("--time", default="01:00:00", help="time limit, e.g. 02:00:00")
    p.add_argument("--partition", default="")
    p.add_argument("--account", default="")
    p.add_argument("--launcher", choices=tuple(LAUNCHERS), default="srun")
    p.add_argument(
        "--dry-run", action="store_true", help="print the batch script only (write nothing)"
    )


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `submit` and `sweep`."""
    sub_p = sub.add_parser("submit", help="submit a job to SLURM (sbatch)")
    sub_p.add_argument("job")
    sub_p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    _resources(sub_p)
    sweep = sub.add_parser("sweep", help="SLURM job arrays over a grid of configs and seeds")
    verbs = sweep.add_subparsers(dest="sweep_command", required=True)
    run = verbs.add_parser("submit", help="write every task's job file and submit the array")
    run.add_argument("sweep")
    _resources(run)
    stat = verbs.add_parser("status", help="list done / running / failed / missing tasks")
    stat.add_argument("sweep")


def _res(args: argparse.Namespace) -> Resources:
    return Resources(
        args.nodes, args.ntasks_per_node, args.cpus_per_task, args.time,
        args.partition, args.account, args.launcher,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Execute `submit` or `sweep`; InputError propagates (exit 2)."""
    if args.command == "submit":
        return _submit_job(args)
    sweep = load_sweep(args.sweep)
    if args.sweep_command == "status":
        states = status(sweep)
        for i, state in states:
            print(f"task {i:>4}  {state:<12} {sweep.task_output(i)}")
        counts = Counter(s for _, s in states)
        print(
            "  ".join(
                f"{k} {counts[k]}" for k in ("done", "running", "failed", "interrupted", "missing")
            )
        )
        return 0
    task = ARRAY_TASK
    script = render(
        sweep.name,
        str(sweep.task_job(task)),
        str(sweep.task_output(task)),
        str(sweep.folder / "task_%a.log"),
        _res(args),
        array=f"0-{len(sweep.tasks) - 1}",
    )
    if not args.dry_run:
        write_tasks(sweep)
    return _emit(
        script, sweep.folder / f"{sweep.name}.sbatch", args.dry_run, f"{len(sweep.tasks)} tasks"
    )


def _submit_job(args: argparse.Namespace) -> int:
    from mpifl.config import load_config

    cfg = load_config(args.job, args.overrides)
    output = Path(cfg.run.output)
    script = render(
        cfg.run.name,
        str(Path(args.job).resolve()),
        str(output.resolve()),
        str(output.resolve().with_suffix(".slurm-%j.log")),
        _res(args),
        sets=tuple(args.overrides),
    )
    return _emit(script, output.with_suffix(".sbatch"), args.dry_run, f"output {output}")


def _emit(script: str, path: Path, dry_run: bool, what: str) -> int:
    if dry_run:
        print(script, end="")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    job_id = submit(path)
    print(f"submitted job {job_id}: {path} ({what}); logs as #SBATCH --output in the script")
    return 0
