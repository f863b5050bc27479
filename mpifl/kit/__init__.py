"""The method kit: everything a federated learning method may use, and nothing else.

A method (one module in mpifl/methods/) imports from `mpifl.kit` only; the engine (the
driver in mpifl/engine/) imports the methods, never the other way round.

- the seam (kit.method): Method, ServerOnlyMethod, MethodContext, ClientTask,
  ClientResult, Metrics; kit.workload: Workload, RoundPlan, WholeModel (the work of a
  client training one whole model), footprint, virtual_times
- collectives a method may call through its context (kit.evaluate, kit.distill):
  Evaluator, EvalResult, Distiller
- exact sums (kit.accumulate): Accumulators; FedAvg's client step and server update
  (kit.aggregate: fedavg_client, stage_average, average_update); staleness weights (kit.staleness)
- local training (kit.training): sgd_epochs, loss_and_correct, client_accuracy, flat
  parameter views, the training precision; a group of clients as one batched
  computation (kit.batched: GroupModel, train_as_group, group_size for `train_group`);
  per-client state (kit.state_store); width tiers (kit.tiers)
- models, seeded initialisation, costs and slicing (re-exported from mpifl.models), the
  config field builders for a method's own [algorithm] keys, random streams, ConfigError
"""

from mpifl.config.fields import Field, choice, integer, number, positive_list, widths
from mpifl.errors import ConfigError
from mpifl.kit.accumulate import Accumulators
from mpifl.kit.aggregate import average_update, fedavg_client, stage_average
from mpifl.kit.distill import Distiller
from mpifl.kit.evaluate import EvalResult, Evaluator
from mpifl.kit.method import (
    ClientResult,
    ClientTask,
    Method,
    MethodContext,
    Metrics,
    ServerOnlyMethod,
)
from mpifl.kit.tiers import Tier, build_tiers, choose_tiers, tier_clients, tier_workload
from mpifl.kit.training import (
    client_accuracy,
    flatten,
    get_flat,
    load_flat,
    loss_and_correct,
    prepare_model,
    set_flat,
    sgd_epochs,
)
from mpifl.kit.workload import RoundPlan, WholeModel, Workload, footprint, virtual_times
from mpifl.models import (
    ModelCost,
    ModelSpec,
    build_model,
    check_buildable,
    load_initial_state,
    measure_cost,
    seeded_model,
)
from mpifl.models.cost import cost_of
from mpifl.models.mrl import MRLModel
from mpifl.models.slicing import SELECTIONS, SliceMap, layout, select_units
from mpifl.streams import Purpose, seeded_init, torch_generator

__all__ = [
    "SELECTIONS",
    "Accumulators",
    "ClientResult",
    "ClientTask",
    "ConfigError",
    "Distiller",
    "EvalResult",
    "Evaluator",
    "Field",
    "MRLModel",
    "Method",
    "MethodContext",
    "Metrics",
    "ModelCost",
    "ModelSpec",
    "Purpose",
    "RoundPlan",
    "ServerOnlyMethod",
    "SliceMap",
    "Tier",
    "WholeModel",
    "Workload",
    "average_update",
    "build_model",
    "build_tiers",
    "check_buildable",
    "choice",
    "choose_tiers",
    "client_accuracy",
    "cost_of",
    "fedavg_client",
    "flatten",
    "footprint",
    "get_flat",
    "integer",
    "layout",
    "load_flat",
    "load_initial_state",
    "loss_and_correct",
    "measure_cost",
    "number",
    "positive_list",
    "prepare_model",
    "seeded_init",
    "seeded_model",
    "select_units",
    "set_flat",
    "sgd_epochs",
    "stage_average",
    "tier_clients",
    "tier_workload",
    "torch_generator",
    "virtual_times",
    "widths",
]
