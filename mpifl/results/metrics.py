"""A round's figures by name, as callbacks see them (mpifl.callbacks), made from the rows
recorded for the round, so that they are the same for any rank count and across a resume.

Names: every column of the `rounds` row but `round` (`test_accuracy`, `train_loss`,
`virtual_time`, ...; NaN where not evaluated), `eval/<group>/loss` and
`eval/<group>/accuracy` for each `eval` row, and `server/<name>` for each `server` row.
"""

from __future__ import annotations

import numpy as np

from mpifl.results.schema import ROUNDS_DTYPE

ROUND_FIGURES = tuple(name for name in ROUNDS_DTYPE.names if name != "round")
EVAL_FIGURES = ("loss", "accuracy")


def round_metrics(row: np.void, eval_rows: np.ndarray, server_rows: np.ndarray) -> dict[str, float]:
    """The figures of one round: its `rounds` row and its `eval` and `server` rows."""
    out = {name: float(row[name]) for name in ROUND_FIGURES}
    for e in eval_rows:
        group = e["group"].decode()
        for field in EVAL_FIGURES:
            out[f"eval/{group}/{field}"] = float(e[field])
    for s in server_rows:
        out[f"server/{s['name'].decode()}"] = float(s["value"])
    return out


def metric_history(tables: dict[str, np.ndarray]) -> list[tuple[int, dict[str, float]]]:
    """(round, figures) of every round in recorded tables (rows in round order)."""
    out = []
    for row in tables["rounds"]:
        r = int(row["round"])
        evals, server = _of_round(tables["eval"], r), _of_round(tables["server"], r)
        out.append((r, round_metrics(row, evals, server)))
    return out


def _of_round(rows: np.ndarray, r: int) -> np.ndarray:
    """The rows of round r in rows sorted by round."""
    rounds = rows["round"]
    return rows[np.searchsorted(rounds, r) : np.searchsorted(rounds, r, "right")]


def is_metric_name(name: str) -> bool:
    """Whether `name` has the form of a round's figure a rule may watch (a `rounds`
    column, `eval/<group>/loss|accuracy` or `server/<name>`); not `wall_time`, rank 0's
    clock, which differs between runs."""
    if name in ROUND_FIGURES:
        return name != "wall_time"
    kind, _, rest = name.partition("/")
    if kind == "server":
        return bool(rest)
    group, _, field = rest.rpartition("/")
    return kind == "eval" and bool(group) and field in EVAL_FIGURES
