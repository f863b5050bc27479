"""The [algorithm] keys of each built-in method (docs/methods.md), next to the schema
rather than in the methods' modules so that reading or checking a job never imports torch
(`mpifl validate`, `submit`, `sweep status` stay quick on a login node). Each method's
class takes its keys from here (`fields = algorithms.FEDAVG`); a plugin declares its own."""

from __future__ import annotations

from mpifl.config.fields import Field, choice, integer, number, positive_list, widths

STALENESS_KINDS = ("constant", "polynomial", "hinge")
SELECTIONS = ("prefix", "rolling", "magnitude")  # SubModel's unit selection rules

SERVER_INIT = Field(
    "str", "", "must be a state dict saved by torch.save",
    doc="start the global model from it (e.g. a file of mpifl pretrain)",
)  # fmt: skip

FEDAVG = {
    "server_lr": number(1.0, 0.0, low_open=True, doc="server learning rate eta_s"),
    "finetune_epochs": integer(
        0, 0, "local epochs each client fine-tunes the global model before its own-test "
        "evaluation (0 = evaluate the global model as is)", maximum=1000,
    ),
    "server_init": SERVER_INIT,
}  # fmt: skip

FEDPROX = {
    **FEDAVG,
    "mu": number(0.01, 0.0, doc="weight of the proximal term mu/2 ||w - W||^2"),
}


def _server_lr(default: float) -> Field:
    return number(default, 0.0, low_open=True, doc="server learning rate eta")


def _beta(default: float, doc: str) -> Field:
    return number(default, 0.0, 1.0, high_open=True, doc=doc)


def _adaptive(lr: float, beta1: float, beta2: float | None) -> dict[str, Field]:
    """FedAvg's keys with FedOpt's: server_lr (eta), beta1, beta2 (unless None), tau."""
    second = {} if beta2 is None else {"beta2": _beta(beta2, "second-moment decay beta2")}
    return {
        **FEDAVG,
        "server_lr": _server_lr(lr),
        "beta1": _beta(beta1, "first-moment (momentum) decay beta1"),
        **second,
        "tau": number(1e-3, 0.0, low_open=True, doc="adaptivity tau; v starts at tau^2"),
    }


FEDAVGM = {
    **FEDAVG,
    "server_lr": _server_lr(1.0),
    "server_momentum": _beta(0.9, "server momentum beta"),
}
FEDADAGRAD = _adaptive(lr=0.1, beta1=0.0, beta2=None)
FEDADAM_YOGI = _adaptive(lr=0.01, beta1=0.9, beta2=0.99)

STALENESS = {
    "staleness": choice(
        "polynomial", STALENESS_KINDS, doc="staleness weight s(tau): constant, polynomial, hinge"
    ),
    "staleness_a": number(0.5, 0.0, 100.0, doc="polynomial: exponent a; hinge: slope a"),
    "staleness_b": number(4.0, 0.0, 1e6, doc="hinge: staleness b up to which s = 1"),
}
FEDBUFF = {
    **FEDAVG,
    "buffer": integer(10, 1, "updates per server step (K)", maximum=10**6),
    **STALENESS,
}
FEDASYNC = {
    **FEDAVG,
    "mixing": number(0.6, 0.0, 1.0, low_open=True, doc="mixing weight alpha"),
    **STALENESS,
}

SUBMODEL = {
    "tiers": widths([1.0, 0.5, 0.25, 0.125], "width tiers"),
    "selection": choice("prefix", SELECTIONS),
}

REFT = {
    "capability": choice(
        "quantile",
        ("quantile", "max", "memory"),
        doc="capability rule: levels over the fleet's speed distribution, against the "
        "fastest device, or memory-forced pruning only",
    ),
    "p_max": number(0.75, 0.0, 1.0, high_open=True, doc="largest capability pruning"),
    "p_step": number(0.25, 0.0, 1.0, True, True, doc="pruning ratio step"),
    "sync_every": integer(5, 1, "rounds between server-to-client downloads"),
    "temperature": number(2.0, 0.0, low_open=True),
    "server_epochs": integer(10, 1, "distillation epochs over the proxy set per round"),
    "server_lr": number(0.2, 0.0, low_open=True, doc="distillation SGD learning rate"),
    "server_batch": integer(32, 1),
    "server_start": choice(
        "previous",
        ("previous", "average"),
        doc="what the server model starts each round's distillation from: its own "
        "previous weights, or the clients' pruned models averaged into it coordinate "
        "by coordinate (each where some client covered it; ours)",
    ),
    "proxy_samples": integer(
        0,
        0,
        "distil on this many of the proxy set's samples, drawn at random once "
        "(0 = all): the sensitivity to the server's unlabelled data (ours)",
    ),
}

KOALA = {
    "mode": choice("homogeneous", ("homogeneous", "heterogeneous")),
    "small_widths": widths([1.0, 0.5, 0.25], "heterogeneous families: widths of [model]"),
    "large_channels": positive_list("int", [64, 128], "large CNN conv channels"),
    "large_fc": integer(256, 1, "large CNN fully connected units"),
    "large_hidden": positive_list("int", [512, 256], "large MLP hidden sizes"),
    "server_init": Field("str", "", "must be a state dict saved by torch.save"),
    "proxy_labels": Field("bool", False, doc="add cross-entropy on proxy labels to reverse KD"),
    "temperature": number(2.0, 0.0, low_open=True),
    "server_epochs": integer(5, 1, "reverse KD epochs over the proxy set per round"),
    "server_lr": number(0.05, 0.0, low_open=True),
    "forward_epochs": integer(2, 1, "forward KD epochs per family per round"),
    "forward_lr": number(0.05, 0.0, low_open=True),
    "warm_start": Field(
        "bool",
        False,
        doc="before round 1, distil L (e.g. a pre-trained server_init) "
        "into every small family by forward KD on the proxy set (ours)",
    ),
    "server_batch": integer(32, 1),
}


def _dims_ok(v: list[int]) -> bool:
    return (
        len(v) >= 2
        and all(d > 0 for d in v)
        and all(a <= b for a, b in zip(v, v[1:], strict=False))
    )


FEDMRL = {
    "mrl_dims": Field(
        "list[int]", [16, 64], "must be >= 2 positive non-decreasing sizes [d1, ..., d2]",
        _dims_ok,
    ),
    "local_fc": positive_list("int", [128, 96, 80, 64, 48], "fc widths of the local variants"),
    "global_fc": Field("int", 48, "must be an integer >= 1", lambda v: v >= 1),
    "m1": number(1.0, 0.0),
    "m2": number(1.0, 0.0),
    "clip": number(50.0, 0.0, low_open=True, doc="gradient-norm clip"),
    "fit_memory": Field(
        "bool", False,
        doc="a client whose variant (k mod len(local_fc)) does not fit its memory "
        "trains the largest that does, if one does (ours)",
    ),
}  # fmt: skip

LOCAL = {
    "server_init": SERVER_INIT,  # start every client from it
    "tiers": widths(
        [1.0], "width tiers: each client trains the widest that fits its memory and the "
        "deadline ([1]: the configured model)",
    ),
}  # fmt: skip

STANDALONE = {
    "local_fc": FEDMRL["local_fc"],
    "dim": integer(64, 1, "size of F_k's representation (FedMRL's d2)"),
    "clip": FEDMRL["clip"],
}

ALGORITHMS: dict[str, dict[str, Field]] = {
    "fedavg": FEDAVG,
    "fedprox": FEDPROX,
    "fednova": FEDAVG,
    "scaffold": FEDAVG,
    "fedavgm": FEDAVGM,
    "fedadagrad": FEDADAGRAD,
    "fedadam": FEDADAM_YOGI,
    "fedyogi": FEDADAM_YOGI,
    "fedbuff": FEDBUFF,
    "fedasync": FEDASYNC,
    "submodel": SUBMODEL,
    "reft": REFT,
    "koala": KOALA,
    "fedmrl": FEDMRL,
    "local": LOCAL,
    "standalone": STANDALONE,
    "majority": {},
    "centralized": {},
}
"""algorithm.name -> the method's [algorithm] keys (besides `name`), for every built-in."""
