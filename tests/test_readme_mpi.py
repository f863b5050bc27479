"""What the README shows a newcomer is what a fresh run prints: the quick start's summary,
run for real on 2 ranks (only the wall time and the result path may differ)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, env

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


def test_the_readme_quick_start_output_is_what_the_quick_start_prints(quickstart_run):
    readme = (ROOT / "README.md").read_text()
    shown = readme.split("It\nwrites `results/quickstart-<time>.h5` and ends with:\n\n```\n")[1]
    shown = shown.split("```")[0]
    stdout = quickstart_run[1]
    printed = stdout[stdout.index("mpifl run 'quickstart' complete") :]
    assert normalised(printed) == normalised(shown)
    ours, theirs = accuracies(printed), accuracies(shown)
    assert len(ours) == len(theirs) == 4
    assert all(abs(a - b) <= 0.01 for a, b in zip(ours, theirs, strict=True)), (ours, theirs)


def _blocks(readme: str, language: str) -> list[str]:
    """The README's fenced code blocks of one language."""
    parts = readme.split(f"```{language}\n")[1:]
    return [p.split("```")[0] for p in parts]


def test_the_readme_python_examples_run_on_a_quick_start(quickstart_run, tmp_path):
    """ "Reading results" reads what the quick start writes, as written."""
    readme = (ROOT / "README.md").read_text()
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(quickstart_run[0], results / "quickstart-20261206-120000.h5")
    blocks = _blocks(readme, "python")
    assert len(blocks) >= 2
    for code in blocks:
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, env=env())  # fmt: skip
        assert proc.returncode == 0 and "complete" in proc.stdout, (code, proc.stderr)


def test_every_readme_command_parses():
    """Each `mpifl ...` line of the README's bash blocks is a command the parser takes
    (flags that no longer exist would fail here)."""
    from mpifl.cli import parser

    readme = (ROOT / "README.md").read_text()
    commands = []
    for block in _blocks(readme, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.split(" #")[0])
            if "mpifl" in words and words[0] in ("mpifl", "mpiexec", "srun"):
                commands.append(words[words.index("mpifl") + 1 :])
    assert len(commands) >= 10
    for args in commands:
        try:
            parser().parse_args(args)
        except SystemExit as exc:
            raise AssertionError(f"the README's `mpifl {shlex.join(args)}` does not parse") from exc
