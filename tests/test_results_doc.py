"""docs/results.md documents every column of every table."""

from __future__ import annotations

import pytest

from mpifl.results.schema import FLEET_DTYPE, STATUS_NAMES
from mpifl.results.writer import TABLES
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "results.md").read_text()


@pytest.mark.parametrize("table", [*TABLES, "fleet"])
def test_every_column_is_documented(table):
    dtype = FLEET_DTYPE if table == "fleet" else TABLES[table]
    section = DOC.split(f"### `{table}`")[1].split("###")[0]
    for column in dtype.names:
        assert f"`{column}`" in section, f"{table}.{column} is not documented"


def test_every_status_is_documented():
    for name, code in STATUS_NAMES.items():
        assert f"| {code} | `{name}` |" in DOC
