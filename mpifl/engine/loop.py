"""The driver: a run's lifecycle (start, resume, checkpoint, finish) and its round loop
(plan, train this rank's clients, reduce, server step, evaluate, record, callbacks)."""

from __future__ import annotations

import shlex
import shutil
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import TextIO

import numpy as np

from mpifl.callbacks import CallbackList, RunInfo, build_callbacks
from mpifl.comm import Comm
from mpifl.config import Config
from mpifl.engine import checkpoint
from mpifl.engine.agreement import check_server_state
from mpifl.engine.assemble import assemble
from mpifl.engine.asynchronous import PendingUpdates, build_schedule
from mpifl.engine.checkpoint import Checkpoint
from mpifl.engine.emulation import ClientRunner
from mpifl.engine.selection import build_selector, checked_selection, replay
from mpifl.engine.signals import INTERRUPTED, StopSignal
from mpifl.engine.telemetry import RankTelemetry
from mpifl.kit import Accumulators, EvalResult, Metrics, RoundPlan
from mpifl.kit.state_store import state_root
from mpifl.progress import Progress, header, resume_command, stamp
from mpifl.results.recorder import Recorder
from mpifl.results.schema import FLEET_DTYPE, FORMAT_VERSION
from mpifl.results.status import remove_failure_note
from mpifl.versions import software


class RoundAbandoned(Exception):
    """SIGTERM arrived during a round's training: the round is dropped, unrecorded."""


class Engine:
    """One rank's view of a run. Build on every rank, then `start` and `run`."""

    def __init__(
        self,
        cfg: Config,
        comm: Comm,
        output: Path,
        stream: TextIO = sys.stdout,
        progress: str = "auto",
    ) -> None:
        self.cfg, self.comm, self.output, self.stream = cfg, comm, output, stream
        self.progress_style = progress  # progress.STYLES
        parts = assemble(cfg, comm, output)
        self.threads, self.data, self.fleet = parts.threads, parts.data, parts.fleet
        self.method, self.store, self.planner = parts.method, parts.store, parts.planner
        self.energy = self.planner.energy
        self.schedule = build_schedule(cfg, self.method, self.planner)
        self.pending = None
        if self.schedule is not None:  # asynchronous: sums held until their step
            sizes, bits = self.method.accumulator_sizes(), cfg.aggregation.frac_bits
            self.pending = PendingUpdates(sizes, bits, self.schedule)
        self.bar: Progress | None = None  # rank 0's progress, once the rounds start
        self.stop = StopSignal(self._bar_mid_line if comm.rank == 0 else None)
        self.clients = ClientRunner(cfg, self.method, self.data, comm, self.stop)
        self.selector = build_selector(cfg, self.data.n_train, self.energy.batteries)
        self.telemetry = RankTelemetry(comm.rank, self.store)
        self.callbacks = build_callbacks(cfg, output) if comm.rank == 0 else CallbackList([])
        self.watching = False  # whether the ranks agree on a callback's stop every round
        self.recorder: Recorder | None = None  # rank 0
        self.run_id = ""
        self.virtual_time = 0.0
        self.first_round = 0

    def start(self, resume: Checkpoint | None = None) -> None:
        """Clear what an earlier run of this output left behind (client-state spills, a
        failure note, and for a fresh start its checkpoints) and, on rank 0, create the
        result file (or rebuild it, resuming from `resume`). Called on every rank once all
        have set up; rank 0 holds the output lock."""
        if self.comm.rank == 0:
            shutil.rmtree(state_root(self.output), ignore_errors=True)
            remove_failure_note(self.output)
            if resume is None:
                checkpoint.remove(self.output)
        self.comm.barrier()
        self.watching = self.comm.bcast_object(bool(self.callbacks))
        if resume is not None:
            self._resume(resume)
        elif self.comm.rank == 0:
            self.run_id = uuid.uuid4().hex
            self.recorder = Recorder.create(
                self.output, self._attrs(), self._fleet_rows(), self.fleet.class_names,
                self.method.client_metrics,
            )  # fmt: skip

    def _attrs(self) -> dict[str, object]:
        """The result file's root attributes at the start."""
        cfg = self.cfg
        return {
            "format_version": FORMAT_VERSION,
            "name": cfg.run.name,
            "algorithm": cfg.algorithm.name,
            "config": cfg.to_toml(),
            "seed": cfg.run.seed,
            "threads_per_rank": self.threads,
            **self._part_attrs(),
            "run_id": self.run_id,
        }

    def _part_attrs(self) -> dict[str, object]:
        """The attributes of this part of a run (all of it, unless it resumes): software,
        ranks, host, command line, start time."""
        return {
            **software(self.comm),
            "n_ranks": self.comm.size,
            "hostname": socket.gethostname(),
            "command": shlex.join(sys.argv),
            "start_time": time.time(),
        }

    def _fleet_rows(self) -> np.ndarray:
        rows = np.zeros(len(self.fleet), dtype=FLEET_DTYPE)
        for name in self.fleet.profiles.dtype.names:
            rows[name] = self.fleet.profiles[name]
        rows["n_train"], rows["n_test"] = self.data.n_train, self.data.n_test
        return rows

    def _resume(self, ckpt: Checkpoint) -> None:
        """Restore the method, clock and client state; rank 0 reopens the result file."""
        self.first_round = ckpt.next_round
        self.virtual_time = ckpt.virtual_time
        self.run_id = ckpt.run_id
        self.method.load_state_dict(ckpt.method_state)
        if self.schedule is None and self.energy.batteries is not None:
            self.energy.batteries.load_state_dict(ckpt.method_state)
        if self.pending is not None:
            self.pending.restore(ckpt.method_state, self.comm.rank)
        if self.store is not None:
            size, rank = self.comm.size, self.comm.rank
            self.store.import_from(ckpt.folder / "clients", lambda k: k % size == rank)
        if self.comm.rank == 0:
            self.recorder = Recorder.resume(
                self.output, ckpt.next_round, self._part_attrs(), self.fleet.class_names,
                self.method.client_metrics,
            )  # fmt: skip
            if self.selector.uses_history:
                replay(self.selector, self.recorder.kept_participation, ckpt.next_round,
                       self.planner.sample_size)  # fmt: skip

    def run(self) -> int:
        """All rounds, then the final status and (rank 0) the summary. Returns the exit
        code: 0 complete, 3 interrupted by SIGTERM with a checkpoint written.

        SIGTERM is honoured between clients: the round under way is abandoned and the last
        completed one checkpointed. Once the last round is done, or a callback stopped the
        run, it completes (a SIGTERM during the final write is ignored: the status must say
        what happened)."""
        start = time.perf_counter()
        rounds = self.cfg.run.rounds
        if self.recorder is not None:
            print(header(self.recorder.attrs, rounds, self.first_round, str(self.output)),
                  file=self.stream, flush=True)  # fmt: skip
            self.callbacks.on_train_begin(RunInfo(self.cfg, self.output, self.recorder.history))
        progress = self.bar = Progress(rounds, self.first_round, self.stream, self.progress_style)
        every = self.cfg.checkpoint.every
        with self.stop:
            for t in range(self.first_round, rounds):
                try:
                    row = self.round(t)
                except RoundAbandoned:
                    self._checkpoint(t)
                    return self._interrupted(t)
                if row is not None:
                    progress.update(row)
                if self._stopped_after(t):
                    break
                if every and (t + 1) % every == 0 and t != rounds - 1:
                    self._checkpoint(t + 1)
            progress.end()
            self._finish(time.perf_counter() - start)
        return 0

    def _bar_mid_line(self) -> bool:
        """Whether a progress bar is drawn on the current line."""
        return self.bar is not None and self.bar.mid_line

    def _stopped_after(self, t: int) -> bool:
        """Whether a callback stops the run after round t: rank 0 asks them, every rank
        agrees. A stop after the last round changes nothing and is not recorded."""
        if not self.watching:
            return False
        reason = ""
        if self.recorder is not None:
            reason = self.callbacks.after_round(t + 1, self.recorder.latest)
        if not self.comm.any_flag(bool(reason)) or t == self.cfg.run.rounds - 1:
            return False
        if self.recorder is not None:
            self.recorder.stopped = (t + 1, reason)
        return True

    def _finish(self, wall: float) -> None:
        """Record the final state and status `complete`, drop the run's checkpoints and
        client-state spills, and print the summary."""
        if self.store is not None:
            self.store.close()
        if self.recorder is not None:
            self.recorder.complete(self.method.state_dict(), wall)
            checkpoint.remove(self.output)
            self.callbacks.on_train_end("complete")
            text = self.recorder.summary(self.cfg.run.name, self.comm.size, wall)
            print(text, file=self.stream, flush=True)

    def _checkpoint(self, next_round: int) -> None:
        start = time.perf_counter()
        state = self.method.state_dict()
        if self.pending is not None:  # the updates in flight, summed over ranks
            state.update(self.pending.export(self.comm, next_round))
        elif self.energy.batteries is not None:  # (asynchronous: the schedule has them)
            state.update(self.energy.batteries.state_dict())
        folder = checkpoint.save(
            self.comm, self.output, self.run_id, next_round, self.virtual_time, state, self.store
        )
        if self.comm.rank == 0:
            print(
                f"[{stamp()}] checkpoint {folder} ({time.perf_counter() - start:.2f} s)",
                file=self.stream,
                flush=True,
            )

    def _interrupted(self, next_round: int) -> int:
        if self.store is not None:
            self.store.close()
        if self.recorder is not None:
            self.recorder.interrupted(next_round)
            self.callbacks.on_train_end("interrupted")
            print(
                f"mpifl: stopped by SIGTERM; {next_round} rounds done and checkpointed in "
                f"{self.output}; resume (on any rank count) with: {resume_command(sys.argv)}",
                file=sys.stderr,
                flush=True,
            )
        return INTERRUPTED

    def plan(self, t: int) -> RoundPlan:
        """Round t's plan (identical on every rank)."""
        if self.schedule is not None:
            return self.schedule.plan(t)
        n = self.planner.sample_size
        if self.selector.uses_history:  # rank 0 holds the history: it chooses for all
            ids = self.comm.bcast_object(
                checked_selection(self.selector, t, n) if self.comm.rank == 0 else None
            )
        else:
            ids = checked_selection(self.selector, t, n)
        return self.planner.plan(t, self.virtual_time, self.method.workload, ids)

    def round(self, t: int) -> np.void | None:
        """Run round t; rank 0 returns its `rounds` row."""
        comm = self.comm
        wall_start, comm_start = time.perf_counter(), comm.seconds
        plan = self.plan(t)
        rows = plan.rows[plan.scheduled(comm.rank)]
        train_time, acc = self._train(t, plan, rows)
        metrics: Metrics = self.method.server_step(acc.reduce(comm), plan)
        check_server_state(comm, self.method, self.cfg.algorithm.name, t)
        t0 = self.virtual_time
        self.virtual_time = t0 + max(plan.duration, self.cfg.round.interval)
        if self.schedule is None:
            energy = self.energy.end_round(t, t0, self.virtual_time, plan.rows)
        else:
            energy = self.schedule.energy[t]
        evals = self._evaluate(t)
        trained_here = len(rows)
        if comm.rank == 0:  # rank 0 also reports the clients no rank trained
            rows = np.concatenate([rows, plan.rows[plan.rows["rank"] < 0]])
        participation = comm.gather_rows(rows)
        client_metrics = None  # the trained clients' declared figures, if the method has any
        if self.method.client_metrics:
            client_metrics = comm.gather_rows(self.clients.client_metrics())
        rank_row = self.telemetry.row(
            t, trained_here, train_time, comm.seconds - comm_start, time.perf_counter() - wall_start
        )
        rank_rows = comm.gather_rows(rank_row)
        if self.recorder is None:
            return None
        if self.schedule is None and self.energy.batteries is not None:
            participation["charge"] = self.energy.batteries.charge_of(participation["client"])
        if self.selector.uses_history:
            self.selector.observe(participation)
        return self.recorder.record_round(
            t, plan.duration, t0 + plan.duration, participation, rank_rows, evals, metrics,
            wall_start, client_metrics, energy,
        )  # fmt: skip

    def _train(self, t: int, plan: RoundPlan, rows: np.ndarray) -> tuple[float, Accumulators]:
        """Train this rank's clients (their outcomes land in `rows`); returns the wall time
        it took less its collectives' (waiting for the other ranks to agree is comm_time,
        not training) and the accumulators holding the contributions that server step t
        applies (asynchronous: those of every round's updates that arrive in it). Raises
        RoundAbandoned, with the client states rolled back, if any rank was asked to
        stop."""
        cfg, comm = self.cfg, self.comm
        start, in_collectives = time.perf_counter(), comm.seconds
        if comm.rank == cfg.faults.raise_on_rank and t + 1 == cfg.faults.raise_at_round:
            raise RuntimeError(f"injected fault: faults.raise_on_rank = {comm.rank}, round {t + 1}")
        if self.store is not None:
            self.store.begin()
        if self.pending is None:
            acc = Accumulators(
                self.method.accumulator_sizes(),
                cfg.aggregation.frac_bits,
                scale=1.0 / max(plan.total_samples, 1),
            )
            self.clients.run(t, rows, acc)
        else:
            self.clients.run(t, rows, self.pending, route=self.pending.route)
        if comm.any_flag(self.stop.requested):  # every rank decides alike
            if self.store is not None:
                self.store.rollback()
            if self.pending is not None:
                self.pending.abandon_round()
            raise RoundAbandoned(t)
        if self.store is not None:
            self.store.commit()
        if self.pending is not None:
            self.pending.end_round()
            acc = self.pending.take(t)
        return time.perf_counter() - start - (comm.seconds - in_collectives), acc

    def _evaluate(self, t: int) -> list[EvalResult]:
        run = self.cfg.run
        if (t + 1) % run.eval_every == 0 or t == run.rounds - 1:
            return self.method.evaluate()
        return []
