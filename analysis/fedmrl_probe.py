"""A setting check of the FedMRL study: how good are the features FedMRL's shared model G
learns, against those of FedAvg's global model, on the same clients?

    python analysis/fedmrl_probe.py [results/study] [--out docs/study/fedmrl_probes.csv] [--all]

For every seed of every FedMRL setting where both the `fedmrl` and the `fedavg-ft` run are
complete, it reads the final global weights of each (FedMRL's G; FedAvg's CNN before
fine-tuning), rebuilds the seed's client data from the run's job, and fits a linear probe
(standardised features, multinomial logistic regression) on frozen features of every
client's training split, scored on every client's test split: how well the shared
features separate the digits. Features: G's representation (d1 outputs) and G's hidden
layer (global_fc, after its ReLU), FedAvg's hidden layer (fc, after its ReLU). It also
scores FedAvg's final global model as it is (no fine-tuning) on each client's test split
(client mean). One CSV row per (setting, seed, features); seeds already in --out are kept
(--all probes them again), so it can run after every sitting; docs/study.md shows the
means (analysis/study_report.py).
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from mpifl.arguments import refuse_any
from mpifl.data import build_dataset
from mpifl.data.federated import FederatedData
from mpifl.jobs import load_job
from mpifl.kit.training import load_flat, loss_and_correct
from mpifl.models.build import build_model
from mpifl.models.mrl import MRLModel
from mpifl.models.spec import spec_from_config
from mpifl.results import read_run
from mpifl.results.opening import read_attrs

FIELDS = ("setting", "seed", "features", "dims", "pooled_probe", "as_is")
Features = Callable[[torch.Tensor], torch.Tensor]


def pooled_probe(data: FederatedData, features: Features) -> float:
    """A linear probe's accuracy on every client's test split, fitted on every client's
    training split."""

    def frozen(splits: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[np.ndarray, ...]:
        with torch.no_grad():
            pairs = [(features(x).numpy(), y.numpy()) for x, y in splits]
        return np.concatenate([f for f, _ in pairs]), np.concatenate([y for _, y in pairs])

    train = frozen([data.client_train(k) for k in range(data.n_clients)])
    test = frozen([data.client_test(k) for k in range(data.n_clients)])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    return float(model.fit(*train).score(*test))


def client_mean(data: FederatedData, model: nn.Module) -> float:
    """The model's accuracy on each client's own test split, averaged over clients."""
    with torch.no_grad():
        accs = [loss_and_correct(model, x, y)[1] / len(y)
                for x, y in map(data.client_test, range(data.n_clients)) if len(y)]  # fmt: skip
    return float(np.mean(accs))


def final_weights(path: Path) -> torch.Tensor:
    """A complete run's final global weights (/final_state/weights)."""
    with h5py.File(path, "r") as f:
        return torch.from_numpy(f["final_state/weights"][()])


def rows(setting: Path, seed: int) -> list[dict[str, object]]:
    """The probe rows of one seed of one FedMRL setting."""
    runs = {m: setting / m / f"seed_{seed}" / "task_0.h5" for m in ("fedmrl", "fedavg-ft")}
    cfg = load_job(runs["fedmrl"].with_suffix(".toml"))
    data = build_dataset(cfg.data, cfg.fleet.clients, cfg.run.seed)
    fleet = read_run(runs["fedmrl"]).tables["fleet"]
    assert (fleet["n_train"].to_numpy() == data.n_train).all(), f"{setting}: not the run's data"
    spec = spec_from_config(cfg.model, data.input_shape, data.n_classes)
    alg = cfg.algorithm
    mrl = MRLModel(spec, alg.global_fc, alg.local_fc[0], alg.mrl_dims).eval()
    load_flat(mrl.global_parameters(), final_weights(runs["fedmrl"]))
    cnn = build_model(spec).eval()
    load_flat(list(cnn.parameters()), final_weights(runs["fedavg-ft"]))
    as_is = client_mean(data, cnn)
    out = []
    for name, features, dims in (
        ("FedMRL G, representation", mrl.global_ex, alg.mrl_dims[0]),
        ("FedMRL G, hidden layer", mrl.global_ex[:-1], alg.global_fc),
        ("FedAvg CNN, hidden layer", cnn[:-1], cnn[-1].in_features),
    ):
        out.append({"setting": setting.name, "seed": seed, "features": name, "dims": dims,
                    "pooled_probe": round(pooled_probe(data, features), 4),
                    "as_is": round(as_is, 4) if name.startswith("FedAvg") else ""})  # fmt: skip
    return out


def complete(path: Path) -> bool:
    """Whether `path` holds a complete run (one that cannot be read does not)."""
    try:
        return read_attrs(path).get("status") == "complete"
    except OSError:  # (absent, being written, or not a result file)
        return False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", default="results/study")
    p.add_argument("--out", default="docs/study/fedmrl_probes.csv")
    p.add_argument("--all", action="store_true", help="probe again the seeds already in --out")
    args = p.parse_args()
    runs, out = Path(args.results, "fedmrl"), Path(args.out)
    header = ",".join(FIELDS)
    first = out.read_text(errors="replace").splitlines()[:1] if out.is_file() else [header]
    foreign = first not in ([header], [])  # (an empty file is no one's table)
    problems = {f"no FedMRL study runs in {runs}": not runs.is_dir(),
                f"no folder {out.parent} for --out": not out.parent.is_dir(),
                f"--out {out} is a folder": out.is_dir(),
                f"--out {out} is not a probe table (its first line is not {header}): it is "
                "never overwritten": foreign}  # fmt: skip
    refuse_any(problems, "fedmrl_probe")
    torch.set_num_threads(1)
    found = []
    if out.exists() and not args.all:
        with open(out, newline="") as f:
            found = list(csv.DictReader(f))
    done = {(r["setting"], int(r["seed"])) for r in found}
    for setting in sorted(runs.iterdir()):
        for seed_dir in sorted((setting / "fedmrl").glob("seed_*")):
            seed = int(seed_dir.name.removeprefix("seed_"))
            both = [setting / m / seed_dir.name / "task_0.h5" for m in ("fedmrl", "fedavg-ft")]
            if (setting.name, seed) not in done and all(map(complete, both)):
                found += rows(setting, seed)
                print(f"{setting.name} seed {seed}: probed", flush=True)
    found.sort(key=lambda r: (r["setting"], int(r["seed"])))  # (stable: features in order)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(found)
    print(f"wrote {out} ({len(found)} rows)")


if __name__ == "__main__":
    main()
