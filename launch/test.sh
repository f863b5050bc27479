#!/usr/bin/env bash
# Set up (if needed), lint, and run the whole test suite (multi-rank tests use mpiexec).
# Extra arguments go to pytest, e.g. bash launch/test.sh -k config
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/launch/setup_env.sh"
export PATH="${MPIFL_VENV:-$root/.venv}/bin:$PATH"
cd "$root"
ruff check .
ruff format --check .
python -m pytest tests "$@"
