"""The package's layout rules, read from the source: no import circle, methods use the
method kit only, MPI behind the comm module, HDF5 behind the results package."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "mpifl"


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, typing: bool = False) -> set[str]:
    """Absolute module names imported by a file at run time (and under TYPE_CHECKING if
    `typing`)."""
    tree = ast.parse(path.read_text())
    typing_only = set() if typing else {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING"
        for stmt in block.body
        for node in ast.walk(stmt)
    }  # fmt: skip
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{alias.name}" for alias in node.names}
    return out


def internal(path: Path, typing: bool = False) -> set[str]:
    """The package's own modules a file imports (a name imported from a package counts
    as the package unless it is a module of it)."""
    out = set()
    for name in imports(path, typing):
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != _module(path):
            out.add(name)
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_circle():
    edges = defaultdict(set, {m: internal(p) for m, p in MODULES.items()})
    assert cycles(edges) == []


def test_no_circle_hides_under_type_checking():
    """fleet.availability and fleet.profiles imported each other, one of the two only
    for type hints: a circle all the same."""
    edges = defaultdict(set, {m: internal(p, typing=True) for m, p in MODULES.items()})
    assert cycles(edges) == []


def test_the_packages_import_each_other_without_a_circle():
    """Packages too form layers: cli -> commands -> engine -> methods -> kit -> ..."""
    package = lambda m: ".".join(m.split(".")[:2])  # noqa: E731
    edges = defaultdict(set)
    for name, path in MODULES.items():
        edges[package(name)] |= {package(m) for m in internal(path)} - {package(name)}
    assert cycles(edges) == []


def test_the_cycle_finder_finds_a_circle():
    assert cycles(defaultdict(set, {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})) == [
        ["a", "b", "c"]
    ]


def test_methods_import_only_the_kit():
    for name, path in MODULES.items():
        if not name.startswith("mpifl.methods.") or name == "mpifl.methods":
            continue
        own = {m for m in internal(path) if not m.startswith(("mpifl.methods", "mpifl.kit"))}
        assert not own, f"{name} imports {sorted(own)}"


def test_the_example_plugins_import_only_the_kit():
    """...and the method template `mpifl new method` writes, itself written with the kit
    alone (examples/clipping.py is that template, changed)."""
    template = ROOT / "mpifl" / "templates" / "method.py"
    own = {m for m in internal(template) if m not in ("mpifl", "mpifl.kit")}
    assert not own, f"the method template imports {sorted(own)}"
    for path in (ROOT / "examples").glob("*.py"):
        allowed = ("mpifl", "mpifl.kit", "mpifl.templates.method")
        own = {m for m in internal(path) if m not in allowed}
        assert not own, f"{path.name} imports {sorted(own)}"


def test_the_kit_never_imports_the_driver_or_the_methods():
    for name, path in MODULES.items():
        if name.startswith("mpifl.kit"):
            bad = {m for m in internal(path) if m.startswith(("mpifl.engine", "mpifl.methods"))}
            assert not bad, f"{name} imports {sorted(bad)}"


def test_mpi_only_in_the_comm_module_and_hdf5_only_in_results():
    tff_input = "mpifl.data.formats.tff"  # reads TensorFlow Federated's own HDF5 files
    for name, path in MODULES.items():
        found = {m.split(".")[0] for m in imports(path)}
        if "mpi4py" in found:
            assert name == "mpifl.comm", f"{name} imports mpi4py"
        if "h5py" in found:
            assert name.startswith("mpifl.results") or name == tff_input, f"{name} imports h5py"


def test_a_run_does_not_import_pandas():
    """The CLI, a run's start-up (its resume check) and sweeps read result files' attributes
    and configs without the reader's pandas: it cost every rank ~0.3 s of each run's
    start."""
    code = (
        "import sys\n"
        "import mpifl.cli, mpifl.engine.loop, mpifl.engine.startup, mpifl.hpc.sweep\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
