"""Run the method comparison study: three experiments, 5 seeds, locally with mpiexec
(default) or as SLURM jobs.

    python analysis/study.py [--ranks 2] [--seeds 0 1 2 3 4] [--only compare fedmrl koala]
                             [--settings N100-10pct-2cls ...] [--methods fedavg reft ...]
    python analysis/study_report.py results/study     # summaries, tables, claims, figures

Experiments (docs/study.md says what each one asks and why each setting is what it is):
  compare  every method and the baselines on one heterogeneous fleet, on real MNIST
           (jobs/study_mnist.toml) and FedProx's Synthetic(1, 1) (jobs/study_synthetic.toml);
           and FedAvg, FedProx and FedNova with stragglers (MNIST: about half of the
           client-rounds that can train late);
  fedmrl   FedMRL in its official code's setting (jobs/study_fedmrl.toml): N clients at
           participation 10/100%, 50/20%, 100/10%, 2 and 4 classes per client, against its
           paper's Standalone, FedAvg fine-tuned per client and the majority class;
  koala    KOALA fine-tuning a large model L pre-trained on few labels
           (jobs/study_koala.toml) against FedAvg on L (same pre-trained weights) on the
           constrained fleet and on an unconstrained one, FedAvg on the small model, and
           centralised training of each; every arm's fine-tuning learning rate (FedAvg's
           client rate; KOALA's distillation into L, after the small model's client rate)
           is first tuned on a validation split (experiment "tune", seed 100), as FedYogi's
           server learning rate, FedProx's mu and REFT's distillation learning rate in the
           compare experiment are on held-out data.
Each run is a one-task sweep in results/study/<experiment>/<setting>/<method>/seed_<S>/
(its resolved job is kept there); finished runs are skipped, so an interrupted study picks
up where it stopped, and so are runs whose summary under docs/study/ records the same job,
so a fresh clone goes on from the committed summaries without the HDF5 files. Seeds run
in order (every run of seed 0 first), so a study cut short still has every cell.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from mpifl.arguments import at_least, exit_with
from mpifl.engine.signals import INTERRUPTED
from mpifl.errors import InputError, shown
from mpifl.hpc.local import TaskRunner, task_command
from mpifl.hpc.slurm import TIME_FORMS, check_time
from mpifl.hpc.sweep import (
    BLOCKED,
    DONE,
    load_sweep,
    local_log,
    stale_change,
    status,
    write_tasks,
)
from mpifl.jobs import load_job
from mpifl.results.opening import read_attrs

ROOT = Path("results/study")
DATA = Path("docs/study")  # the committed per-run summaries (analysis/study_summaries.py)
# "Comparable accuracy" (a claim that a method keeps another's accuracy) holds when the
# one-sided 95% bound of the paired per-seed difference lies above -COMPARABLE_MARGIN.
# Fixed before running: 2 points is the gap the seed papers themselves call "similar" or
# "comparable" (KOALA's and REFT's tables report 1-2 point differences so), and it is
# twice the seed-to-seed sd of FedAvg's final accuracy on the compare jobs (~0.01).
COMPARABLE_MARGIN = 0.02
# KOALA's L, ~40x the small model (width 0.5 of the job's CNN): 97.5% less storage (the
# paper's pairs: 97.2-97.6%) and 98.0% fewer training FLOPs per sample (theirs: 98.4-98.6%).
LARGE = {"algorithm.large_channels": [32, 64], "algorithm.large_fc": 80}
L_AS_MODEL = {"model.width": 1.0, "model.channels": [32, 64], "model.fc": 80}  # L for FedAvg
# KOALA's centralised references, L and the small model on the pooled data, each at the
# client rate tuned for FedAvg on its model (ours: the job's 0.05 made L diverge); L's from
# the unconstrained fleet, where every client trains it
CENTRALIZED_KOALA = (("L", "fedavg-L-pretrained-unconstrained", L_AS_MODEL),
                     ("small", "fedavg-small", {}))  # fmt: skip
# L pre-trained on 100 labelled proxy images, 30 epochs of SGD at lr 0.01 (0.872 on the
# tuning seed's validation split): room to improve
PRETRAIN_SAMPLES, PRETRAIN_EPOCHS, PRETRAIN_LR = 100, 30, 0.01
UNCONSTRAINED = {"fleet.classes.mcu.weight": 0.0, "fleet.classes.hub.weight": 0.0}
TIERS = [1.0, 0.5, 0.25, 0.125]
# REFT's pruning levels in eighths (ours; its default is quarters), so that memory can force
# a microcontroller down to 0.875, the eighth width's size, as the sub-models' last tier
REFT = {"algorithm.name": "reft", "algorithm.capability": "quantile", "algorithm.p_step": 0.125}
COMPARE_JOBS = {"mnist": "jobs/study_mnist.toml", "synthetic": "jobs/study_synthetic.toml"}
# REFT's sensitivity to the server's unlabelled data (distilling on 100 / 250 images) and
# to starting each distillation from the clients' models averaged into L (ours): beside
# REFT, at its tuned server learning rate
REFT_VARIANTS = {
    "reft-proxy100": {"algorithm.proxy_samples": 100},
    "reft-proxy250": {"algorithm.proxy_samples": 250},
    "reft-average": {"algorithm.server_start": "average"},
}
# FedProx with partial work (a straggler sends the steps that fit the deadline), at its
# tuned mu; FedNova normalises each update by its local steps: its stragglers send partial
# work too
FEDPROX = {"algorithm.name": "fedprox", "round.partial_work": True}
FEDNOVA = {"algorithm.name": "fednova", "round.partial_work": True}
COMPARE = {  # (and FedProx, REFT and FedYogi, at their tuned values: TUNED)
    "majority": {"algorithm.name": "majority"},
    "local": {"algorithm.name": "local", "algorithm.tiers": TIERS},  # the widest it holds
    "centralized": {"algorithm.name": "centralized", "train.epochs": 1},
    "fedavg": {"algorithm.name": "fedavg"},
    "fedavg-ft": {"algorithm.name": "fedavg", "algorithm.finetune_epochs": 2},
    "fednova": FEDNOVA,
    "scaffold": {"algorithm.name": "scaffold"},
    "submodel-prefix": {"algorithm.name": "submodel", "algorithm.selection": "prefix"},
    "submodel-rolling": {"algorithm.name": "submodel", "algorithm.selection": "rolling"},
    "submodel-magnitude": {"algorithm.name": "submodel", "algorithm.selection": "magnitude"},
    # KOALA's small model: half the configured width (56 of 58 microcontrollers cannot hold it;
    # group norm's 4 groups need 4 channels), or families down to the eighth width, which
    # they hold (ours: the sub-models' tiers)
    "koala-homo": {"algorithm.name": "koala", "algorithm.mode": "homogeneous",
                   "model.width": 0.5} | LARGE,
    "koala-hetero": {"algorithm.name": "koala", "algorithm.mode": "heterogeneous",
                     "algorithm.small_widths": TIERS} | LARGE,
    "fedmrl": {"algorithm.name": "fedmrl"},
}  # fmt: skip
# FedMRL as its paper sizes it fits no microcontroller (two extractors): beside it, FedMRL
# with every layer at an eighth (ours): convolutions (MNIST's CNN, whose 1 and 2 channels
# take one norm group), fc widths and representation sizes, which two thirds of the
# microcontrollers hold; its shared G narrows for every client
FEDMRL_EIGHTH = {
    "algorithm.name": "fedmrl",
    "algorithm.fit_memory": True,  # a microcontroller trains the largest variant it holds
    "algorithm.global_fc": 6,
    "algorithm.local_fc": [16, 12, 10, 8, 6],
    "algorithm.mrl_dims": [2, 8],
}
COMPARE_EIGHTH = {
    "mnist": FEDMRL_EIGHTH | {"model.width": 0.125, "model.groups": 1},
    "synthetic": FEDMRL_EIGHTH,
}
# No client is late at the compare jobs' deadline, so partial work changes nothing there.
# FedProx's systems heterogeneity is its own setting, on MNIST: a deadline near the median
# finish time of FedAvg's clients, so that about half of the client-rounds that can train
# are stragglers (seed 0: 48%, 39% of them fitting some local steps; seed 100: 39%, 77%
# of them; the paper's 50% setting; ours: the paper gives stragglers fewer epochs, here
# the deadline cuts them),
# FedAvg dropping them against FedProx (and mu = 0: partial work alone) and FedNova
# keeping their partial work. Not on Synthetic: its MLP trains in milliseconds, so a
# client late there is late for its transfers, and only a quarter could send partial work.
STRAGGLER_DEADLINE = {"round.deadline": 0.36}  # (seconds)
STRAGGLER_JOB = "jobs/study_mnist.toml"
STRAGGLER_TEST_FRACTION = 0.1  # its tuning runs': the job's 0.2 less the validation split
STRAGGLERS = {  # (and FedProx at its tuned mu: TUNED)
    "fedavg": COMPARE["fedavg"],
    "fedprox-mu0": FEDPROX | {"algorithm.mu": 0.0},
    "fednova": FEDNOVA,
}
FEDMRL_SETTINGS = {  # (clients, cohort): the official code's N / participation pairs
    "N10-100pct": (10, 10),
    "N50-20pct": (50, 10),
    "N100-10pct": (100, 10),
}
PERSONAL = {  # FedMRL against its paper's Standalone and a global model fine-tuned per client
    "fedmrl": {"algorithm.name": "fedmrl"},
    # next, so that a sitting cut short still has both runs the probe of a seed reads
    # (analysis/fedmrl_probe.py: the HDF5 files, which a clone lacks)
    "fedavg-ft": {"algorithm.name": "fedavg", "algorithm.finetune_epochs": 2},
    "standalone": {"algorithm.name": "standalone"},
    "majority": {"algorithm.name": "majority"},
}
# KOALA's arms, each at its fine-tuning learning rate: the grid's best on a validation
# split (data.validation, never the test set) at the tuning seeds. A FedAvg arm fine-tunes
# its model on the clients (train.lr); a KOALA arm fine-tunes L on the server
# (algorithm.server_lr, its distillation), its clients training the small model at the
# rate tuned for it (fedavg-small's: `Tuned.base`). The claims read the warm-started arm:
# started cold, the small models are untrained, and round 1 distils L from them, which
# overwrote the pre-trained L (tuning seed, server_lr 0.05: 0.872 before; after round 1,
# 0.186 at train.lr 0.01 and 0.604 at 0.05; warm, at 0.05: 0.846); decided before any
# KOALA arm ran at a reported seed.
KOALA_JOB = "jobs/study_koala.toml"
FEDAVG_L = {"algorithm.name": "fedavg", "pretrained": True} | L_AS_MODEL
KOALA_WARM = {"pretrained": True, "algorithm.warm_start": True} | LARGE
CLAIMED = "koala-pretrained-warm"  # the arm KOALA's claims read
KOALA_ARMS = {  # arm -> (setting, keys)
    "koala-pretrained": ("constrained", {"pretrained": True} | LARGE),
    CLAIMED: ("constrained", KOALA_WARM),
    "koala-scratch": ("constrained", dict(LARGE)),
    "fedavg-L-pretrained": ("constrained", FEDAVG_L),
    "fedavg-small": ("constrained", {"algorithm.name": "fedavg"}),
    # the paper's comparison: the same clients, all of which could train L
    f"{CLAIMED}-unconstrained": ("unconstrained", KOALA_WARM | UNCONSTRAINED),
    "fedavg-L-pretrained-unconstrained": ("unconstrained", FEDAVG_L | UNCONSTRAINED),
}  # fmt: skip
# (0.005 and 0.2 added when fedavg-small chose 0.1 and FedAvg on L, unconstrained, 0.01:
# an end of the grid each, before any KOALA cell ran at a reported seed)
LR_GRID = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
# L's distillation learning rate (ours, as KOALA's other distillation settings): at and
# below the 0.05 the study ran before it was tuned, where L keeps more of its pre-training
KOALA_SERVER_LR_GRID = (0.005, 0.01, 0.02, 0.05)
# FedYogi's server learning rate (beta 0.9 / 0.99, tau 1e-3): Reddi et al. tune it over
# half-decades of 10^-3 to 10^1 and find their best between 10^-2.5 and 1
SERVER_LR_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
# FedProx's mu: its paper's grid, which it tunes per data set (its best, 1 on MNIST and
# Synthetic, is for plain SGD on other models than these)
MU_GRID = (0.001, 0.01, 0.1, 1.0)
# REFT's distillation learning rate (ours, as its other distillation settings): around
# the 0.2 the study ran before it was tuned
DISTILL_LR_GRID = (0.05, 0.1, 0.2, 0.5)
SEEDS = [0, 1, 2, 3, 4]  # every cell's
TUNE_SEEDS = [100]
VALIDATION = 0.1  # of the data, carved from the training pool
PRETRAINED = "pretrained"  # marks the cells that start from the seed's pre-trained L
# a pre-trained L's file name, but for its seed: how it is pre-trained
PRETRAINED_NAME = f"large_{PRETRAIN_SAMPLES}x{PRETRAIN_EPOCHS}_lr{PRETRAIN_LR:g}_seed_"


@dataclass(frozen=True)
class Tuned:
    """A cell whose `key` takes the grid's value with the best validation accuracy at the
    tuning seeds; it runs once its tuning runs are summarised."""

    experiment: str
    setting: str
    method: str
    job: str
    keys: dict[str, object]
    key: str = "train.lr"
    grid: tuple[float, ...] = LR_GRID
    # data.validation: a split carved from the training pool scores the tuning runs. Off
    # for generated data (Synthetic), which has none: there the tuning seed's own test
    # set, a draw of the generator that no reported run uses, scores them (ours).
    validation: bool = True
    # methods that run at the tuned value beside `method` (name -> their further keys):
    # its sensitivity variants, compared with it
    variants: dict[str, dict[str, object]] = field(default_factory=dict)
    # keys of the tuning runs alone (not of the cell they tune)
    tuning_keys: dict[str, object] = field(default_factory=dict)
    # the tuned cell whose chosen value this one's tuning runs and cell take too: tuned
    # first (this one's tuning runs wait for it)
    base: str | None = None

    @property
    def methods(self) -> dict[str, dict[str, object]]:
        """Every method that runs at the tuned value (name -> its keys beyond `keys`)."""
        return {self.method: {}} | self.variants

    @property
    def label(self) -> str:
        """The tuned key's last part, which names a tuning run's folder (lr=0.05)."""
        return self.key.rsplit(".", 1)[-1]


KOALA_RATE = {  # a KOALA arm's fine-tuning rate: L's distillation, at the small model's rate
    "key": "algorithm.server_lr",
    "grid": KOALA_SERVER_LR_GRID,
    "base": "fedavg-small",
}
TUNED = {  # the tuning runs' setting -> the cell they tune
    **{arm: Tuned("koala", setting, arm.removesuffix("-unconstrained"), KOALA_JOB, keys,
                  **({} if keys.get("algorithm.name") == "fedavg" else KOALA_RATE))
       for arm, (setting, keys) in KOALA_ARMS.items()},
    **{f"fedyogi-{data}": Tuned("compare", data, "fedyogi", job, {"algorithm.name": "fedyogi"},
                                "algorithm.server_lr", SERVER_LR_GRID, data == "mnist")
       for data, job in COMPARE_JOBS.items()},
    **{f"fedprox-{data}": Tuned("compare", data, "fedprox", job, FEDPROX, "algorithm.mu",
                                MU_GRID, data == "mnist")
       for data, job in COMPARE_JOBS.items()},
    # (its validation split comes out of the test set's share, not the training pool's:
    # clients hold as much data as in the reported runs, so as many are late)
    "fedprox-mnist-stragglers": Tuned(
        "compare", "mnist-stragglers", "fedprox", STRAGGLER_JOB,
        FEDPROX | STRAGGLER_DEADLINE, "algorithm.mu", MU_GRID,
        tuning_keys={"data.test_fraction": STRAGGLER_TEST_FRACTION}),
    **{f"reft-{data}": Tuned("compare", data, "reft", job, REFT, "algorithm.server_lr",
                             DISTILL_LR_GRID, data == "mnist", REFT_VARIANTS)
       for data, job in COMPARE_JOBS.items()},
}  # fmt: skip


@dataclass(frozen=True)
class Cell:
    """One (experiment, setting, method): a job file and its --set overrides."""

    experiment: str
    setting: str
    method: str
    job: str
    keys: dict[str, object]

    def folder(self, seed: int) -> Path:
        return ROOT / self.experiment / self.setting / self.method / f"seed_{seed}"


def cells() -> list[Cell]:
    """Every cell of the study, in running order within a seed."""
    out = []
    for data, job in COMPARE_JOBS.items():
        out += [Cell("compare", data, m, job, keys) for m, keys in COMPARE.items()]
        out.append(Cell("compare", data, "fedmrl-eighth", job, COMPARE_EIGHTH[data]))
        out += tuned_cells("compare", data)
    out += [Cell("compare", "mnist-stragglers", m, STRAGGLER_JOB, keys | STRAGGLER_DEADLINE)
            for m, keys in STRAGGLERS.items()]  # fmt: skip
    out += tuned_cells("compare", "mnist-stragglers")
    for classes in (2, 4):
        for name, (n, cohort) in FEDMRL_SETTINGS.items():
            if classes == 4 and n == 50:
                continue  # (time) 4 classes at the two ends of the N / participation range
            setting = {
                "fleet.clients": n,
                "round.cohort": cohort,
                "data.classes_per_client": classes,
            }
            out += [Cell("fedmrl", f"{name}-{classes}cls", m, "jobs/study_fedmrl.toml",
                         keys | setting) for m, keys in PERSONAL.items()]  # fmt: skip
    out += tuned_cells("koala")
    for model, arm, keys in CENTRALIZED_KOALA:  # (each waits for its FedAvg arm's tuning)
        if (rate := tuned(arm)) is not None:
            out.append(Cell("koala", "centralized", model, KOALA_JOB,
                            {"algorithm.name": "centralized", "train.epochs": 1} | keys
                            | {"train.lr": rate}))  # fmt: skip
    return out


def tuned_cells(experiment: str, setting: str | None = None) -> list[Cell]:
    """The tuned cells of `experiment` (and `setting`) whose value is tuned, at that value."""
    return [
        Cell(experiment, t.setting, method, t.job, t.keys | based | keys | {t.key: value})
        for name, t in TUNED.items()
        if t.experiment == experiment and setting in (None, t.setting)
        and (value := tuned(name)) is not None and (based := base_keys(t)) is not None
        for method, keys in t.methods.items()
    ]  # fmt: skip


def base_keys(t: Tuned, data: Path = DATA) -> dict[str, object] | None:
    """The key and chosen value `t` takes from its base (none without one); None while
    the base is not tuned."""
    if t.base is None:
        return {}
    value = tuned(t.base, data)
    return None if value is None else {TUNED[t.base].key: value}


def tune_cells() -> list[Cell]:
    """Every tuned cell at each value of its grid at the tuning seeds (`tuning_cells`)."""
    return [cell for name in TUNED for cell in tuning_cells(name)]


def tuning_cells(name: str, data: Path = DATA) -> list[Cell]:
    """The tuned cell `name` at each value of its grid, scored on a validation split carved
    from the training pool (or, without one, the tuning seed's own test data:
    `Tuned.validation`); none while its base is not tuned. KOALA's job fixes one test set
    for every seed, which the split never holds; the compare jobs draw one per seed, so on
    MNIST the split holds some of a reported seed's test images (docs/study_design.md)."""
    t = TUNED[name]
    based = base_keys(t, data)
    if based is None:
        return []
    return [
        Cell("tune", name, f"{t.label}={value:g}", t.job, t.keys | based | t.tuning_keys
             | {t.key: value} | ({"data.validation": VALIDATION} if t.validation else {}))
        for value in t.grid
    ]  # fmt: skip


def tuning_scores(name: str, data: Path = DATA) -> list[tuple[float, float]] | None:
    """(value, score) for each value of the tuned cell `name`'s grid, rising: its
    validation accuracy (mean of the last evaluations, averaged over the tuning seeds; a
    diverged run scores -inf), from the committed summaries; None until every tuning run
    is summarised as the study now defines it."""
    key, found, runs = TUNED[name].key, [], tuning_cells(name, data)
    if not runs:  # (waiting for its base)
        return None
    for cell in runs:
        scores = []
        for seed in TUNE_SEEDS:
            if not summarised(cell, seed, data):
                return None
            row = json.loads(summary_file(cell, seed, data).read_text())["row"]
            ok = row["global"] is not None and not row.get("diverged", False)
            scores.append(row["global"] if ok else -math.inf)
        found.append((float(cell.keys[key]), sum(scores) / len(scores)))
    return found


def best_value(scores: list[tuple[float, float]]) -> float | None:
    """The value with the best score (ties go to the smaller value); None if no value kept
    a finite accuracy (the cell does not run; the report says so)."""
    value, score = max(scores, key=lambda pair: pair[1])  # (the first of equals: smaller)
    return None if score == -math.inf else value


def tuned(name: str, data: Path = DATA) -> float | None:
    """The grid's value the tuned cell `name` runs at (`best_value` of its
    `tuning_scores`); None until it is tuned, or if no value will do."""
    scores = tuning_scores(name, data)
    return best_value(scores) if scores else None


def pretrained_file(seed: int, validation: bool) -> Path:
    """The seed's pre-trained L (tuning runs: pre-trained on their validation-mode data);
    its name says how it is pre-trained (PRETRAINED_NAME)."""
    folder = ROOT / ("tune" if validation else "koala") / "pretrained"
    return folder / f"{PRETRAINED_NAME}{seed}.pt"


def pretrain(seed: int, validation: bool = False) -> Path:
    """Pre-train the seed's large model on PRETRAIN_SAMPLES of its proxy set, once for the
    job it is pre-trained from: the job (resolved, as TOML) is kept beside it, and a file
    pre-trained from another, or without that record, is pre-trained again (any change to
    the job counts, rounds too: safe, and pre-training takes seconds). The new file
    replaces the old one only once complete. Its log is kept beside it too."""
    path, keys = pretrained_file(seed, validation), LARGE | {"run.seed": seed}
    keys["data.validation"] = VALIDATION if validation else 0.0
    sets = [f"{k}={json.dumps(v)}" for k, v in keys.items()]
    job, recorded = load_job(KOALA_JOB, sets).to_toml(), path.with_suffix(".toml")
    reusable = path.exists() and recorded.exists()
    if reusable and stale_change(recorded.read_text(), job, ignored=("run.output",)) is None:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    recorded.unlink(missing_ok=True)  # (until the file is pre-trained from this job)
    partial = path.with_suffix(".pt.partial")
    cmd = [sys.executable, "-m", "mpifl", "pretrain", KOALA_JOB, "--output", str(partial),
           "--samples", str(PRETRAIN_SAMPLES), "--epochs", str(PRETRAIN_EPOCHS),
           "--lr", str(PRETRAIN_LR), "--overwrite",
           *(arg for key in sets for arg in ("--set", key))]  # fmt: skip
    log = subprocess.run(cmd, capture_output=True, text=True)
    log_file = path.with_suffix(".log")
    log_file.write_text(log.stdout + log.stderr)
    if log.returncode:
        said = (log.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
        exit_with(f"study: pre-training {path} failed (exit {log.returncode}; its log: "
                  f"{log_file}): {said}", 1)  # fmt: skip
    os.replace(partial, path)
    recorded.write_text(job)
    return path


def sweep_file(cell: Cell, seed: int, folder: Path | None = None, init: bool = True) -> Path:
    """Write the one-task sweep file of (cell, seed) into `folder` (default: the run's);
    `init`: pre-train the seed's L where the cell starts from it (else leave it out)."""
    keys = dict(cell.keys)
    if keys.pop(PRETRAINED, False) and init:
        keys["algorithm.server_init"] = str(pretrain(seed, bool(keys.get("data.validation"))))
    folder = folder or cell.folder(seed)
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"job": cell.job, "name": f"{cell.experiment}-{cell.setting}-{cell.method}",
            "folder": str(cell.folder(seed)), "seeds": [seed],
            "grid": {k: [v] for k, v in keys.items()}}  # fmt: skip
    path = folder / "sweep.toml"
    path.write_text(tomli_w.dumps(spec))
    return path


def summary_file(cell: Cell, seed: int, data: Path = DATA) -> Path:
    """Where analysis/study_summaries.py keeps the summary of (cell, seed)'s finished run."""
    return data / cell.experiment / cell.setting / cell.method / f"seed_{seed}.json"


def summarised(cell: Cell, seed: int, data: Path = DATA) -> bool:
    """Whether (cell, seed) has a committed summary of a run of its job as the study now
    defines it, so that a fresh clone without the HDF5 files does not run it again. The
    pre-trained L it starts from (if any) is compared by its file's name (pretrained_file:
    the seed, the data split and the pre-training recipe), not by its weights. A summary
    that cannot be read is not one."""
    try:
        stored = tomllib.loads(json.loads(summary_file(cell, seed, data).read_text())["config"])
        init = stored["algorithm"].pop("server_init", "")
    except (OSError, ValueError, KeyError, TypeError):  # (JSON or TOML errors: ValueError)
        return False
    validation = bool(cell.keys.get("data.validation"))
    if init != (str(pretrained_file(seed, validation)) if cell.keys.get(PRETRAINED) else ""):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        now = load_sweep(sweep_file(cell, seed, Path(tmp), init=False)).tasks[0]
    return stale_change(tomli_w.dumps(stored), now, ignored=("run.output",)) is None


def stale(output: Path, job: Path) -> str | None:
    """Why a run (finished or not) is not its task's job as the study now defines it (the
    first setting that differs; keys the run predates count at today's defaults; a file
    that cannot be read), or None."""
    try:
        stored = str(read_attrs(output)["config"])
    except (OSError, KeyError) as exc:
        return f"it cannot be read ({exc})"
    return stale_change(stored, load_job(job).to_toml(), ignored=("run.output",))


def run_local(path: Path, ranks: int) -> None:
    """Each task of the sweep that is not done as the study defines it: a run stopped on
    the way (SIGTERM, a kill) resumes from its checkpoint, a stale one starts over."""
    sweep = load_sweep(path)
    write_tasks(sweep)
    runner = TaskRunner()  # (a SIGTERM or Ctrl-C to the study checkpoints the run)
    for i, state in status(sweep):  # (the study owns its files: a stale or unreadable one
        if state == DONE:  # starts over, where `mpifl sweep run` would leave it alone)
            continue
        over = state.startswith(BLOCKED)
        if over:
            print(f"{sweep.folder}: its run is {state}; running it again", flush=True)
        print(f"{sweep.folder} ...", flush=True)
        again = "--overwrite" if over else "--resume"
        log = local_log(sweep, i)  # (the run's output, where `mpifl sweep run` keeps it)
        code = runner.run(task_command(sweep, i, ranks, again), log)
        if runner.requested or code == INTERRUPTED:
            exit_with(f"study: stopped in {sweep.folder}; the same command resumes it", INTERRUPTED)
        if code:
            exit_with(f"study: the run in {sweep.folder} failed (exit {code}; its log: {log})", 1)


def slurm_time(text: str) -> str:
    """A SLURM time limit, for --time (argparse refuses another)."""
    try:
        return check_time(text)
    except InputError:
        raise argparse.ArgumentTypeError(f"{shown(text)}: use {TIME_FORMS}") from None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=at_least(1), default=2)
    p.add_argument("--seeds", type=at_least(0), nargs="+", default=SEEDS)
    p.add_argument("--only", nargs="+", choices=("compare", "fedmrl", "koala"))
    p.add_argument("--settings", nargs="+", help="only these settings (e.g. N100-10pct-2cls)")
    p.add_argument("--methods", nargs="+", help="only these methods (e.g. fedavg reft)")
    p.add_argument("--slurm", action="store_true", help="submit each run as a SLURM job")
    p.add_argument("--time", type=slurm_time, default="01:00:00")
    p.add_argument("--partition", default="")
    args = p.parse_args()
    settings = {c.setting for c in cells()} | set(TUNED) | {t.setting for t in TUNED.values()}
    methods = {c.method for c in cells()} | {m for t in TUNED.values() for m in t.methods}
    for what, known, asked in (("setting", settings, args.settings),
                               ("method", methods, args.methods)):  # fmt: skip
        unknown = sorted(set(asked or ()) - known)
        if unknown:
            exit_with(f"study: no {what} {', '.join(unknown)} (there are: "
                      f"{', '.join(sorted(known))})")  # fmt: skip

    def selected(experiment: str, names: set[str], of: set[str]) -> bool:
        return (not args.only or experiment in args.only) and (
            not args.settings or bool(names & set(args.settings))
        ) and (not args.methods or bool(of & set(args.methods)))  # fmt: skip

    def tuning_wanted(name: str) -> bool:  # as the cell it tunes, by its name, or as the
        t = TUNED[name]  # base of a wanted one
        return selected(t.experiment, {name, t.setting}, set(t.methods)) or any(
            other.base == name and tuning_wanted(n) for n, other in TUNED.items()
        )

    def wanted(cell: Cell) -> bool:
        if cell.experiment == "tune":
            return tuning_wanted(cell.setting)
        return selected(cell.experiment, {cell.setting}, {cell.method})

    tuning, seen = [], set()
    while todo := [(c, seed) for seed in TUNE_SEEDS for c in tune_cells() if wanted(c)
                   and (c.setting, c.method, seed) not in seen]:  # fmt: skip
        run_cells(todo, args)  # (then the tuning runs that wait for their values, if any)
        tuning += todo
        seen |= {(c.setting, c.method, seed) for c, seed in todo}
        if args.slurm:
            break
        from study_summaries import refresh  # the tuned values are read from the summaries

        refresh(ROOT, DATA)
    run_cells([(cell, seed) for seed in args.seeds for cell in cells() if wanted(cell)], args)
    if tuning and args.slurm:
        print(
            "The tuned cells (KOALA's arms, FedYogi, FedProx, REFT), and the tuning runs that wait "
            "for another cell's value (KOALA's: fedavg-small's learning rate), run once the "
            "tuning runs before them are summarised: when those jobs end, "
            "run `python analysis/study_report.py results/study` and this command again"
        )


def run_cells(todo: list[tuple[Cell, int]], args: argparse.Namespace) -> None:
    """Run (cell, seed) pairs in order here, or submit each as a SLURM job."""
    for cell, seed in todo:
        if summarised(cell, seed):  # (its HDF5 file may be on another machine)
            continue
        path = sweep_file(cell, seed)
        if args.slurm:
            cmd = [sys.executable, "-m", "mpifl", "sweep", "submit", str(path),
                   "--ntasks-per-node", str(args.ranks), "--time", args.time]  # fmt: skip
            if args.partition:
                cmd += ["--partition", args.partition]
            submitted = subprocess.run(cmd)  # (mpifl says why it refused)
            if submitted.returncode:
                exit_with(f"study: submitting {path} failed (exit {submitted.returncode})", 1)
        else:
            run_local(path, args.ranks)


if __name__ == "__main__":
    main()
