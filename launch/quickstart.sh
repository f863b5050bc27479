#!/usr/bin/env bash
# Set up (if needed) and run the quick start: FedAvg on digits over a mixed IoT fleet,
# 2 MPI ranks. Writes a new result file each time and prints the summary.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/launch/setup_env.sh"
export PATH="${MPIFL_VENV:-$root/.venv}/bin:$PATH"
cd "$root"
out="results/quickstart-$(date +%Y%m%d-%H%M%S).h5"
mpiexec -n "${RANKS:-2}" mpifl run jobs/quickstart.toml --output "$out"
