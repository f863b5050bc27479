"""The round loop: plan, train this rank's clients, reduce, server step, evaluate, record."""

from __future__ import annotations

import math
import os
import resource
import shutil
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import TextIO

import numpy as np
import psutil
import torch

from mpifl.comm import Comm
from mpifl.config import Config
from mpifl.data import build_dataset
from mpifl.data.checks import check_fits
from mpifl.engine import checkpoint
from mpifl.engine.accumulate import Accumulators, UpdateRejected
from mpifl.engine.checkpoint import Checkpoint
from mpifl.engine.distill import Distiller
from mpifl.engine.evaluate import EvalResult, Evaluator
from mpifl.engine.plan import RoundPlan, plan_round
from mpifl.engine.signals import INTERRUPTED, StopSignal
from mpifl.engine.state_store import ClientStateStore, state_root
from mpifl.engine.throttle import (
    MemoryProbe,
    is_allocation_failure,
    limit_data_segment,
    make_allocations_visible,
    sleep_until,
)
from mpifl.errors import ConfigError
from mpifl.fleet import build_fleet
from mpifl.fleet.availability import build_availability
from mpifl.methods import ClientTask, MethodContext, method_class
from mpifl.models import check_buildable, spec_from_config
from mpifl.progress import Progress, header, summary
from mpifl.results.schema import (
    EVAL_DTYPE,
    FLEET_DTYPE,
    FORMAT_VERSION,
    RANKS_DTYPE,
    ROUNDS_DTYPE,
    Status,
)
from mpifl.results.status import remove_failure_note
from mpifl.results.writer import ResultsWriter
from mpifl.streams import Purpose, torch_generator
from mpifl.versions import software

STATE_MMAP_THRESHOLD = 2**20  # client states (MBs) are mapped; activations stay on the heap


def configure_threads(threads: int) -> int:
    """Set torch's intra-op threads: the config value, else $SLURM_CPUS_PER_TASK, else 1."""
    n = threads or int(os.environ.get("SLURM_CPUS_PER_TASK") or 1)
    cores = os.cpu_count() or 1
    if n > cores:
        raise ConfigError("run.threads", n, f"must be <= the {cores} cores of this host")
    torch.set_num_threads(n)
    return n


class RoundAbandoned(Exception):
    """SIGTERM arrived during a round's training: the round is dropped, unrecorded."""


class Engine:
    """One rank's view of a run. Build on every rank, then `start` and `run`."""

    def __init__(self, cfg: Config, comm: Comm, output: Path, stream: TextIO = sys.stdout) -> None:
        self.cfg, self.comm, self.output, self.stream = cfg, comm, output, stream
        self.threads = configure_threads(cfg.run.threads)
        seed = cfg.run.seed
        check_fits(cfg.fleet.clients)
        self.data = build_dataset(cfg.data, cfg.fleet.clients, seed)
        check_fits(self.data.n_clients, self.data)
        if cfg.round.cohort > self.data.n_clients:
            raise ConfigError(
                "round.cohort", cfg.round.cohort, f"must be <= the {self.data.n_clients} clients"
            )
        self.fleet = build_fleet(cfg, self.data.n_clients)
        self.availability = build_availability(cfg.emulation, self.fleet, seed)
        emulation = cfg.emulation
        self.throttled = emulation.mode == "throttled"
        self.measure_memory = emulation.memory != "analytic"
        if self.measure_memory:
            make_allocations_visible()
        if emulation.rlimit_data:
            limit_data_segment(emulation.rlimit_data)
        spec = spec_from_config(cfg.model, self.data.input_shape, self.data.n_classes)
        check_buildable(spec)
        bits = cfg.aggregation.frac_bits
        ctx = MethodContext(
            cfg, self.data, self.fleet, spec, Evaluator(comm), Distiller(comm, bits)
        )
        self.method = method_class(cfg.algorithm.name)(ctx)
        self.writer: ResultsWriter | None = None
        self.run_id = ""
        self.stop = StopSignal()
        self.virtual_time = 0.0
        self.first_round = 0
        self.round_rows: list[np.ndarray] = []
        self.by_class = np.zeros((len(self.fleet.class_names), len(Status)), dtype=np.int64)
        self._process = psutil.Process()

    def start(self, resume: Checkpoint | None = None) -> None:
        """Clear what an earlier run of this output left behind (client-state spills, a
        failure note, and for a fresh start its checkpoints), create the client-state store
        (stateful methods) and, on rank 0, the result file (or rebuild it, resuming from
        `resume`). Called on every rank once all have set up; rank 0 holds the output lock."""
        if self.comm.rank == 0:
            shutil.rmtree(state_root(self.output), ignore_errors=True)
            remove_failure_note(self.output)
            if resume is None:
                checkpoint.remove(self.output)
        self.comm.barrier()
        if self.method.stateful:
            folder = state_root(self.output) / f"rank{self.comm.rank}"
            self.method.ctx.state = ClientStateStore(self.cfg.state.cache_bytes, folder)
            if not self.measure_memory:  # (measuring pins a finer threshold already)
                make_allocations_visible(STATE_MMAP_THRESHOLD)  # evicted states leave RSS
        if resume is not None:
            self._resume(resume)
            return
        if self.comm.rank != 0:
            return
        self.run_id = uuid.uuid4().hex
        fleet_rows = np.zeros(len(self.fleet), dtype=FLEET_DTYPE)
        for name in self.fleet.profiles.dtype.names:
            fleet_rows[name] = self.fleet.profiles[name]
        fleet_rows["n_train"], fleet_rows["n_test"] = self.data.n_train, self.data.n_test
        attrs = {
            **software(self.comm),
            "format_version": FORMAT_VERSION,
            "name": self.cfg.run.name,
            "algorithm": self.cfg.algorithm.name,
            "config": self.cfg.to_toml(),
            "seed": self.cfg.run.seed,
            "n_ranks": self.comm.size,
            "threads_per_rank": self.threads,
            "hostname": socket.gethostname(),
            "command": " ".join(sys.argv),
            "start_time": time.time(),
            "run_id": self.run_id,
        }
        self.writer = ResultsWriter(self.output, True, attrs, fleet_rows, self.fleet.class_names)

    def _resume(self, ckpt: Checkpoint) -> None:
        """Restore the method, clock and client state; rank 0 reopens the result file."""
        self.first_round = ckpt.next_round
        self.virtual_time = ckpt.virtual_time
        self.run_id = ckpt.run_id
        self.method.load_state_dict(ckpt.method_state)
        store = self.method.ctx.state
        if store is not None:
            size, rank = self.comm.size, self.comm.rank
            store.import_from(ckpt.folder / "clients", lambda k: k % size == rank)
        if self.comm.rank == 0:
            self.writer, kept = ResultsWriter.reopen(self.output, ckpt.next_round)
            part = kept["participation"]
            np.add.at(self.by_class, (part["device_class"], part["status"]), 1)
            if len(kept["rounds"]):
                self.round_rows.append(kept["rounds"])

    def run(self) -> int:
        """All rounds, then the final status and (rank 0) the summary. Returns the exit
        code: 0 complete, 3 interrupted by SIGTERM with a checkpoint written.

        SIGTERM is honoured between clients: the round under way is abandoned and the last
        completed one checkpointed. Once the last round is done, the run completes (a
        SIGTERM during the final write is ignored: the status must say what happened)."""
        start = time.perf_counter()
        if self.comm.rank == 0:
            attrs = dict(self.writer.attrs) if self.writer is not None else {}
            print(header(attrs, self.cfg.run.rounds, self.first_round, str(self.output)),
                  file=self.stream, flush=True)  # fmt: skip
        progress = Progress(self.cfg.run.rounds, self.first_round, self.stream)
        every = self.cfg.checkpoint.every
        with StopSignal() as self.stop:
            for t in range(self.first_round, self.cfg.run.rounds):
                try:
                    row = self.round(t)
                except RoundAbandoned:
                    self._checkpoint(t)
                    return self._interrupted(t)
                if row is not None:
                    progress.update(row)
                if every and (t + 1) % every == 0 and t != self.cfg.run.rounds - 1:
                    self._checkpoint(t + 1)
            self._finish(time.perf_counter() - start)
        return 0

    def _finish(self, wall: float) -> None:
        """Record the final state and status `complete`, drop the run's checkpoints and
        client-state spills, and print the summary."""
        if self.method.ctx.state is not None:
            self.method.ctx.state.close()
        if self.writer is not None:
            self.writer.close(
                "complete", self.method.state_dict(), end_time=time.time(), wall_seconds=wall
            )
            checkpoint.remove(self.output)
            rounds = np.concatenate(self.round_rows)
            text = summary(
                self.cfg.run.name,
                rounds,
                self.by_class,
                self.fleet.class_names,
                self.comm.size,
                wall,
                str(self.output),
            )
            print(text, file=self.stream, flush=True)

    def _checkpoint(self, next_round: int) -> None:
        start = time.perf_counter()
        folder = checkpoint.save(
            self.comm,
            self.output,
            self.run_id,
            next_round,
            self.virtual_time,
            self.method.state_dict(),
            self.method.ctx.state,
        )
        if self.comm.rank == 0:
            print(
                f"checkpoint {folder} ({time.perf_counter() - start:.2f} s)",
                file=self.stream,
                flush=True,
            )

    def _interrupted(self, next_round: int) -> int:
        if self.method.ctx.state is not None:
            self.method.ctx.state.close()
        if self.writer is not None:
            self.writer.close("interrupted", end_time=time.time(), next_round=next_round + 1)
            print(
                f"mpifl: stopped by SIGTERM; {next_round} rounds done and checkpointed; "
                f"resume with `mpifl run JOB --resume` (output {self.output})",
                file=sys.stderr,
                flush=True,
            )
        return INTERRUPTED

    def plan(self, t: int) -> RoundPlan:
        """Round t's plan (identical on every rank)."""
        cfg = self.cfg
        return plan_round(
            t,
            self.virtual_time,
            cfg.run.seed,
            self.fleet,
            self.data.n_train,
            self.method.workload,
            cfg.round,
            self.availability,
            self.comm.size,
            check_footprint=cfg.emulation.memory != "measured",
            pinned=self.method.stateful,
        )

    def round(self, t: int) -> np.void | None:
        """Run round t; rank 0 returns its `rounds` row."""
        comm = self.comm
        wall_start, comm_start = time.perf_counter(), comm.seconds
        plan = self.plan(t)
        rows = plan.rows[plan.scheduled(comm.rank)]
        train_time = self._train(t, plan, rows)
        self.virtual_time += plan.duration
        evals = self._evaluate(t)
        rank_row = np.zeros(1, dtype=RANKS_DTYPE)
        rank_row[["round", "rank", "clients"]] = (t + 1, comm.rank, len(rows))
        if comm.rank == 0:  # rank 0 also reports the clients no rank trained
            rows = np.concatenate([rows, plan.rows[plan.rows["rank"] < 0]])
        participation = comm.gather_rows(rows)
        rank_row["train_time"] = train_time
        rank_row["comm_time"] = comm.seconds - comm_start
        rank_row["wall_time"] = time.perf_counter() - wall_start
        rank_row["rss"] = self._process.memory_info().rss
        rank_row["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        store = self.method.ctx.state
        if store is not None:
            stats = store.take_stats()
            rank_row["state_hits"], rank_row["state_misses"] = stats.hits, stats.misses
            rank_row["state_bytes_read"] = stats.bytes_read
            rank_row["state_bytes_written"] = stats.bytes_written
            rank_row["state_ram_bytes"] = store.ram_bytes
        rank_rows = comm.gather_rows(rank_row)
        if comm.rank != 0:
            return None
        return self._record(t, plan, participation, rank_rows, evals, wall_start)

    def _train(self, t: int, plan: RoundPlan, rows: np.ndarray) -> float:
        cfg, comm = self.cfg, self.comm
        start = time.perf_counter()
        if comm.rank == cfg.faults.raise_on_rank and t + 1 == cfg.faults.raise_at_round:
            raise RuntimeError(f"injected fault: faults.raise_on_rank = {comm.rank}, round {t + 1}")
        acc = Accumulators(
            self.method.accumulator_sizes(),
            cfg.aggregation.frac_bits,
            scale=1.0 / max(plan.total_samples, 1),
        )
        store = self.method.ctx.state
        if store is not None:
            store.begin()
        for row in rows:
            comm.poll_failures()
            if self.stop.requested:
                break
            client = int(row["client"])
            task = ClientTask(
                client=client,
                round=t,
                train=self.data.client_train(client),
                test=self.data.client_test(client),
                generator=torch_generator(cfg.run.seed, Purpose.TRAIN, t, client),
                row=row,
            )
            self._train_one(task, row, acc)
        if comm.any_flag(self.stop.requested):  # every rank decides alike
            if store is not None:
                store.rollback()
            raise RoundAbandoned(t)
        if store is not None:
            store.commit()
        train_time = time.perf_counter() - start
        self.method.server_step(acc.reduce(comm), plan)
        return train_time

    def _train_one(self, task: ClientTask, row: np.void, acc: Accumulators) -> None:
        """Train one client; record its outcome in `row` (loss, accuracy, status, time)."""
        started = time.perf_counter()
        try:
            if self.measure_memory:
                with MemoryProbe() as probe:
                    result = self.method.train_client(task, acc)
                row["measured_memory"] = probe.growth
            else:
                result = self.method.train_client(task, acc)
        except (MemoryError, RuntimeError) as exc:  # the RLIMIT_DATA backstop
            if not is_allocation_failure(exc):
                raise
            acc.discard()
            result = None
        if result is None or (self.measure_memory and row["measured_memory"] > row["memory"]):
            row["status"], row["bytes_up"] = Status.OOM, 0
            acc.discard()
        else:
            row["loss"], row["accuracy"] = result.loss, result.accuracy
            try:
                acc.commit()
            except UpdateRejected:
                row["status"] = Status.REJECTED
        if self.throttled:
            target = row["compute_time"] * self.cfg.emulation.time_scale
            sleep_until(started, target, lambda: self.stop.requested)
        row["wall_time"] = time.perf_counter() - started

    def _evaluate(self, t: int) -> list[EvalResult]:
        run = self.cfg.run
        if (t + 1) % run.eval_every == 0 or t == run.rounds - 1:
            return self.method.evaluate()
        return []

    def _record(
        self,
        t: int,
        plan: RoundPlan,
        participation: np.ndarray,
        rank_rows: np.ndarray,
        evals: list[EvalResult],
        wall_start: float,
    ) -> np.void:
        assert self.writer is not None
        participation = np.sort(participation, order="client")
        status = participation["status"]
        np.add.at(self.by_class, (participation["device_class"], status), 1)
        row = np.zeros(1, dtype=ROUNDS_DTYPE)[0]
        row["round"], row["duration"], row["virtual_time"] = t + 1, plan.duration, self.virtual_time
        row["sampled"] = len(participation)
        for s in Status:
            row[s.name.lower()] = int((status == s).sum())
        row["bytes_down"] = participation["bytes_down"].sum()
        row["bytes_up"] = participation["bytes_up"].sum()
        ok = status == Status.TRAINED
        samples = participation["samples"][ok].astype(np.float64)
        losses = participation["loss"][ok].astype(np.float64)
        row["train_loss"] = (samples @ losses) / samples.sum() if ok.any() else math.nan
        groups = {e.group: e for e in evals}
        nan = EvalResult("", math.nan, math.nan, 0)
        row["test_loss"] = groups.get("global", nan).loss
        row["test_accuracy"] = groups.get("global", nan).accuracy
        row["client_accuracy"] = groups.get("clients/mean", nan).accuracy
        row["client_accuracy_pooled"] = groups.get("clients/pooled", nan).accuracy
        eval_rows = np.array(
            [(t + 1, e.group.encode(), e.loss, e.accuracy, e.samples) for e in evals],
            dtype=EVAL_DTYPE,
        )
        self.writer.append("participation", participation)
        self.writer.append("eval", eval_rows)
        row["wall_time"] = time.perf_counter() - wall_start
        self.writer.append("rounds", np.array([row]))
        rank_rows["io_time"][0] = self.writer.seconds
        self.writer.seconds = 0.0
        self.writer.append("ranks", rank_rows)
        self.round_rows.append(np.array([row]))
        return row
