#!/usr/bin/env bash
# Run a benchmark: bash launch/bench.sh w1|w2|w3|w4|w5 [options] (--smoke: a tiny run)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${1:-}" in
    w1|w2|w3|w4|w5) name="$1"; shift ;;
    *) echo "usage: bash launch/bench.sh w1|w2|w3|w4|w5 [options]" >&2; exit 2 ;;
esac
bash "$root/launch/setup_env.sh"
export PATH="${MPIFL_VENV:-$root/.venv}/bin:$PATH"
cd "$root"
exec python -m "bench.$name" "$@"
