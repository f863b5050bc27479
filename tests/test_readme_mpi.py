"""What the README shows a newcomer is what a fresh run prints: the quick start's summary,
run for real on 2 ranks (only the wall time and the result path may differ)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT, run_ok

pytestmark = pytest.mark.mpi


def normalised(text: str) -> list[str]:
    """The summary's lines, with the wall time and the result file's path blanked."""
    text = re.sub(r"\d+\.\d s wall", "WALL s wall", text)
    text = re.sub(r"(  results +)\S+", r"\1PATH", text)
    return [line.rstrip() for line in text.strip().splitlines()]


def test_the_readme_quick_start_output_is_what_the_quick_start_prints(tmp_path):
    readme = (ROOT / "README.md").read_text()
    shown = readme.split("It\nwrites `results/quickstart-<time>.h5` and ends with:\n\n```\n")[1]
    shown = shown.split("```")[0]
    proc = run_ok(ROOT / "jobs" / "quickstart.toml", tmp_path / "quickstart.h5")
    printed = proc.stdout[proc.stdout.index("mpifl run 'quickstart' complete") :]
    assert normalised(printed) == normalised(shown)
