"""mpifl: simulate federated learning on a heterogeneous IoT fleet with MPI ranks.

Commands: run (a job, under mpiexec/srun or alone), validate (a job file), fleet (generate,
show, import device fleets), submit (to SLURM), sweep (SLURM job arrays over a grid),
report (tables and figures of result files), pretrain (KOALA's large model).
`mpifl COMMAND --help` for each; docs in the README and docs/."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mpifl import __version__
from mpifl.commands import completion as completion_command
from mpifl.commands import fleet as fleet_commands
from mpifl.commands import hpc as hpc_commands
from mpifl.commands import new as new_command
from mpifl.commands import report as report_command
from mpifl.errors import InputError
from mpifl.progress import STYLES, stamp

if TYPE_CHECKING:
    from mpifl.comm import Comm


RUN_EXAMPLES = """examples:
  mpiexec -n 2 mpifl run jobs/quickstart.toml
  mpiexec -n 4 mpifl run jobs/quickstart.toml --set train.lr=0.1 --output results/lr.h5
  mpifl run jobs/quickstart.toml --output results/lr.h5 --resume   # after SIGTERM, any ranks
  srun --mpi=pmi2 mpifl run job.toml                                 # inside an allocation
"""


def _job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", help="job file (TOML)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set run.rounds=5 (repeatable)",
    )


class HelpParser(argparse.ArgumentParser):
    """An argument parser whose help shows every option's default and keeps the
    description's line breaks; its sub-commands are built the same way."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(**kwargs)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; "(default: X)" after every option that has a default
    (flags, empty and unset values show none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if action.option_strings and default not in (None, "", False, [], argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def parser() -> argparse.ArgumentParser:
    """The argument parser of the `mpifl` command."""
    p = HelpParser(prog="mpifl", description=__doc__)
    p.add_argument("--version", action="version", version=f"mpifl {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run a job (every rank runs this under mpiexec/srun)",
                         epilog=RUN_EXAMPLES)  # fmt: skip
    _job_args(run)
    run.add_argument("--output", help="result file (overrides run.output)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing result file")
    run.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint of run.output"
    )
    run.add_argument("--progress", choices=STYLES, default="auto",
                     help="a bar redrawn in place, or a timestamped line per round; auto: a "
                     "bar when rank 0's output reaches a terminal (through mpiexec too), "
                     "lines in a log file")  # fmt: skip
    val = sub.add_parser("validate", help="check a job file and print the resolved config",
                         epilog="example:\n  mpifl validate jobs/quickstart.toml --set "
                         "train.lr=0.1   # every key, defaults filled in")  # fmt: skip
    _job_args(val)
    fleet_commands.add_parser(sub)
    hpc_commands.add_parsers(sub)
    report_command.add_parser(sub)
    new_command.add_parser(sub)
    completion_command.add_parser(sub)
    pre = sub.add_parser("pretrain", help="pre-train KOALA's large model on the proxy set",
                         epilog="example:\n  mpifl pretrain jobs/study_koala.toml --output "
                         "large.pt --samples 100\n  then: --set "
                         "algorithm.server_init='large.pt'")  # fmt: skip
    _job_args(pre)
    pre.add_argument("--output", required=True, help="state dict to write (.pt)")
    pre.add_argument("--epochs", type=int, default=30, help="epochs over the proxy set")
    pre.add_argument("--lr", type=float, default=0.01, help="SGD learning rate")
    pre.add_argument("--samples", type=int, default=0,
                     help="train on this many of the proxy set's samples (0 = all): a server "
                     "with few labels, so that fine-tuning has room to show")  # fmt: skip
    pre.add_argument("--overwrite", action="store_true")
    return p


def _load(args: argparse.Namespace):  # -> Config
    from mpifl.jobs import load_job

    overrides = list(args.overrides)
    if args.command == "run" and args.output:
        overrides.append(f"run.output={args.output!r}")
    return load_job(args.job, overrides)


def validate_command(args: argparse.Namespace) -> int:
    """Print the resolved config, or the first error (exit 2)."""
    try:
        cfg = _load(args)
    except InputError as exc:
        print(f"mpifl: {exc}", file=sys.stderr)
        return 2
    print(cfg.to_toml(), end="")
    print(f"# {args.job}: valid", file=sys.stderr)
    return 0


def run_command(args: argparse.Namespace) -> int:
    """Run a job on every rank; input errors exit 2 on all ranks before anything is written."""
    from mpifl.comm import world
    from mpifl.engine.failure import abort_job
    from mpifl.results.lock import OutputLock

    comm = world()
    engine, lock, output, start = None, None, None, None
    if comm.rank == 0:  # loading torch, data and model takes seconds: say something first
        ranks = f"{comm.size} rank{'s' if comm.size != 1 else ''}"
        print(f"[{stamp()}] mpifl: starting {args.job} on {ranks}: torch, data, fleet, model",
              flush=True)  # fmt: skip

    def claim() -> None:  # the config, then (rank 0) the output: a busy one is refused at once
        nonlocal lock, output, start
        cfg = _load(args)
        output = Path(cfg.run.output)
        if comm.rank == 0:
            lock = OutputLock.acquire(output)
            from mpifl.engine.startup import decide

            start = decide(output, cfg, args.resume, args.overwrite)

    def set_up() -> None:  # data, fleet, model, method: every other check
        nonlocal engine
        from mpifl.engine.loop import Engine

        engine = Engine(_load(args), comm, output, progress=args.progress)

    try:
        error = _agreed_error(comm, claim)
        if error is None:
            error = _agreed_error(comm, set_up)
        if error is not None:
            if lock is not None:
                lock.release(remove=True)
            if comm.rank == 0:
                print(f"mpifl: {error}", file=sys.stderr)
            return 2
        start = comm.bcast_object(start)
        if comm.rank == 0 and start.note:
            print(start.note, file=sys.stderr, flush=True)
        if start.mode == "complete":
            return 0
        from mpifl.engine import checkpoint

        engine.start(checkpoint.read(Path(start.folder)) if start.mode == "resume" else None)
        return engine.run()
    except (Exception, KeyboardInterrupt) as exc:
        abort_job(comm, exc, engine.recorder if engine is not None else None, output)


def _agreed_error(comm: Comm, step: Callable[[], None]) -> str | None:
    """Run `step` on every rank; the first rank's InputError message, agreed on by all."""
    try:
        step()
        return comm.first_error(None)
    except InputError as exc:
        return comm.first_error(str(exc))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mpifl` console script and `python -m mpifl`."""
    args = parser().parse_args(argv)
    if args.command == "validate":
        return validate_command(args)
    if args.command == "completion":
        print(completion_command.script(parser()), end="")
        return 0
    try:
        if args.command == "fleet":
            return fleet_commands.run(args)
        if args.command in ("submit", "sweep"):
            return hpc_commands.run(args)
        if args.command == "report":
            return report_command.run(args)
        if args.command == "new":
            return new_command.run(args)
        if args.command == "pretrain":
            return pretrain_command(args)
    except InputError as exc:
        print(f"mpifl: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `mpifl report ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return run_command(args)


def pretrain_command(args: argparse.Namespace) -> int:
    """Train the job's KOALA large model on the proxy set (with labels) and save it."""
    from mpifl.data import build_dataset
    from mpifl.engine.assemble import configure_threads
    from mpifl.methods.koala import pretrain_large
    from mpifl.models import spec_from_config
    from mpifl.results.writer import refuse_existing

    cfg = _load(args)
    if cfg.algorithm.name != "koala":
        raise InputError(
            f"pretrain error: {args.job} has algorithm.name = {cfg.algorithm.name!r}; "
            "pre-training is for KOALA's large model (algorithm.name = 'koala')"
        )
    if not (args.epochs >= 1 and 0 < args.lr < float("inf") and args.samples >= 0):
        raise InputError(
            "pretrain error: --epochs must be >= 1, --lr a positive number, --samples >= 0"
        )
    output = Path(args.output)
    refuse_existing(output, args.overwrite)
    configure_threads(cfg.run.threads)
    data = build_dataset(cfg.data, cfg.fleet.clients, cfg.run.seed)
    spec = spec_from_config(cfg.model, data.input_shape, data.n_classes)
    output.parent.mkdir(parents=True, exist_ok=True)
    info = pretrain_large(cfg, data, spec, args.epochs, args.lr, output, args.samples)
    print(
        f"large model ({info['params']} parameters) pre-trained on {info['samples']} samples "
        "of the proxy set: "
        f"loss {info['loss']:.4f}, global test accuracy {info['test_accuracy']:.4f}; "
        f"saved {output}"
    )
    if info["test_accuracy"] < 2.0 / data.n_classes or not info["loss"] < float("inf"):
        print(
            f"mpifl: warning: pre-training did not converge (accuracy "
            f"{info['test_accuracy']:.3f}, chance {1 / data.n_classes:.3f}); try a smaller "
            "--lr or more --epochs before using it as algorithm.server_init",
            file=sys.stderr,
        )
    return 0
