#!/usr/bin/env bash
# Create .venv (if missing) and install mpifl into it: torch==2.13.0 first (the CPU wheel),
# then MPI and the package. Idempotent: reinstalls only when setup.cfg changed.
# MPIFL_SYSTEM_MPI=1 builds mpi4py against the system MPI (mpicc on PATH) instead of the
# `mpich` PyPI wheel.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MPIFL_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "mpifl: creating $venv"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
stamp="$venv/.mpifl-installed"
want="$(cat "$root/setup.cfg" "$root/pyproject.toml" | sha1sum | cut -d' ' -f1) ${MPIFL_SYSTEM_MPI:-wheel}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "mpifl: installing torch==2.13.0, MPI and mpifl into $venv"
    "${pip[@]}" "torch==2.13.0"
    if [ -n "${MPIFL_SYSTEM_MPI:-}" ]; then
        "${pip[@]}" --no-binary mpi4py mpi4py
    else
        "${pip[@]}" mpich mpi4py
    fi
    "${pip[@]}" -e "$root[test]"
    echo "$want" > "$stamp"
fi
