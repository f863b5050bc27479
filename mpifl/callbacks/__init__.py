"""Callbacks on the round loop, configured in [callbacks]: early stopping, a CSV log,
TensorBoard event files, and the user's own (plugins, docs/plugins.md). They run on rank
0; a stop one asks for is agreed by every rank (mpifl.engine.loop)."""

from __future__ import annotations

import math
from pathlib import Path

from mpifl.callbacks.base import HOOKS, Callback, CallbackList, Metrics, RunInfo
from mpifl.callbacks.csv_log import CsvLog
from mpifl.callbacks.early_stopping import EarlyStopping
from mpifl.config import Config
from mpifl.errors import ConfigError, describe
from mpifl.plugins import load_plugin


def build_callbacks(cfg: Config, output: Path) -> CallbackList:
    """The callbacks [callbacks] turns on, for a run writing `output`; ConfigError if a
    plugin cannot be loaded or is not a callback."""
    settings = cfg.callbacks
    out: list[Callback] = []
    if settings.csv.enabled:
        out.append(CsvLog(Path(settings.csv.path or output.with_suffix(".csv"))))
    if settings.tensorboard.enabled:
        from mpifl.callbacks.tensorboard import TensorBoardLog

        out.append(TensorBoardLog(Path(settings.tensorboard.logdir or output.with_suffix(".tb"))))
    stopping = settings.early_stopping
    if math.isfinite(stopping.target) or stopping.patience:
        out.append(EarlyStopping(stopping))
    out += [plugin_callback(ref) for ref in settings.plugins]
    return CallbackList(out)


def plugin_callback(ref: str) -> Callback:
    """A user's callback: the class `ref` names, created with no arguments."""
    key = "callbacks.plugins"
    found = load_plugin(key, ref)
    if not callable(found):
        raise ConfigError(key, ref, "must name a callback class")
    try:
        callback = found()
    except Exception as exc:  # noqa: BLE001  (the user's class: any failure is theirs)
        raise ConfigError(key, ref, f"creating it failed: {describe(exc)}") from None
    missing = [hook for hook in HOOKS if not callable(getattr(callback, hook, None))]
    if missing:
        raise ConfigError(
            key, ref,
            f"a callback needs {', '.join(HOOKS)}; it lacks {', '.join(missing)} "
            "(subclass mpifl.callbacks.Callback, docs/plugins.md)",
        )  # fmt: skip
    return callback


__all__ = ["Callback", "CallbackList", "Metrics", "RunInfo", "build_callbacks"]
