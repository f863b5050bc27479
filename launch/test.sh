#!/usr/bin/env bash
# Set up (if needed), lint, and run the whole test suite (multi-rank tests use mpiexec).
# Extra arguments go to pytest, e.g. bash launch/test.sh -k config (-n 0: in one process).
# Tests run in MPIFL_TEST_WORKERS pytest workers (2: about 17 minutes on 2 cores;
# half of the CPU time is the torch import of each process the suite launches).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/launch/setup_env.sh"
export PATH="${MPIFL_VENV:-$root/.venv}/bin:$PATH"
cd "$root"
ruff check .
ruff format --check .
# Bytecode once, read by the ~450 Python processes the suite launches (where
# PYTHONDONTWRITEBYTECODE is set, each would compile mpifl again: 0.3 s of CPU apiece).
python -m compileall -q mpifl tests bench analysis
python -m pytest tests -n "${MPIFL_TEST_WORKERS:-2}" --dist worksteal "$@"
