"""The method kit: everything a federated learning method may use, and nothing else.

A method (one module in mpifl/methods/) imports from `mpifl.kit` only; the engine (the
driver in mpifl/engine/) imports the methods, never the other way round.

- the seam (kit.method): Method, ServerOnlyMethod, MethodContext, ClientTask,
  ClientResult, Metrics; kit.workload: Workload, RoundPlan, WholeModel (the work of a
  client training one whole model), footprint, virtual_times
- collectives a method may call through its context (kit.evaluate, kit.distill):
  Evaluator, EvalResult, Distiller
- exact sums (kit.accumulate): Accumulators; FedAvg's contributions and server update
  (kit.aggregate: stage_average, average_update); staleness weights (kit.staleness)
- the one client path (kit.batched): ClientTrainer (how a method's clients train, alone
  or in the planner's groups, with the same result), group_size; local training
  (kit.training): sgd_epochs (a model alone), sgd_update (the one SGD step),
  loss_and_correct, client_accuracies, flat parameter views, the training precision;
  per-client state (kit.state_store); width tiers (kit.tiers)
- models, seeded initialisation, costs and slicing (re-exported from mpifl.models), the
  config field builders for a method's own [algorithm] keys, each built-in method's keys
  (kit.algorithms: mpifl.config.algorithms, e.g. `{**algorithms.FEDAVG, ...}`; SELECTIONS,
  SubModel's unit selections), random streams, ConfigError
"""

from mpifl.config import algorithms
from mpifl.config.algorithms import SELECTIONS
from mpifl.config.fields import Field, choice, integer, number, positive_list, widths
from mpifl.errors import ConfigError
from mpifl.kit.accumulate import Accumulators
from mpifl.kit.aggregate import average_update, stage_average
from mpifl.kit.batched import ClientTrainer, group_size
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
    client_accuracies,
    flatten,
    get_flat,
    load_flat,
    loss_and_correct,
    prepare_model,
    sample_cross_entropy,
    set_flat,
    sgd_epochs,
    sgd_update,
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
from mpifl.models.mrl import MRLModel, standalone_model
from mpifl.models.slicing import SliceMap, layout, select_units
from mpifl.streams import Purpose, random_subset, seeded_init, torch_generator

__all__ = [
    "SELECTIONS",
    "Accumulators",
    "ClientResult",
    "ClientTrainer",
    "ClientTask",
    "ConfigError",
    "Distiller",
    "EvalResult",
    "Evaluator",
    "Field",
    "MRLModel",
    "standalone_model",
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
    "algorithms",
    "average_update",
    "build_model",
    "build_tiers",
    "check_buildable",
    "choice",
    "choose_tiers",
    "client_accuracies",
    "cost_of",
    "flatten",
    "footprint",
    "get_flat",
    "group_size",
    "integer",
    "layout",
    "load_flat",
    "load_initial_state",
    "loss_and_correct",
    "measure_cost",
    "number",
    "positive_list",
    "prepare_model",
    "random_subset",
    "seeded_init",
    "seeded_model",
    "sample_cross_entropy",
    "select_units",
    "set_flat",
    "sgd_epochs",
    "sgd_update",
    "stage_average",
    "tier_clients",
    "tier_workload",
    "torch_generator",
    "virtual_times",
    "widths",
]
