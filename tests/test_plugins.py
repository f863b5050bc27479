"""User plugins (a model, a data set, a method): loading, validation errors, costs, and
the examples/ folder run under mpiexec."""

from __future__ import annotations

import re
from dataclasses import replace
from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch
from torch import nn

from mpifl import plugins
from mpifl.config.sections import DataConfig
from mpifl.data import build_dataset
from mpifl.errors import ConfigError, InputError
from mpifl.jobs import validate_job
from mpifl.kit.batched import ClientTrainer
from mpifl.methods import method_class, plugin_method
from mpifl.models import ModelSpec, build_model, check_buildable, measure_cost
from mpifl.results import read_run
from tests.conftest import ROOT, mpifl, plugin_module

PLUGIN = """
import numpy as np
from torch import nn
from mpifl.kit import Method, integer


def mlp(input_shape, n_classes, width):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), 8), nn.ReLU(),
                         nn.Linear(8, n_classes))


def normed(input_shape, n_classes, width):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), 8),
                         nn.BatchNorm1d(8), nn.Linear(8, n_classes))


def broken(input_shape, n_classes, width):
    raise RuntimeError("no such layer")


def two_classes(input_shape, n_classes, width):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), 2))


def ragged(seed):
    labels = np.zeros(5, dtype=np.int64)
    return [(np.zeros((5, 3)), labels), (np.zeros((5, 4)), labels)]


def not_a_module(input_shape, n_classes, width):
    return "a model"


def pooled(seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((300, 5)), rng.integers(0, 3, 300)


def writers(seed):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((20, 5)), rng.integers(0, 3, 20)) for _ in range(12)]


def wrong_shape(seed):
    return {"x": np.zeros((10, 5))}


def float_labels(seed):
    return np.zeros((10, 5)), np.zeros(10)


NOT_CALLABLE = 3


class Half(Method):
    fields = {"k": integer(1, 1)}

    def workload(self, clients, round_):
        raise NotImplementedError


class Named(Half):
    fields = {"name": integer(1, 1)}
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A module `userplug` importable from the working directory (tmp_path)."""
    yield from plugin_module(tmp_path, monkeypatch, "userplug", PLUGIN)


def spec(arch: str) -> ModelSpec:
    return ModelSpec(arch, (2, 3), 3)


@pytest.mark.parametrize(
    ("ref", "needle"),
    [
        ("userplug", "must be 'package.module:attribute'"),
        ("userplug:1x", "must be 'package.module:attribute'"),
        ("nosuchmodule:f", "no module 'nosuchmodule'"),
        ("userplug:missing", "has no 'missing'"),
    ],
)
def test_a_bad_reference_names_its_problem(plugin, ref, needle):
    with pytest.raises(ConfigError, match=needle) as err:
        plugins.load_plugin("model.arch", ref)
    assert str(err.value).startswith("config error: model.arch = ")


def test_a_module_that_fails_to_import_is_reported(plugin, tmp_path):
    (tmp_path / "badplug.py").write_text("import nosuchdependency\n")
    with pytest.raises(ConfigError, match="importing badplug failed: ModuleNotFoundError"):
        plugins.load_plugin("model.arch", "badplug:f")
    (tmp_path / "bad_cnn.py").write_text("import bad\n")  # its name starts with the missing one
    with pytest.raises(ConfigError, match="importing bad_cnn failed: ModuleNotFoundError"):
        plugins.load_plugin("model.arch", "bad_cnn:f")


def test_a_plugin_model_is_built_and_costed_like_a_built_in(plugin):
    model = build_model(spec("userplug:mlp"))
    assert isinstance(model, nn.Sequential) and check_buildable(spec("userplug:mlp")) == 83
    ours = measure_cost(spec("userplug:mlp"))  # FlopCounterMode for plugins
    same = measure_cost(ModelSpec("mlp", (2, 3), 3, hidden=(8,)))  # hooks for built-ins
    assert ours.train_flops_per_sample == same.train_flops_per_sample > 0
    assert ours.params == same.params and ours.param_bytes == same.param_bytes


@pytest.mark.parametrize(
    ("factory", "needle"),
    [
        ("broken", "the factory failed: RuntimeError: no such layer"),
        ("not_a_module", "returned str, not a torch.nn.Module"),
        ("NOT_CALLABLE", "must name a function"),
        ("two_classes", "logits of shape (1, 3) for the data's 3 classes; it gives (1, 2)"),
    ],
)
def test_a_bad_model_factory_is_a_config_error(plugin, factory, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        check_buildable(spec(f"userplug:{factory}"))


def test_a_plugin_model_of_mpifls_layers_trains_batched_and_others_one_by_one(plugin):
    train = validate_job({}).train
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert ClientTrainer(build_model(spec("userplug:mlp")), train, (2, 3)).batched
        assert not ClientTrainer(build_model(spec("userplug:normed")), train, (2, 3)).batched
    finally:
        torch.set_num_threads(threads)


def data_config(factory: str, **kw: object) -> DataConfig:
    data = validate_job({"data": {"name": "python", "factory": factory}}).data
    return replace(data, partition="iid", **kw)


def test_plugin_data_pooled_or_natural(plugin):
    pooled = build_dataset(data_config("userplug:pooled"), 10, 0)
    assert pooled.n_clients == 10 and pooled.input_shape == (5,) and pooled.n_classes == 3
    natural = build_dataset(data_config("userplug:writers", proxy_fraction=0.0), 0, 0)
    assert natural.n_clients == 12 - 2  # 20% of the writers are the global test set
    with pytest.raises(ConfigError, match="fleet.clients"):
        build_dataset(data_config("userplug:writers", proxy_fraction=0.0), 5, 0)
    with pytest.raises(InputError, match="inputs of different shapes"):
        build_dataset(data_config("userplug:ragged", proxy_fraction=0.0), 0, 0)
    with pytest.raises(InputError, match="labels must be a 1-D array of integers"):
        build_dataset(data_config("userplug:float_labels"), 2, 0)
    with pytest.raises(ConfigError, match="must return"):
        build_dataset(data_config("userplug:wrong_shape"), 2, 0)
    with pytest.raises(ConfigError, match="must name a function"):
        build_dataset(data_config("userplug:NOT_CALLABLE"), 2, 0)


def test_plugin_methods_are_checked(plugin):
    with pytest.raises(ConfigError, match="subclass of mpifl.kit.Method"):
        method_class("userplug:mlp")
    with pytest.raises(ConfigError, match="does not implement accumulator_sizes, client_finish"):
        method_class("userplug:Half")
    with pytest.raises(ConfigError, match="may not be named 'name'"):
        method_class("userplug:Named")
    with pytest.raises(ConfigError, match="or a plugin 'package.module:Class'"):
        method_class("fedsgd")


def test_an_installed_method_is_found_by_its_entry_point(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    entry = EntryPoint("clippedfedavg", "examples.clipping:ClippedFedAvg", plugins.ENTRY_POINTS)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [entry])
    plugin_method.cache_clear()
    try:
        assert method_class("clippedfedavg").__name__ == "ClippedFedAvg"
    finally:
        plugin_method.cache_clear()


BAD = {
    "missing module": (["algorithm.name='nosuch.module:Method'"], "algorithm.name"),
    "missing hook": (["algorithm.name='userplug:Half'"], "does not implement"),
    "factory without data.name": (["data.factory='userplug:pooled'"], "data.factory"),
    "wrong type of model": (["model.arch='userplug:not_a_module'"], "not a torch.nn.Module"),
    "plugin model with sub-models": (
        ["model.arch='userplug:mlp'", "algorithm.name='submodel'"],
        "builds its model variants",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_plugins_exit_2_with_one_line_and_write_nothing(plugin, tmp_path, small_job, case):
    sets, needle = BAD[case]
    out = tmp_path / "bad.h5"
    args = [a for s in sets for a in ("--set", s)]
    proc = mpifl("run", str(small_job), "--output", str(out), *args, cwd=tmp_path)
    message = proc.stderr.strip()
    assert proc.returncode == 2 and needle in message and "\n" not in message, message
    assert not out.exists()


def test_the_examples_run_under_mpiexec(tmp_path):
    """examples/sensors.toml: a data, a model and a method plugin together, 2 ranks."""
    out = tmp_path / "sensors.h5"
    proc = mpifl(
        "run", "examples/sensors.toml", "--output", str(out), "--set", "run.rounds=6", ranks=2
    )
    assert proc.returncode == 0, proc.stderr
    run = read_run(out)
    assert run.attrs["algorithm"] == "examples.clipping:ClippedFedAvg"
    part = run.tables["participation"]
    trained = part[part["status"] == "trained"]
    assert len(trained) > 0 and (trained["flops"] > 0).all()  # the plugin model is costed
    assert set(run.tables["server"]["name"]) == {"clipped_fraction"}
    assert (run.tables["server"]["value"] > 0).any()  # the clip bites
    scale = trained["clip_scale"]  # the plugin's client metric
    assert ((scale > 0) & (scale <= 1)).all() and (scale < 1).any()
    headline = run.tables["eval"].query("group == 'global'")["accuracy"].to_numpy()
    assert headline[-1] > 0.4  # four activities: chance is about 0.25
    assert np.isfinite(run.tables["rounds"]["virtual_time"]).all()
