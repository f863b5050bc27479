"""Run the method comparison study: every method on one heterogeneous fleet, over digits
and synthetic data, several seeds; locally with mpiexec (default) or as SLURM job arrays.

    python analysis/study.py [--ranks 2] [--seeds 0 1 2] [--only digits] [--slurm ...]
    python analysis/study_report.py results/study     # tables and figures

Each (data set, method) is a sweep (folder results/study/<data>-<method>/, one task per
seed); finished tasks are skipped, so an interrupted study picks up where it stopped.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import tomli_w

from mpifl.hpc.sweep import load_sweep, status, write_tasks

DATASETS = {"digits": "jobs/study_digits.toml", "synthetic": "jobs/study_synthetic.toml"}
METHODS: dict[str, dict[str, list]] = {
    "fedavg": {"algorithm.name": ["fedavg"]},
    "submodel-prefix": {"algorithm.name": ["submodel"], "algorithm.selection": ["prefix"]},
    "submodel-rolling": {"algorithm.name": ["submodel"], "algorithm.selection": ["rolling"]},
    "submodel-magnitude": {"algorithm.name": ["submodel"], "algorithm.selection": ["magnitude"]},
    "reft": {"algorithm.name": ["reft"]},
    "koala-homo": {"algorithm.name": ["koala"], "algorithm.mode": ["homogeneous"],
                   "model.width": [0.5]},  # the small model: half the configured width
    "koala-hetero": {"algorithm.name": ["koala"], "algorithm.mode": ["heterogeneous"]},
    "fedmrl": {"algorithm.name": ["fedmrl"]},
}  # fmt: skip
ROOT = Path("results/study")


def sweep_file(data: str, method: str, seeds: list[int]) -> Path:
    """Write the sweep file of one (data set, method)."""
    folder = ROOT / f"{data}-{method}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.toml"
    spec = {"job": DATASETS[data], "name": f"{data}-{method}", "folder": str(folder),
            "seeds": seeds, "grid": METHODS[method]}  # fmt: skip
    path.write_text(tomli_w.dumps(spec))
    return path


def run_local(path: Path, ranks: int) -> None:
    sweep = load_sweep(path)
    write_tasks(sweep)
    for i, state in status(sweep):
        if state == "done":
            continue
        print(f"{sweep.name} task {i} ...", flush=True)
        cmd = ["mpiexec", "-n", str(ranks), sys.executable, "-m", "mpifl", "run",
               str(sweep.task_job(i)), "--overwrite"]  # fmt: skip
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--only", choices=tuple(DATASETS))
    p.add_argument("--methods", nargs="+", choices=tuple(METHODS), default=list(METHODS))
    p.add_argument("--slurm", action="store_true", help="submit each sweep as a job array")
    p.add_argument("--time", default="01:00:00")
    p.add_argument("--partition", default="")
    args = p.parse_args()
    for data in [args.only] if args.only else DATASETS:
        for method in args.methods:
            path = sweep_file(data, method, args.seeds)
            if args.slurm:
                cmd = [sys.executable, "-m", "mpifl", "sweep", "submit", str(path),
                       "--ntasks-per-node", str(args.ranks), "--time", args.time]  # fmt: skip
                if args.partition:
                    cmd += ["--partition", args.partition]
                subprocess.run(cmd, check=True)
            else:
                run_local(path, args.ranks)


if __name__ == "__main__":
    main()
