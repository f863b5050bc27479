"""`mpifl completion bash`: the script completes subcommands and options in a real bash."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import mpifl

CASES = {
    ("sw",): "sweep",
    ("sweep", ""): "run status submit",
    ("run", "job.toml", "--o"): "--output --overwrite",
    ("report", "x.h5", "--p"): "--per-run --plot",
    ("sweep", "submit", "s.toml", "--thr"): "--throttle",
}


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completes_subcommands_and_options(tmp_path):
    proc = mpifl("completion", "bash")
    assert proc.returncode == 0, proc.stderr
    script = tmp_path / "mpifl.bash"
    script.write_text(proc.stdout)
    (tmp_path / "my job.toml").write_text("")
    cases = {words: expected.split() for words, expected in CASES.items()}
    cases["run", "my"] = ["my job.toml"]  # a file name with a space: one word
    for words, expected in cases.items():
        line = " ".join(f"'{w}'" for w in ("mpifl", *words))
        code = (f"set -u; source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words)}; "
                '_mpifl; printf "%s|" "${COMPREPLY[@]}"')  # fmt: skip
        out = subprocess.run(["bash", "-c", code], capture_output=True, text=True, timeout=30,
                             cwd=tmp_path)  # fmt: skip
        assert out.stdout == "".join(f"{w}|" for w in expected), (words, out)
        assert not out.stderr, (words, out)
