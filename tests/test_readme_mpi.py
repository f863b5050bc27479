"""What the README shows a newcomer is what a fresh run prints: the quick start's summary,
run for real on 2 ranks (only the wall time and the result path may differ)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT, run_ok

pytestmark = pytest.mark.mpi


ACCURACY = re.compile(r"(accuracy +)([0-9.]+)( \(round )(\d+)(\) +best )([0-9.]+)( \(round )(\d+)")


def normalised(text: str) -> list[str]:
    """The summary's lines, with the wall time, the result file's path and the accuracy
    figures blanked (another CPU's kernels may round the last bits of training
    differently; `accuracies` compares those within a tolerance)."""
    text = re.sub(r"\d+\.\d s wall", "WALL s wall", text)
    text = re.sub(r"(  results +)\S+", r"\1PATH", text)
    text = ACCURACY.sub(r"\1X\3R\5X\7R", text)
    return [line.rstrip() for line in text.strip().splitlines()]


def accuracies(text: str) -> list[float]:
    """The final and best accuracies the summary prints."""
    return [float(m.group(k)) for m in ACCURACY.finditer(text) for k in (2, 6)]


def test_the_readme_quick_start_output_is_what_the_quick_start_prints(tmp_path):
    readme = (ROOT / "README.md").read_text()
    shown = readme.split("It\nwrites `results/quickstart-<time>.h5` and ends with:\n\n```\n")[1]
    shown = shown.split("```")[0]
    proc = run_ok(ROOT / "jobs" / "quickstart.toml", tmp_path / "quickstart.h5")
    printed = proc.stdout[proc.stdout.index("mpifl run 'quickstart' complete") :]
    assert normalised(printed) == normalised(shown)
    ours, theirs = accuracies(printed), accuracies(shown)
    assert len(ours) == len(theirs) == 4
    assert all(abs(a - b) <= 0.01 for a, b in zip(ours, theirs, strict=True)), (ours, theirs)
