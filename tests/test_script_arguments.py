"""The scripts under analysis/ and bench/ refuse bad arguments before anything runs: the
usage and one line naming the problem, exit 2 (mpifl/arguments.py and each script's own
checks); found by a hostile-input sweep, where each of these ran, traced or wrote."""

from __future__ import annotations

import argparse
import importlib
import sys

import pytest

from mpifl.arguments import at_least, existing_file, existing_folder, output_folder
from tests.conftest import ROOT
from tests.test_study import load_script


def test_argument_types(tmp_path):
    assert at_least(1)("3") == 3
    for text, low in (("0", 1), ("-1", 0)):
        with pytest.raises(argparse.ArgumentTypeError, match=f"{text}: at least {low}"):
            at_least(low)(text)
    with pytest.raises(ValueError):
        at_least(1)("abc")
    file = tmp_path / "a"
    file.write_text("")
    assert output_folder(str(tmp_path / "new" / "deeper")) == tmp_path / "new" / "deeper"
    with pytest.raises(argparse.ArgumentTypeError, match="is a file, not a folder"):
        output_folder(str(file / "sub"))
    assert existing_file(str(file)) == file and existing_folder(str(tmp_path)) == tmp_path
    for check, path in ((existing_file, tmp_path), (existing_folder, file)):
        with pytest.raises(argparse.ArgumentTypeError, match="no such"):
            check(str(path))


CASES = {  # (script, arguments) -> the end of its one line
    ("bench.jobs", ("--only", "nosuch")): f"no job nosuch in {ROOT / 'jobs'}",
    ("bench.jobs", ("--ranks", "0")): "argument --ranks: 0: at least 1",
    ("bench.w1", ("--repeats", "0")): "argument --repeats: 0: at least 1",
    ("bench.w5", ("--ranks", "0")): "argument --ranks: 0: at least 1",
    ("bench.w1_bare", ("--cohort", "2000")): "argument --cohort: 2000: at most the 1000 clients",
    ("bench.breakdown", ("jobs/quickstart.toml", "--groups", "1,0")): "--groups: 0: at least 1",
    ("bench.breakdown", ("jobs/quickstart.toml", "--set", "run.rounds=0")): "run.rounds = 0",
    ("selection", ("--seeds", "-1")): "argument --seeds: -1: at least 0",
    ("async_demo", ("--variant", "fedbuff!", "run.rounds=2")): "would be another row's or not one",
    ("async_demo", ("--variant", "..", "run.rounds=2")): "would be another row's or not one",
    ("async_demo", ("--variant", "X", "no_key=1")): "no_key = 1: unknown key",
    ("study", ("--time", "bogus")): "'bogus': use minutes, HH:MM:SS or D-HH:MM:SS",
    ("study", ("--ranks", "0")): "argument --ranks: 0: at least 1",
    ("study", ("--methods", "fedavg", "fedprox2")): "study: no method fedprox2 (there are: ",
}


@pytest.mark.parametrize(("script", "args"), sorted(CASES))
def test_a_script_refuses_bad_arguments(script, args, monkeypatch, capsys, tmp_path):
    monkeypatch.syspath_prepend(str(ROOT / "analysis"))
    module = importlib.import_module(script) if script.startswith("bench.") else load_script(script)
    monkeypatch.chdir(ROOT)
    out = ("--out", str(tmp_path / "out")) if script in ("selection", "async_demo") else ()
    monkeypatch.setattr(sys, "argv", [script, *args, *out])
    with pytest.raises(SystemExit) as stop:
        module.main()
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2 and CASES[script, args] in last, last
    assert not (tmp_path / "out").exists()


def test_an_output_that_is_not_a_run_is_never_overwritten(tmp_path, monkeypatch, capsys):
    """runs.run_setting read a foreign file at its output with a traceback."""
    monkeypatch.syspath_prepend(str(ROOT / "analysis"))
    runs = load_script("runs")
    foreign = tmp_path / "FedAvg" / "seed_0.h5"
    foreign.parent.mkdir()
    foreign.write_text("notes")
    with pytest.raises(SystemExit) as stop:
        runs.run_setting("FedAvg", "jobs/quickstart.toml", [], 0, 1, tmp_path)
    assert stop.value.code == 2 and "is not a result file" in capsys.readouterr().err
    assert foreign.read_text() == "notes"
