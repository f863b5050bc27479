"""The comparison study's scripts: every cell of analysis/study.py is a valid job, and
analysis/study_report.py turns a tree of real result files into docs/study.md, figures and
the README block (a smoke run, so the report cannot rot)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import time
import tomllib

import h5py
import numpy as np
import pandas as pd
import pytest

from mpifl.jobs import load_job, validate_job
from mpifl.results import read_run
from tests.conftest import ROOT, run_here


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "analysis" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run_main(monkeypatch, name: str, *args: str):
    """analysis/NAME.py's main() with ARGS (its sibling modules importable), in this
    process; the exit code it stopped with (None if it returned)."""
    monkeypatch.syspath_prepend(str(ROOT / "analysis"))
    module = load_script(name)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *args])
    try:
        module.main()
    except SystemExit as stop:
        return stop.code
    return None


def test_every_study_cell_is_a_valid_job(tmp_path, monkeypatch):
    study = load_script("study")
    state = tmp_path / "large.pt"
    state.write_bytes(b"")  # the loader only checks that the file exists
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(
        study, "tuned", lambda name, data=None: None
    )  # (not the committed summaries)
    waiting = study.cells()
    assert {c.experiment for c in waiting} == {"compare", "fedmrl"}
    assert not [c for c in waiting if c.experiment == "koala"]  # until their lr is tuned
    tuned = {"fedyogi", "fedprox", "reft", "reft-proxy100", "reft-proxy250", "reft-average"}
    assert not [c for c in waiting if c.method in tuned]  # until their values are tuned
    koala = {name for name, t in study.TUNED.items() if t.base == "fedavg-small"}
    assert koala == {"koala-pretrained", "koala-pretrained-warm", "koala-scratch",
                     "koala-pretrained-warm-unconstrained"}  # fmt: skip
    assert not {c.setting for c in study.tune_cells()} & koala  # until fedavg-small's lr is
    monkeypatch.setattr(study, "tuned", lambda name, data=None: study.TUNED[name].grid[0])
    cells = study.cells()  # the tuned cells too
    tuned_runs = sum(len(t.methods) for t in study.TUNED.values())
    assert len(cells) == len(waiting) + tuned_runs + len(study.CENTRALIZED_KOALA)
    rates = {"fedavg-small": 0.1, "fedavg-L-pretrained-unconstrained": 0.01}
    with monkeypatch.context() as m:
        m.setattr(study, "tuned", lambda name, data=None: rates.get(name))
        central = {c.method: c.keys for c in study.cells() if c.setting == "centralized"}
    assert {m: keys["train.lr"] for m, keys in central.items()} == {"L": 0.01, "small": 0.1}
    assert central["L"]["model.channels"] == study.L_AS_MODEL["model.channels"]
    reft = [c for c in cells if c.method.startswith("reft") and c.setting == "mnist"]
    assert len(reft) == 4 and {c.keys["algorithm.server_lr"] for c in reft} == {0.05}
    assert {c.setting for c in cells if c.method == "fedprox"} == {
        "mnist", "synthetic", "mnist-stragglers"}  # fmt: skip
    late = study.STRAGGLER_DEADLINE
    prox = [c for c in cells if c.method == "fedprox" and c.setting == "mnist-stragglers"]
    assert [c.keys for c in prox] == [study.FEDPROX | late | {"algorithm.mu": 0.001}]
    for c in [c for c in study.tune_cells() if c.setting == "fedprox-mnist-stragglers"]:
        assert c.keys.items() >= (study.FEDPROX | late).items()  # as many late clients:
        assert c.keys["data.test_fraction"] == 0.1  # the validation split is the test's share
    for name, keys in study.REFT_VARIANTS.items():
        (variant,) = [c for c in reft if c.method == name]
        assert variant.keys == study.REFT | keys | {"algorithm.server_lr": 0.05}
    tune = study.tune_cells()
    assert {c.setting for c in tune} == set(study.TUNED)
    for c in [c for c in tune if c.setting in koala]:  # at the small model's tuned lr
        assert c.keys["train.lr"] == study.LR_GRID[0]
        assert c.keys["algorithm.server_lr"] in study.KOALA_SERVER_LR_GRID
    warm = [c for c in cells if c.method == "koala-pretrained-warm"]
    assert {c.setting for c in warm} == {"constrained", "unconstrained"}
    assert all(c.keys["train.lr"] == study.LR_GRID[0] and c.keys["algorithm.server_lr"] == 0.005 and
               c.keys["algorithm.warm_start"] for c in warm)  # fmt: skip
    assert warm[1].keys.items() >= study.UNCONSTRAINED.items()
    carved = [c for c in tune if c.job != "jobs/study_synthetic.toml"]
    assert all(c.keys["data.validation"] > 0 for c in carved) and len(carved) < len(tune)
    for cell in cells + tune:
        keys = dict(cell.keys)
        if keys.pop(study.PRETRAINED, False):
            keys["algorithm.server_init"] = str(state)
        cfg = load_job(cell.job, [f"{k}={json.dumps(v)}" for k, v in keys.items()])  # TOML
        assert cfg.algorithm.name == keys.get("algorithm.name", cfg.algorithm.name)
    fedmrl = [c for c in cells if c.experiment == "fedmrl"]
    assert {c.method for c in fedmrl} == {"fedmrl", "standalone", "fedavg-ft", "majority"}
    assert {(c.keys["fleet.clients"], c.keys["round.cohort"]) for c in fedmrl} == {
        (10, 10),
        (50, 10),
        (100, 10),
    }


def cells(line: str) -> list[str]:
    """A markdown table row's cells."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


# The report, with the tree's runs (a tiny job) standing for their cells' jobs, but for
# compare / mnist / reft seed 1, which stands for a summary of an older design
REPORT = """import runpy, sys
sys.path.insert(0, sys.argv[1])
import study
study.summarised = lambda cell, seed, data: study.summary_file(cell, seed, data).exists() and (
    (cell.setting, cell.method, seed) != ("mnist", "reft", 1))
script = sys.argv[1] + "/study_report.py"
sys.argv = [script, *sys.argv[2:]]
runpy.run_path(script, run_name="__main__")
"""


README = "# title\n\nbefore\n\n<!-- study:begin -->\nOLD BLOCK\n<!-- study:end -->\n\nafter\n"
TREE = {  # cell folder -> which real run stands in for it
    "compare/mnist/fedavg": "global", "compare/mnist/submodel-prefix": "global",
    "compare/mnist/reft": "global", "compare/mnist/majority": "personal",
    "compare/synthetic/fedavg": "global",
    "compare/mnist-stragglers/fedavg": "global", "compare/mnist-stragglers/fedprox": "global",
    "compare/mnist-stragglers/fedprox-mu0": "global",
    "fedmrl/N10-100pct-2cls/fedmrl": "personal", "fedmrl/N10-100pct-2cls/standalone": "personal",
    "fedmrl/N10-100pct-2cls/fedavg-ft": "global", "fedmrl/N10-100pct-2cls/majority": "personal",
    "koala/constrained/koala-pretrained-warm": "global",
    "koala/constrained/fedavg-L-pretrained": "global",
    "koala/unconstrained/koala-pretrained-warm": "global",
    "koala/unconstrained/fedavg-L-pretrained": "global",
}  # fmt: skip


@pytest.mark.mpi
def test_study_report_writes_claims_tables_figures_and_the_readme_block(small_job, tmp_path):
    runs = {"global": tmp_path / "fedavg.h5", "personal": tmp_path / "local.h5"}
    run_here(small_job, runs["global"], "run.rounds=6")  # 5 evaluations: a paired curve
    run_here(small_job, runs["personal"], "run.rounds=6", "algorithm.name='local'")
    with h5py.File(runs["global"], "r+") as f:  # (one part's loop, as a resumed run had)
        f.attrs["wall_seconds"] = 1e6
    root = tmp_path / "study"
    jobs = {kind: read_run(path).attrs["config"] for kind, path in runs.items()}
    for cell, kind in TREE.items():
        for seed in (0, 1):
            folder = root / cell / f"seed_{seed}"
            folder.mkdir(parents=True)
            shutil.copy(runs[kind], folder / "task_0.h5")
            (folder / "task_0.toml").write_text(jobs[kind])  # the task's job, as run
    stale = root / "compare" / "mnist" / "fedavg" / "seed_2"  # a run of an older design
    stale.mkdir()
    shutil.copy(runs["global"], stale / "task_0.h5")
    (stale / "task_0.toml").write_text(jobs["global"].replace("rounds = 6", "rounds = 100"))
    study = load_script("study")
    tuned = ("fedavg-small", "koala-pretrained-warm", "koala-pretrained-warm-unconstrained",
             "fedavg-L-pretrained", "fedavg-L-pretrained-unconstrained", "reft-mnist",
             "fedprox-mnist-stragglers")  # fmt: skip
    tuning_runs = sum(len(study.TUNED[name].grid) for name in tuned)
    for name in tuned:  # the tree's tuned cells' tuning runs (seed 100)
        t = study.TUNED[name]
        for value in t.grid:
            folder = root / "tune" / name / f"{t.label}={value:g}" / "seed_100"
            folder.mkdir(parents=True)
            shutil.copy(runs["global"], folder / "task_0.h5")
            (folder / "task_0.toml").write_text(jobs["global"])
    logs = root / "koala" / "pretrained"
    logs.mkdir(parents=True)
    for seed, acc in ((0, 0.5), (1, 0.6)):
        (logs / f"{study.PRETRAINED_NAME}{seed}.log").write_text(
            f"... global test accuracy {acc}; saved\n"
        )
    readme = tmp_path / "README.md"
    readme.write_text(README)
    docs = tmp_path / "docs"
    docs.mkdir()
    data = docs / "study"
    command = [sys.executable, "-c", REPORT, str(ROOT / "analysis"), "--data", str(data),
               "--docs", str(docs), "--readme", str(readme)]  # fmt: skip
    proc = subprocess.run([*command, str(root)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "left out" in proc.stdout and "run.rounds was 6, now 100" in proc.stdout
    older = data / "compare" / "mnist" / "reft" / "seed_1.json"
    assert f"left out {older}: an older design" in proc.stdout  # summarised, not reported
    report = (docs / "study.md").read_text()
    assert ", reft (1), submodel-prefix (2) |" in report
    assert len(list(data.glob("*/*/*/seed_*.json"))) == 2 * len(TREE) + tuning_runs
    summary = json.loads((data / "compare/mnist/fedavg/seed_0.json").read_text())
    assert summary["config"] == jobs["global"]  # the job it ran: the study skips it
    shutil.rmtree(root)  # a fresh clone has the summaries, not the runs: the same report
    again = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert again.returncode == 0, again.stderr
    assert (docs / "study.md").read_text() == report
    assert len(pd.read_csv(data / "per_seed.csv")) == 2 * len(TREE) + tuning_runs - 1
    assert "No run diverged" in report
    summary = json.loads((data / "compare/mnist/fedavg/seed_0.json").read_text())
    summary["row"] |= {"seed": 7, "diverged": True}  # a run that diverged: listed, left out
    (data / "compare/mnist/fedavg/seed_7.json").write_text(json.dumps(summary))
    third = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert third.returncode == 0, third.stderr
    listed = (docs / "study.md").read_text()
    assert "1 runs diverged" in listed and "compare / mnist / fedavg, seed 7" in listed
    assert listed.replace(listed.split("## Diverged runs")[1].split("##")[0], "") == report.replace(
        report.split("## Diverged runs")[1].split("##")[0], ""
    )  # every table and verdict as before
    for heading in ("## Claims", "mnist", "N10-100pct-2cls", "### constrained"):
        assert heading in report
    assert "| FedMRL (Yi et al. 2024)" in report and "0.550 ± 0.635 pre-trained" in report
    assert "global model on global test: acc, last 5" in report
    assert "client's model on own test: acc, client mean, last 5" in report
    assert "clients but microcontrollers, own model on own test" in report
    mnist = report.split("fleet: mnist")[1].split("##")[0]  # majority: a local-only run
    head, *lines = [line for line in mnist.splitlines() if line.startswith("| ")]
    row = {m: dict(zip(cells(head), cells(line), strict=True)) for line in lines
           for m in cells(line)[:1]}  # fmt: skip
    to_global, to_client = "virtual s to global acc ≥ 0.9", "virtual s to client-mean acc ≥ 0.9"
    assert row["majority"][to_global] == "—"  # a column reads one metric: it has no global model
    assert row["majority"][to_client] == "not reached (0/2)"  # timed on the client mean
    assert row["fedavg"][to_global] != "—" and row["fedavg"][to_client] != "—"  # both
    client_area = "area under the client-mean-acc curve / rounds (mean of every evaluation)"
    assert row["fedavg"][client_area].startswith("0.")
    own = json.loads((data / "compare/mnist/majority/seed_0.json").read_text())["row"]
    assert own["target_metric"] == "client_accuracy" and own["auc"] > 0
    assert "| FedProx (Li et al. 2020)" in report and "## Stragglers" in report
    assert "; mu = 0 (partial work alone): " in report  # where FedProx's gain comes from
    assert "partial client-rounds (aggregated)" in report.split("## Stragglers")[1]
    assert "0.0% fewer training FLOPs per sample" in report  # KOALA's: per sample, not client
    assert "J of client work to global acc ≥ 0.9" in report
    tuning = report.split("## Values tuned on held-out data")[1]
    assert "| fedavg-small | " in tuning and "| tuned cell (train.lr) |" in tuning  # chosen
    assert f"| {study.LR_GRID[0]:g} (an end of the grid) |" in tuning  # (a tie: runs alike)
    assert "| koala-pretrained-warm | " in tuning and "| 0.005 (an end of the grid) |" in tuning
    koala = [line for line in report.split("## Claims")[1].split("##")[0].splitlines()
             if line.startswith("| KOALA")]  # fmt: skip
    assert len(koala) == 4  # against FedAvg on L on each fleet, the pre-trained L, the cost
    assert "koala / unconstrained fleet, both arms" in koala[1]
    assert "0.550 ± 0.635 pre-trained" in koala[2] and "settled" in koala[2]
    waiting = report.split("Planned once their tuning runs are summarised: ")[1].split("\n")[0]
    assert waiting.startswith("compare / mnist / fedprox, compare / mnist / fedyogi, ")
    assert "compare / synthetic / reft-average" in waiting and "mnist / reft" not in waiting
    assert "distillation learning rate 0.05 (ours, tuned" in report  # (a tie: the smallest)
    assert "mu = 0.001 (tuned on held-out data)" in report
    assert "settled from round" in report or "not settled" in report
    assert "| fedmrl / N10-100pct-2cls | fedavg-ft (2), fedmrl (2)" in report  # runs done
    per_seed = pd.read_csv(data / "per_seed.csv")
    assert per_seed["wall_s"].max() < 1e5  # a run's wall: its rounds', every part of it
    timed = per_seed[(per_seed.setting == "mnist")].groupby("method")["wall_s"].mean()
    assert len(timed) == 4  # of compare/mnist's 18 (FedProx, FedYogi wait): 14 untimed
    assert f"| {timed.sum() * 3 / 3600:.1f} h + {14 * 5} runs not timed yet |" in report
    for figure in ("study_compare.png", "study_fedmrl.png", "study_koala.png", "study_paired.png"):
        assert (docs / "figures" / figure).stat().st_size > 10_000
        assert f"](figures/{figure})" in report  # docs/study.md shows each one
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n\n<!-- study:begin -->\n")
    assert text.endswith("<!-- study:end -->\n\nafter\n") and "OLD BLOCK" not in text
    assert "| claim | paper's figure |" in text


def test_fedmrl_probe_scores_both_shared_models_and_the_report_shows_them(tmp_path, monkeypatch):
    job, sets = ROOT / "jobs" / "study_fedmrl.toml", ("run.rounds=2", "data.name='digits'")
    root = tmp_path / "study"
    fedavg = ("algorithm.name='fedavg'", "algorithm.finetune_epochs=1")
    for method, keys in (("fedmrl", ()), ("fedavg-ft", fedavg)):
        folder = root / "fedmrl" / "N10-100pct-2cls" / method / "seed_0"
        folder.mkdir(parents=True)
        run_here(job, folder / "task_0.h5", *sets, *keys)
        (folder / "task_0.toml").write_text(read_run(folder / "task_0.h5").attrs["config"])
    out = tmp_path / "probes.csv"
    script = ROOT / "analysis" / "fedmrl_probe.py"
    command = [sys.executable, str(script), str(root), "--out", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    probes = pd.read_csv(out)
    assert list(probes["features"]) == [
        "FedMRL G, representation", "FedMRL G, hidden layer", "FedAvg CNN, hidden layer"
    ]  # fmt: skip
    assert list(probes["dims"]) == [16, 48, 32]
    assert probes["pooled_probe"].between(0.3, 1).all()  # not chance
    assert probes["as_is"].notna().sum() == 1
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert "probed" not in again.stdout and pd.read_csv(out).equals(probes)  # kept, not redone
    monkeypatch.syspath_prepend(str(ROOT / "analysis"))  # (its sibling modules)
    study_report = load_script("study_report")
    fedmrl = pd.DataFrame(
        [
            {
                "experiment": "fedmrl",
                "setting": "N10-100pct-2cls",
                "method": m,
                "seed": s,
                "client": 0.9,
            }
            for m, s in (
                ("fedmrl", 0),
                ("fedmrl", 1),
                ("fedavg-ft", 0),
                ("fedavg-ft", 1),
                ("fedavg-ft", 2),
            )
        ]
    )  # fmt: skip  (FedAvg-ft one seed ahead)
    section = "\n".join(study_report.probe_section(out, fedmrl))
    assert "| N10-100pct-2cls | FedAvg CNN, hidden layer | 32 | 1 |" in section
    assert "Seeds 1 are not probed yet" in section


# A stand-in for `mpifl run`: says it is up, then on SIGTERM marks the file and exits 3
CHILD = """import pathlib, signal, sys, time
def stop(*_):
    pathlib.Path(sys.argv[1]).write_text("SIGTERM")
    sys.exit(3)
signal.signal(signal.SIGTERM, stop)
print("up", flush=True)
time.sleep(120)
"""
STUDY = """import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import study
tmp = Path(sys.argv[2])
study.ROOT = tmp / "study"
study.task_command = lambda *_: [sys.executable, "-c", sys.argv[4], str(tmp / "signalled")]
cell = study.Cell("fedmrl", "N10", "fedmrl", sys.argv[3], {"run.rounds": 2})
study.run_local(study.sweep_file(cell, 0), ranks=2)
"""


def test_a_sigterm_to_the_study_checkpoints_its_run_and_ends_it_in_one_line(small_job, tmp_path):
    """The study died at once on SIGTERM and left its run going (a Ctrl-C killed the run
    without a checkpoint); it passes the signal on, as `mpifl sweep run` does."""
    cmd = [sys.executable, "-c", STUDY, str(ROOT / "analysis"), str(tmp_path), str(small_job),
           CHILD]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    folder = tmp_path / "study" / "fedmrl" / "N10" / "fedmrl" / "seed_0"
    log = folder / "task_0.local.log"
    deadline = time.monotonic() + 60
    while not (log.exists() and "up" in log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err  # resumable, as mpifl's own
    assert err == f"study: stopped in {folder}; the same command resumes it\n"
    assert (tmp_path / "signalled").read_text() == "SIGTERM"


def test_a_failed_run_ends_the_study_naming_its_log(small_job, tmp_path, monkeypatch, capsys):
    """A failed run ended the study with a CalledProcessError trace."""
    study = load_script("study")
    monkeypatch.setattr(study, "ROOT", tmp_path / "study")
    cell = study.Cell("fedmrl", "N10", "fedmrl", str(small_job), {"run.rounds": 2})
    launched = []

    def fake_run(self, cmd, log):
        launched.append(cmd)
        return 1

    monkeypatch.setattr(study.TaskRunner, "run", fake_run)
    with pytest.raises(SystemExit) as stop:
        study.run_local(study.sweep_file(cell, 0), ranks=2)
    log = cell.folder(0) / "task_0.local.log"
    assert stop.value.code == 1 and len(launched) == 1 and "--resume" in launched[0]
    assert capsys.readouterr().err == (
        f"study: the run in {cell.folder(0)} failed (exit 1; its log: {log})\n"
    )


def test_a_run_summarised_with_its_job_is_not_run_again(small_job, tmp_path, monkeypatch):
    """A fresh clone holds the committed summaries, not the HDF5 files: the study ran every
    finished cell again. A summary of an older design still reruns, and so does one that
    does not start from the pre-trained L where the cell now does; a run from L counts as
    the same job without L's file (a fresh clone has none); a damaged summary reruns."""
    study = load_script("study")
    monkeypatch.chdir(tmp_path)
    keys = {"run.rounds": 2}
    from_l = keys | {study.PRETRAINED: True}
    named = {"plain": keys, "from-L": from_l, "older": keys, "scratch": from_l, "damaged": keys}
    cell = {m: study.Cell("koala", "s", m, str(small_job), k) for m, k in named.items()}
    l_file = str(study.pretrained_file(0, validation=False))  # (not on this machine)
    for method, c in cell.items():
        task = study.load_sweep(study.sweep_file(c, 0, tmp_path / "x", init=False)).tasks[0]
        stored = validate_job(tomllib.loads(task)).to_toml()  # as a run stores its job
        if method == "from-L":
            stored = stored.replace('server_init = ""', f'server_init = "{l_file}"')
        if method == "older":
            stored = stored.replace("rounds = 2", "rounds = 3")
        if method == "damaged":
            stored = stored.replace("[algorithm]", "[algorithm")
        path = study.summary_file(c, 0)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"row": {}, "curve": {}, "config": stored}))
    assert l_file in study.summary_file(cell["from-L"], 0).read_text()
    ran = []
    monkeypatch.setattr(study, "run_local", lambda path, ranks: ran.append(path.parent.parent.name))
    monkeypatch.setattr(study, "pretrain", lambda seed, validation=False: small_job)
    todo = [(c, 0) for c in cell.values()] + [(cell["plain"], 1)]
    study.run_cells(todo, argparse.Namespace(slurm=False, ranks=2))
    assert ran == ["older", "scratch", "damaged", "plain"]


def test_fedyogi_runs_at_the_server_rate_that_won_on_validation(tmp_path, monkeypatch):
    """FedYogi's server learning rate was fixed at 0.01 where its paper tunes it: it is
    now the grid's best on validation at the tuning seed, per data set, as KOALA's arms'
    fine-tuning rates are; the cell waits until every tuning run is summarised."""
    study = load_script("study")
    monkeypatch.setattr(study, "summarised", lambda c, s, d: study.summary_file(c, s, d).exists())
    grid = [c for c in study.tune_cells() if c.setting == "fedyogi-mnist"]
    assert [c.method for c in grid][:3] == ["server_lr=0.001", "server_lr=0.003", "server_lr=0.01"]
    for cell, score in zip(grid, (0.5, 0.9, 0.93, 0.93, None, 0.2, 0.1), strict=True):
        if score != 0.1:  # the last is not summarised yet
            path = study.summary_file(cell, 100, tmp_path)
            path.parent.mkdir(parents=True, exist_ok=True)  # None: no global accuracy
            path.write_text(json.dumps({"row": {"global": score, "diverged": False}}))
    assert study.tuned("fedyogi-mnist", tmp_path) is None
    last = study.summary_file(grid[-1], 100, tmp_path)
    last.parent.mkdir(parents=True)
    last.write_text(json.dumps({"row": {"global": 0.99, "diverged": True}}))  # scores -inf
    assert study.tuned("fedyogi-mnist", tmp_path) == 0.01  # the tie goes to the smaller
    for cell in grid:  # every value diverged: none is chosen (the smallest was)
        study.summary_file(cell, 100, tmp_path).write_text(
            json.dumps({"row": {"global": 0.9, "diverged": True}})
        )
    assert study.tuned("fedyogi-mnist", tmp_path) is None
    monkeypatch.setattr(
        study, "tuned", lambda name, data=None: 0.01 if name == "fedyogi-mnist" else None
    )
    yogi = [c for c in study.cells() if c.method == "fedyogi"]
    assert [(c.setting, c.keys) for c in yogi] == [
        ("mnist", {"algorithm.name": "fedyogi", "algorithm.server_lr": 0.01})
    ]
    assert yogi[0].job == "jobs/study_mnist.toml" and "data.validation" not in yogi[0].keys


def test_the_clients_but_microcontrollers_are_scored_apart(monkeypatch):
    """FedMRL cannot fit a microcontroller (two extractors), so its client mean counted 11
    clients that never trained beside 19 that did: a column scores every method on the
    clients but microcontrollers, each class's client mean weighted by its clients."""
    monkeypatch.syspath_prepend(str(ROOT / "analysis"))
    summaries, report = load_script("study_summaries"), load_script("study_report")
    classes = {"mcu": (11, 0.1), "rpi": (8, 0.9), "phone": (8, 0.8), "jetson": (3, 0.7)}
    rows = [(r, f"clients/mean/{c}", acc + r / 100, n) for r in range(1, 8)
            for c, (n, acc) in classes.items()]  # fmt: skip
    rows += [(r, "clients/mean", 0.5, 30) for r in range(1, 8)]
    evals = pd.DataFrame(rows, columns=["round", "group", "accuracy", "samples"])
    expected = (8 * 0.9 + 8 * 0.8 + 3 * 0.7) / 19 + 0.05  # rounds 3-7: + 0.05 on average
    assert summaries.other_classes_mean(evals, "mcu") == pytest.approx(expected)
    assert np.isnan(summaries.other_classes_mean(evals[evals.group == "clients/mean"], "mcu"))
    column = report.COLUMNS["client_no_mcu"][1]
    assert column(pd.DataFrame({"client": [0.5, 0.6]})) == "n/a"  # summaries before it


def test_a_figure_a_summary_lacks_reads_n_a_not_not_reached(monkeypatch):
    """A client-mean figure missing from a summary read as "not reached"."""
    monkeypatch.syspath_prepend(str(ROOT / "analysis"))
    report = load_script("study_report")
    to_client, to_global = report.COLUMNS["client_vtime"][1], report.COLUMNS["vtime"][1]
    g = pd.DataFrame({"target_metric": [report.GLOBAL] * 2, "MFLOP": [1.0, 1.0],
                      "energy_recorded": [True, True], "vtime_to_target": [3.0, 5.0],
                      "client_vtime_to_target": [float("nan")] * 2,
                      "client_auc": [0.5, float("nan")]})  # fmt: skip
    assert to_global(g) == "4.0" and to_client(g) == "n/a"  # seed 1 predates client figures
    assert to_client(g.assign(client_auc=0.5)) == "not reached (0/2)"
    mixed = g.assign(target_metric=[report.GLOBAL, report.CLIENT], client_auc=0.5)
    assert to_client(mixed) == "n/a" and to_global(mixed) == "n/a"
    own = g.assign(target_metric=report.CLIENT)  # no global model
    assert to_global(own) == "—" and to_client(own) == "4.0"


def test_an_unknown_setting_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    """An unknown setting ran nothing and exited 0."""
    args = ["--settings", "N10-100pct-3cls", "N50-20pct-2cls"]
    says = "study: no setting N10-100pct-3cls (there are: N10-100pct-2cls, "
    monkeypatch.chdir(tmp_path)
    code = run_main(monkeypatch, "study", *args)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith(says), err
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["missing"], "study_report: missing is not a folder of study runs"),
        (["--readme", "NOPE.md"], "study_report: no README at NOPE.md (--readme)"),
        (["--docs", "nodocs"], "study_report: no folder nodocs (--docs)"),
        ([], "study_report: no study summaries under docs/study (run with a results folder)"),
    ],
)
def test_the_report_refuses_bad_input_in_one_line(tmp_path, monkeypatch, capsys, args, says):
    """A results folder that does not exist ended with a Python message and exit 1."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(README)
    assert run_main(monkeypatch, "study_report", *args) == 2
    assert capsys.readouterr().err == says + "\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["README.md", "docs"]
    assert (tmp_path / "README.md").read_text() == README


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["missing"], "fedmrl_probe: no FedMRL study runs in missing/fedmrl"),
        (["--out", "no/probes.csv"], "fedmrl_probe: no folder no for --out"),
        (["--out", "results"], "fedmrl_probe: --out results is a folder"),
        (
            ["--out", "notes.csv"],
            "fedmrl_probe: --out notes.csv is not a probe table (its first "
            "line is not setting,seed,features,dims,pooled_probe,as_is): it is never overwritten",
        ),
    ],
)
def test_the_probe_refuses_bad_input_in_one_line(tmp_path, monkeypatch, capsys, args, says):
    """A results folder that does not exist ended with a FileNotFoundError trace."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "study" / "fedmrl").mkdir(parents=True)
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")  # someone's table
    assert run_main(monkeypatch, "fedmrl_probe", *args) == 2
    assert capsys.readouterr().err == says + "\n"
    assert [p.name for p in tmp_path.rglob("*.csv")] == ["notes.csv"]
    assert (tmp_path / "notes.csv").read_text() == "a,b\n1,2\n"


def test_the_report_leaves_out_a_run_it_cannot_read(tmp_path, monkeypatch, capsys):
    """An unreadable result file in the study's tree stopped the report with a trace."""
    monkeypatch.syspath_prepend(str(ROOT / "analysis"))
    summaries = load_script("study_summaries")
    bad = tmp_path / "study" / "fedmrl" / "N10-100pct-2cls" / "fedmrl" / "seed_0" / "task_0.h5"
    bad.parent.mkdir(parents=True)
    bad.write_text("not HDF5")
    assert summaries.refresh(tmp_path / "study", tmp_path / "data") == 0
    assert capsys.readouterr().out.startswith(f"left out {bad}: it cannot be read (")


def test_the_probe_fills_an_empty_out_file(tmp_path, monkeypatch):
    """An empty --out (no one's table) is written, not refused."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "study" / "fedmrl").mkdir(parents=True)
    (tmp_path / "probes.csv").write_text("")
    assert run_main(monkeypatch, "fedmrl_probe", "--out", "probes.csv") is None
    header = ",".join(sys.modules["fedmrl_probe"].FIELDS)
    assert (tmp_path / "probes.csv").read_text().splitlines() == [header]


def test_the_report_refuses_a_file_where_its_figures_go(tmp_path, monkeypatch, capsys):
    """docs/figures as a file: the report wrote study.md and per_seed.csv, then traced."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "figures").write_text("mine")
    (tmp_path / "README.md").write_text(README)
    assert run_main(monkeypatch, "study_report") == 2
    assert capsys.readouterr().err == (
        "study_report: docs/figures is a file, not the figures' folder\n"
    )
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["README.md", "docs", "figures"]


def test_a_claim_shows_its_methods_on_the_seeds_it_pairs(monkeypatch):
    """A claim row's means are over the seeds both methods have run (FedAvg at seeds 0
    and 1 against a method at seed 0 alone read 0.955 ± 0.099 against one run before)."""
    monkeypatch.syspath_prepend(str(ROOT / "analysis"))
    claims = load_script("study_claims")
    df = pd.DataFrame({"experiment": "compare", "setting": "mnist", "seed": [0, 1, 0],
                       "method": ["fedavg", "fedavg", "submodel-prefix"],
                       "global": [0.95, 0.70, 0.94], "client_mcu": [0.9, 0.5, 0.8],
                       "infeasible": [300.0, 100.0, 0.0]})  # fmt: skip
    curves = pd.DataFrame({"experiment": "compare", "setting": "mnist", "seed": [0, 1, 0],
                           "method": ["fedavg", "fedavg", "submodel-prefix"],
                           "round": 1, claims.GLOBAL: [0.95, 0.70, 0.94]})  # fmt: skip
    row = claims._cheaper(df, curves, "mnist", "submodel-prefix", "infeasible", "infeasible",
                          "claim", "")  # fmt: skip
    assert "global acc 0.940 vs FedAvg 0.950; infeasible 0.0 vs 300.0" in row[2]
    assert "scores 0.900 on their test data" in row[2]


@pytest.mark.parametrize("slurm", [False, True])
def test_koala_arms_tune_after_the_small_model_they_take_a_rate_from(monkeypatch, slurm):
    """A KOALA arm's tuning runs take fedavg-small's tuned client rate: they run in a pass
    after it (locally; under --slurm, on the next call), even when --settings names only
    the fleet they are on, and its cell takes both values."""
    monkeypatch.syspath_prepend(str(ROOT / "analysis"))
    study, summaries = load_script("study"), load_script("study_summaries")
    passes, summarised = [], set()
    monkeypatch.setattr(study, "run_cells", lambda todo, args: passes.append(todo))
    monkeypatch.setattr(
        summaries, "refresh", lambda root, data: summarised.update(c.setting for c, _ in passes[-1])
    )
    values = {name: t.grid[1] if name == "fedavg-small" else t.grid[-1]
              for name, t in study.TUNED.items()}  # fmt: skip
    monkeypatch.setattr(
        study, "tuned", lambda name, data=None: values.get(name) if name in summarised else None
    )
    argv = ["study.py", "--only", "koala", "--settings", "unconstrained"] + ["--slurm"] * slurm
    monkeypatch.setattr(sys, "argv", argv)
    study.main()
    tuning = [{c.setting for c, _ in todo} for todo in passes[:-1]]
    first = {"fedavg-small", "fedavg-L-pretrained-unconstrained"}  # (fedavg-small: its base)
    assert tuning == ([first] if slurm else [first, {"koala-pretrained-warm-unconstrained"}])
    if slurm:
        assert passes[-1] == []  # the tuned cells wait for the next call
        return
    ran = {c.method: c.keys for c, seed in passes[-1] if seed == 0}
    assert set(ran) == {"koala-pretrained-warm", "fedavg-L-pretrained"}
    small, grid = study.LR_GRID[1], study.KOALA_SERVER_LR_GRID
    assert ran["koala-pretrained-warm"]["train.lr"] == small  # fedavg-small's
    assert ran["koala-pretrained-warm"]["algorithm.server_lr"] == grid[-1]  # its own
    assert ran["fedavg-L-pretrained"]["train.lr"] == study.LR_GRID[-1]
    second = [c for c, _ in passes[1]]
    assert {c.keys["train.lr"] for c in second} == {small} and len(second) == len(grid)


def test_the_pre_trained_accuracies_merge_across_machines(tmp_path, monkeypatch, capsys):
    """A sitting on another machine rewrote the pre-trained L's accuracies with only the
    seeds it had; they now merge, and accuracies of an L pre-trained otherwise are left out
    and said so."""
    monkeypatch.syspath_prepend(str(ROOT / "analysis"))
    study, summaries = load_script("study"), load_script("study_summaries")
    data, kept = tmp_path / "data", tmp_path / "data" / "koala" / "pretrained.json"
    for seeds in ((0, 1), (2,)):  # two machines, each with its own seeds' logs
        logs = tmp_path / f"machine{seeds[0]}" / "koala" / "pretrained"
        logs.mkdir(parents=True)
        for seed in seeds:
            (logs / f"{study.PRETRAINED_NAME}{seed}.log").write_text(
                f"... global test accuracy 0.{seed + 5}; saved\n"
            )
        summaries.refresh(logs.parent.parent, data)
    assert summaries.read_pretrained(data) == {0: 0.5, 1: 0.6, 2: 0.7}
    kept.write_text(json.dumps({"name": "large_100_seed_", "accuracy": {"0": 0.9}}))
    capsys.readouterr()
    assert summaries.read_pretrained(data) == {}
    assert capsys.readouterr().out.startswith(f"left out {kept}: its L was pre-trained otherwise")
    kept.write_text("{}")
    assert summaries.read_pretrained(data) == {}
    assert capsys.readouterr().out.startswith(f"left out {kept}: it cannot be read")


def test_methods_selects_the_cells_and_the_tuning_of_those_methods(monkeypatch):
    """--methods runs those methods' cells (a claim's, ahead of the rest) and the tuning
    runs of the tuned ones among them, nothing else."""
    monkeypatch.syspath_prepend(str(ROOT / "analysis"))
    study, summaries = load_script("study"), load_script("study_summaries")
    passes = []
    monkeypatch.setattr(study, "run_cells", lambda todo, args: passes.append(todo))
    monkeypatch.setattr(summaries, "refresh", lambda root, data: None)
    monkeypatch.setattr(study, "tuned", lambda name, data=None: study.TUNED[name].grid[0])
    argv = ["study.py", "--only", "compare", "--settings", "mnist", "--methods", "fedavg", "reft"]
    monkeypatch.setattr(sys, "argv", argv)
    study.main()
    tuning, ran = passes
    assert {c.setting for c, _ in tuning} == {"reft-mnist"}  # (its variants' too: theirs)
    assert {(c.setting, c.method) for c, _ in ran} == {("mnist", "fedavg"), ("mnist", "reft")}
    assert sorted({seed for _, seed in ran}) == study.SEEDS


def test_the_pre_trained_l_is_trained_again_when_its_job_changes(tmp_path, monkeypatch):
    """A pre-trained L is reused only for the job it was pre-trained from: with other
    training settings it is pre-trained again (it was kept, and the runs started from it)."""
    study = load_script("study")
    job = tmp_path / "koala.toml"
    job.write_text((ROOT / study.KOALA_JOB).read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(study, "KOALA_JOB", str(job))
    monkeypatch.setattr(study, "PRETRAIN_EPOCHS", 1)
    pretrained = study.pretrain(0)
    first, made = pretrained.read_bytes(), pretrained.stat().st_mtime_ns
    assert study.pretrain(0).stat().st_mtime_ns == made  # the same job: not pre-trained again
    assert "pre-trained on 100 samples" in pretrained.with_suffix(".log").read_text()
    job.write_text(job.read_text().replace("momentum = 0.5", "momentum = 0.9"))
    assert study.pretrain(0) == pretrained and pretrained.read_bytes() != first
    assert "momentum = 0.9" in pretrained.with_suffix(".toml").read_text()


def test_a_failed_pre_training_ends_the_study_in_one_line_naming_why(tmp_path, monkeypatch, capsys):
    study = load_script("study")
    job = tmp_path / "koala.toml"
    job.write_text((ROOT / study.KOALA_JOB).read_text().replace("alpha = 0.5", "alpha = 0.01"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(study, "KOALA_JOB", str(job))
    with pytest.raises(SystemExit) as ended:
        study.pretrain(0)
    said = capsys.readouterr().err.strip().splitlines()
    assert ended.value.code == 1 and len(said) == 1
    assert said[0].startswith("study: pre-training ") and "data.alpha = 0.01" in said[0]
    assert not study.pretrained_file(0, validation=False).exists()


def test_an_undecided_row_says_it_is_equivalent_and_how_many_seeds_would_decide_it(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "analysis"))
    load_script("study")
    claims, stats = load_script("study_claims"), load_script("stats")
    a, d = pd.Series([0.970, 0.975, 0.968, 0.972, 0.971]), np.array([0.008, 0.001, 0.012, 0, 0.006])
    said = claims._paired(a, a - d, "better")
    assert said.startswith("cannot tell (") and "; equivalent within ±0.02 (" in said
    n = stats.seeds_needed(d, "better")
    assert n is not None and f"; ~{n} seeds would decide it" in said
    flat = np.array([0.01, -0.01, 0.0101, -0.0099, 0.0])  # a mean of 4e-5: not on the bound
    said = claims._paired(a, a - flat, "better")
    assert said.startswith("cannot tell (") and "; over 1000 seeds would decide it" in said
