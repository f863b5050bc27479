"""Client selection: which clients a synchronous round samples (`[selection]`).

`uniform` (the default) samples `n` clients uniformly without replacement, keyed by
(seed, round): every rank computes it alone, as mpifl always has. The others use only
what a real server knows of past rounds, each client's last mean training loss, how
long its last round took and when it last trained (`ClientHistory`), which rank 0 keeps
from the recorded participation rows; rank 0 selects and broadcasts the ids (the
engine), so every rank plans with the same ones. On a resume the history is replayed
from the result file. A strategy of one's own is a plugin:
`selection.name = "package.module:Class"`, a subclass of `Selector`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from functools import cached_property
from typing import ClassVar

import numpy as np

from mpifl.config import Config
from mpifl.engine.plan import sample_cohort
from mpifl.errors import ConfigError, MethodError
from mpifl.fleet.energy import Batteries
from mpifl.plugins import is_plugin, load_plugin
from mpifl.results.schema import Status, contributes
from mpifl.streams import Purpose, generator


class ClientHistory:
    """What the server learnt of each client from the rounds so far: the last round (from
    1) its update arrived (0: never), its mean training loss then, and its duration then
    (compute + communication; a late or partial client's is the deadline, all the server
    knows), and how many updates it sent."""

    def __init__(self, n_clients: int, deadline: float) -> None:
        self.deadline = deadline
        self.last_round = np.zeros(n_clients, dtype=np.int64)
        self.loss = np.full(n_clients, np.nan)
        self.duration = np.full(n_clients, np.nan)
        self.count = np.zeros(n_clients, dtype=np.int64)

    def observe(self, rows: np.ndarray) -> None:
        """Learn from one round's participation rows."""
        late = rows["client"][rows["status"] == Status.LATE]
        self.duration[late] = self.deadline
        ok = rows[contributes(rows["status"]) & np.isfinite(rows["loss"])]
        ids = ok["client"]
        self.last_round[ids], self.loss[ids] = ok["round"], ok["loss"]
        cut = ok["status"] == Status.PARTIAL  # it stopped at the deadline: no faster
        self.duration[ids] = np.where(cut, self.deadline, ok["compute_time"] + ok["comm_time"])
        self.count[ids] += 1


class Selector(ABC):
    """A strategy for choosing a synchronous round's sampled clients. `uses_history`:
    whether it reads the history (else every rank selects alone). `batteries`: the
    fleet's charge now (every rank holds the same; None without batteries)."""

    uses_history: ClassVar[bool] = True

    def __init__(self, cfg: Config, n_train: np.ndarray) -> None:
        self.seed, self.settings, self.n_train = cfg.run.seed, cfg.selection, n_train
        self.deadline = cfg.round.deadline
        self.batteries: Batteries | None = None

    @cached_property
    def history(self) -> ClientHistory:
        """What the server knows of past rounds; built at first use (on rank 0, and
        only by a strategy that reads it: a fleet's worth of arrays)."""
        return ClientHistory(len(self.n_train), self.deadline)

    @abstractmethod
    def select(self, round_: int, n: int) -> np.ndarray:
        """`n` distinct client ids for round `round_` (from 0), sorted."""

    def observe(self, rows: np.ndarray) -> None:
        """Learn from round's participation rows (after it)."""
        self.history.observe(rows)

    def candidate_count(self, n: int) -> int:
        """d = ceil(`candidates` x n), at least n, at most the fleet: how many clients a
        power-of-d strategy draws to keep n."""
        return min(len(self.n_train), max(n, math.ceil(self.settings.candidates * n)))

    def rng(self, round_: int) -> np.random.Generator:
        """The round's random stream for selection."""
        return generator(self.seed, Purpose.SELECT, round_)


class Uniform(Selector):
    """n clients uniformly at random without replacement."""

    uses_history = False

    def select(self, round_: int, n: int) -> np.ndarray:
        return sample_cohort(self.seed, round_, len(self.n_train), n)


class PowerOfChoice(Selector):
    """Power-of-choice (Cho et al., AISTATS 2022), its communication-free variant rpow-d:
    d = ceil(candidates x n) candidates drawn without replacement with probability
    proportional to their data size; the n with the highest last training loss are kept
    (never trained: first; ties: in draw order)."""

    def select(self, round_: int, n: int) -> np.ndarray:
        clients, d = len(self.n_train), self.candidate_count(n)
        size = np.maximum(self.n_train, 1)  # a client without data counts as one sample
        weights = size / size.sum()
        drawn = self.rng(round_).choice(clients, size=d, replace=False, p=weights)
        loss = np.nan_to_num(self.history.loss[drawn], nan=np.inf)
        return np.sort(drawn[np.argsort(-loss, kind="stable")[:n]])


class EnergyAware(Selector):
    """Ours: d = ceil(candidates x n) candidates drawn uniformly without replacement;
    the n with the most charge to spare are kept (charge above energy.threshold, as a
    share of capacity; mains powered: a full battery's; declining: last; ties: in draw
    order). Without battery-powered devices it is uniform sampling."""

    uses_history = False

    def select(self, round_: int, n: int) -> np.ndarray:
        drawn = self.rng(round_).choice(len(self.n_train), size=self.candidate_count(n),
                                        replace=False)  # fmt: skip
        if self.batteries is None:
            return np.sort(drawn[:n])
        spare = self.batteries.spare(drawn)
        return np.sort(drawn[np.argsort(-spare, kind="stable")[:n]])


class Oort(Selector):
    """Oort's participant selection (Lai et al., OSDI 2021), as its official code does it:
    an exploited share 1 - epsilon of the n by utility, the rest explored among clients
    never trained, any shortfall filled uniformly (docs/algorithms.md section 13)."""

    def __init__(self, cfg: Config, n_train: np.ndarray) -> None:
        super().__init__(cfg, n_train)
        self.percentile = float(self.settings.preferred_percentile)
        self.exploited = np.zeros(0, dtype=np.int64)
        self.exploit_utility: list[float] = []

    def _statistical_utility(self) -> np.ndarray:
        """|B_i| x its last mean training loss (NaN if never trained)."""
        return self.n_train * self.history.loss

    def select(self, round_: int, n: int) -> np.ndarray:
        s, h = self.settings, self.history
        now = round_ + 1
        rng = self.rng(round_)
        explored, unexplored = np.flatnonzero(h.count > 0), np.flatnonzero(h.count == 0)
        epsilon = max(s.exploration * s.exploration_decay**now, s.exploration_min)
        if not len(unexplored):  # nothing left to explore: exploit only
            epsilon = 0.0
        known = h.duration[np.isfinite(h.duration)]
        preferred = math.inf
        if self.percentile < 100 and len(known):
            ordered = np.sort(known)
            preferred = ordered[min(int(len(ordered) * self.percentile / 100), len(ordered) - 1)]
        picked = np.zeros(0, dtype=np.int64)
        take = min(int(n * (1 - epsilon)), len(explored))
        if take:
            reward = self._statistical_utility()[explored]
            clip = np.sort(reward)[min(int(len(reward) * s.clip), len(reward) - 1)]
            low = reward.min() * 0.999
            score = (np.minimum(reward, clip) - low) / max(reward.max() - low, 1e-4)
            score += np.sqrt(0.1 * math.log(now) / h.last_round[explored])
            score *= self._penalty(h.duration[explored], preferred)
            order = np.argsort(-score, kind="stable")
            cutoff = score[order[min(take, len(order) - 1)]] * s.cutoff
            pool = order[score[order] >= cutoff]
            p = score[pool] / max(score[pool].sum(), 1e-4)
            picked = explored[rng.choice(pool, size=min(take, len(pool)), replace=False, p=p)]
        self.exploited = picked
        room = min(len(unexplored), n - len(picked))
        if room:
            size = np.maximum(self.n_train[unexplored], 1) * self._penalty(
                h.duration[unexplored], preferred
            )
            order = np.argsort(-size, kind="stable")[: max(room, int(s.sample_window * room))]
            pool = unexplored[order]
            p = size[order] / size[order].sum()
            picked = np.concatenate([picked, rng.choice(pool, size=room, replace=False, p=p)])
        rest = np.setdiff1d(np.arange(len(self.n_train)), picked)
        fill = rng.choice(rest, size=n - len(picked), replace=False)
        return np.sort(np.concatenate([picked, fill]))

    def _penalty(self, duration: np.ndarray, preferred: float) -> np.ndarray:
        """The system utility factor: (T / t)^alpha for a known duration t over the
        preferred T, else 1."""
        slow = np.nan_to_num(duration, nan=0.0) > preferred
        factor = np.ones(len(duration))
        factor[slow] = (preferred / np.maximum(duration[slow], 1e-4)) ** self.settings.penalty
        return factor

    def observe(self, rows: np.ndarray) -> None:
        """The history, and the pacer: every `pacer_step` rounds, if the exploited
        clients' utility of the last `pacer_step` rounds is within 10% of the step
        before's, allow slower clients (percentile + pacer_delta); if it changed
        five-fold, fewer."""
        super().observe(rows)
        back = np.isin(self.exploited, rows["client"][contributes(rows["status"])])
        utility = self._statistical_utility()[self.exploited[back]]
        self.exploit_utility.append(float(utility.sum() / (len(utility) + 1e-4)))
        s, done = self.settings, len(self.exploit_utility)
        if done >= 2 * s.pacer_step and done % s.pacer_step == 0:
            before = sum(self.exploit_utility[-2 * s.pacer_step : -s.pacer_step])
            now = sum(self.exploit_utility[-s.pacer_step :])
            if abs(now - before) <= 0.1 * before:
                self.percentile = min(100.0, self.percentile + s.pacer_delta)
            elif abs(now - before) >= 5 * before:
                self.percentile = max(s.pacer_delta, self.percentile - s.pacer_delta)


def checked_selection(selector: Selector, round_: int, n: int) -> np.ndarray:
    """The selector's ids for round `round_`, checked: n distinct ids of clients, sorted
    (a plugin's too); a MethodError naming the selector otherwise."""
    ids = np.asarray(selector.select(round_, n))
    clients = len(selector.n_train)
    if not (
        ids.shape == (n,)
        and np.issubdtype(ids.dtype, np.integer)
        and np.all(np.diff(ids) > 0)
        and (n == 0 or (ids[0] >= 0 and ids[-1] < clients))
    ):
        raise MethodError(
            f"selection {type(selector).__name__}: select({round_}, {n}) must return {n} "
            f"distinct client ids in [0, {clients}), sorted; got {ids!r:.80}"
        )
    return ids


def replay(selector: Selector, participation: np.ndarray, rounds: int, n: int) -> None:
    """Bring a selector to where it was after `rounds` rounds (a resume): select and
    observe each recorded round again."""
    for t in range(rounds):
        selector.select(t, n)
        selector.observe(participation[participation["round"] == t + 1])


SELECTORS: dict[str, type[Selector]] = {
    "uniform": Uniform,
    "oort": Oort,
    "power_of_choice": PowerOfChoice,
    "energy": EnergyAware,
}


def build_selector(cfg: Config, n_train: np.ndarray, batteries: Batteries | None) -> Selector:
    """The run's selection strategy: built in, or a plugin subclass of Selector; it sees
    the fleet's `batteries`."""
    selector = _selector(cfg, n_train)
    selector.batteries = batteries
    return selector


def _selector(cfg: Config, n_train: np.ndarray) -> Selector:
    name = cfg.selection.name
    if name in SELECTORS:
        return SELECTORS[name](cfg, n_train)
    if not is_plugin(name):
        known = ", ".join(SELECTORS)
        raise ConfigError("selection.name", name, f"must be one of {known}, or a plugin "
                          "'package.module:Class'")  # fmt: skip
    found = load_plugin("selection.name", name)
    if not (isinstance(found, type) and issubclass(found, Selector)):
        raise ConfigError(
            "selection.name", name, "must name a subclass of mpifl.engine.selection.Selector"
        )
    return found(cfg, n_train)
