#!/usr/bin/env bash
# Run any job locally under mpiexec with the project's environment:
#   bash launch/run.sh RANKS JOB.toml [mpifl run options...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 2 ]; then
    echo "usage: bash launch/run.sh RANKS JOB.toml [--set KEY=VALUE ...] [--overwrite]" >&2
    exit 2
fi
ranks="$1"; job="$2"; shift 2
export PATH="${MPIFL_VENV:-$root/.venv}/bin:$PATH"
exec mpiexec -n "$ranks" mpifl run "$job" "$@"
