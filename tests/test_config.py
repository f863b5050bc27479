"""Config loading, defaults, overrides and validation messages."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import tomllib

import pytest

from mpifl.config import apply_override, codegen
from mpifl.config.algorithms import ALGORITHMS
from mpifl.config.sections import AlgorithmConfig, RunConfig
from mpifl.errors import ConfigError, InputError
from mpifl.jobs import load_job, validate_job
from mpifl.methods import BUILT_IN, method_class
from tests.conftest import ROOT


def test_defaults_fill_every_section():
    cfg = validate_job({})
    assert cfg.run.rounds == 10
    assert cfg.algorithm.server_lr == 1.0
    assert set(cfg.fleet.classes) == {"mcu", "rpi", "phone", "jetson"}
    assert math.isinf(cfg.round.deadline)
    assert cfg.run.output == "results/run.h5"


def test_sections_are_typed_and_frozen():
    cfg = validate_job({"model": {"hidden": [32, 16]}, "algorithm": {"name": "koala"}})
    assert isinstance(cfg.run, RunConfig) and isinstance(cfg.algorithm, AlgorithmConfig)
    assert cfg.model.hidden == (32, 16)
    assert cfg.algorithm.large_hidden == (512, 256) and cfg.algorithm.mode == "homogeneous"
    assert cfg.fleet.classes["mcu"].flops == 2.0e8
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.run.rounds = 3
    with pytest.raises(AttributeError):
        cfg.algorithm.finetune_epochs  # noqa: B018  (a FedAvg key; this job runs KOALA)


def test_typed_sections_are_generated_from_the_schema():
    """sections.py is what `python -m mpifl.config.codegen` writes for the schema now."""
    assert codegen.TARGET.read_text() == codegen.generate()


def test_named_device_class_takes_catalogue_defaults():
    cfg = validate_job({"fleet": {"classes": {"mcu": {"weight": 1.0}}}})
    assert list(cfg.fleet.classes) == ["mcu"]
    assert cfg.fleet.classes["mcu"].flops == 2.0e8


def test_custom_device_class_needs_every_field():
    with pytest.raises(ConfigError, match=r"fleet\.classes\.sensor\.flops"):
        validate_job({"fleet": {"classes": {"sensor": {"weight": 1.0}}}})


@pytest.mark.parametrize(
    ("raw", "key", "text"),
    [
        ({"run": {"roundz": 3}}, "run.roundz", "did you mean 'rounds'"),
        ({"bogus": {}}, "bogus", "unknown key"),
        ({"run": {"rounds": "3"}}, "run.rounds", "must be of type int"),
        ({"run": {"rounds": 0}}, "run.rounds", "[1, "),
        ({"run": {"rounds": True}}, "run.rounds", "must be of type int"),
        ({"data": {"alpha": 0.0}}, "data.alpha", "finite number in (0, "),
        ({"data": {"partition": "zipf"}}, "data.partition", "'iid', 'dirichlet'"),
        ({"train": {"momentum": 1.0}}, "train.momentum", "[0, 1)"),
        ({"model": {"hidden": [64, 0]}}, "model.hidden", "positive"),
        ({"algorithm": {"name": "fedsgd"}}, "algorithm.name", "'fedavg'"),
        ({"round": {"cohort": 50}, "fleet": {"clients": 10}}, "round.cohort", "<= fleet.clients"),
        ({"data": {"name": "synthetic"}}, "model.arch", "'mlp'"),
        ({"model": {"norm": "group", "groups": 3}}, "model.groups", "divide"),
        ({"fleet": {"classes": {"mcu": {"availability": 1.5}}}}, "availability", "[0, 1]"),
    ],
)
def test_errors_name_key_value_and_rule(raw, key, text):
    with pytest.raises(ConfigError) as info:
        validate_job(raw)
    message = str(info.value)
    assert key in message and text in message
    assert "\n" not in message


def test_method_specific_keys_are_checked():
    with pytest.raises(ConfigError, match="algorithm.server_lr"):
        validate_job({"algorithm": {"server_lr": -1.0}})


def test_override_parses_toml_values_and_bare_strings():
    raw: dict = {}
    apply_override(raw, "run.rounds=5")
    apply_override(raw, "data.partition=iid")
    apply_override(raw, "model.hidden=[32, 16]")
    assert raw == {
        "run": {"rounds": 5},
        "data": {"partition": "iid"},
        "model": {"hidden": [32, 16]},
    }


@pytest.mark.parametrize("bad", ["run.rounds", "=3", "run..rounds=3"])
def test_malformed_override(bad):
    with pytest.raises(InputError, match="KEY=VALUE"):
        apply_override({}, bad)


def test_resolved_config_round_trips_through_toml(tmp_path):
    job = tmp_path / "j.toml"
    job.write_text('[run]\nname = "x"\nrounds = 2\n')
    cfg = load_job(job, ["train.lr=0.2"])
    again = validate_job(tomllib.loads(cfg.to_toml()))
    assert again == cfg and again.as_dict() == cfg.as_dict()
    assert cfg.run.output == "results/x.h5"
    assert cfg.train.lr == 0.2


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_job(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nrounds = 3")
    with pytest.raises(InputError, match="not valid TOML"):
        load_job(bad)


@pytest.mark.parametrize("job", sorted((ROOT / "jobs").glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_job_is_valid(job):
    cfg = load_job(job)
    assert cfg.run.rounds >= 1


READ_WITHOUT_TORCH = """
import contextlib, io, sys
from pathlib import Path
from mpifl.cli import main
from mpifl.config.algorithms import ALGORITHMS
sweep = Path(sys.argv[1], "sweep.toml")
sweep.write_text(f'job = "jobs/quickstart.toml"\\nseeds = [0, 1]\\nfolder = "{sweep.parent}"\\n')
commands = []
for name in ALGORITHMS:
    job = sweep.with_name(f"{name}.toml")
    job.write_text(f'[algorithm]\\nname = "{name}"\\n')
    commands.append(["validate", str(job)])
commands += [["submit", "jobs/quickstart.toml", "--dry-run"], ["sweep", "status", str(sweep)]]
for args in commands:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(args) == 0, args
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("mpifl.methods.")))
"""


def test_reading_checking_and_submitting_a_job_import_no_torch(tmp_path):
    """validate, submit and sweep status read jobs on a login node: torch takes seconds to
    import there; each built-in method's [algorithm] keys are read without it."""
    proc = subprocess.run([sys.executable, "-c", READ_WITHOUT_TORCH, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[]"], proc.stdout


def test_each_built_in_method_takes_its_keys_from_the_registry():
    assert BUILT_IN.keys() == ALGORITHMS.keys()
    for name, module_class in BUILT_IN.items():
        cls = method_class(name)
        assert cls.name == name and f"{cls.__module__}:{cls.__name__}".endswith(module_class)
        assert cls.fields == ALGORITHMS[name], name
