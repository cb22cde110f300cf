"""The import graph: dependencies point one way, and nothing goes round in a circle.

Layers, bottom up (docs/architecture.md, "Module map"):

0. the core: ``sandbox._core`` (units, specs, actor base, choosers, delivery,
   runtime, event log, safe files) and ``sandbox.messages`` (the protocol);
1. ``actors`` (and the bug zoo, ``actors.zoo``);
2. the scenario loader, ``sandbox._scenario``;
3. the exchange: ``sandbox._exchange`` (the wiring, the invariants, the summary);
4. the tools, ``sandbox._tools``, and ``sandbox.testing``;
5. the command line, ``sandbox.cli`` and ``sandbox.__main__``;
6. ``sandbox`` itself, which re-exports.

A module may import from its own layer and the layers below, never from one
above, at module level or inside a function (a function-level import hides a
cycle; it does not remove it); only an import for annotations, under ``if
TYPE_CHECKING:``, never runs and does not count. Within a layer the imports form no cycle.
Like trio's ``test_exports``, this reads the code, so a new module is held to
it without being listed anywhere.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = (
    ("sandbox._core", "sandbox.messages"),
    ("actors",),
    ("sandbox._scenario",),
    ("sandbox._exchange",),
    ("sandbox._tools", "sandbox.testing"),
    ("sandbox.cli", "sandbox.__main__"),
    ("sandbox",),
)


def layer_of(module: str) -> int:
    best = None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if module == p or module.startswith(p + "."):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    assert best is not None, f"{module} is in no layer: add it to LAYERS and to docs/architecture.md"
    return best[0]


def modules() -> dict[str, Path]:
    found = {}
    for pkg in ("sandbox", "actors"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = modules()


def imports_of(module: str, path: Path) -> set[str]:
    """The project modules ``module`` imports, anywhere in its body."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    # Imports under ``if TYPE_CHECKING:`` are for annotations only and never run.
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # "from pkg import sub" imports the submodule when there is one.
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


GRAPH = {m: imports_of(m, p) for m, p in MODULES.items()}


def test_every_module_is_in_a_layer():
    for m in MODULES:
        layer_of(m)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_import(module):
    mine = layer_of(module)
    upward = sorted(t for t in GRAPH[module] if layer_of(t) > mine)
    assert not upward, f"{module} (layer {mine}) imports from above: {upward}"


def _bootstrap(module: str, target: str) -> bool:
    # A package imports its own submodules to re-export them: that is how
    # Python packages work, not a cycle in the design (trio/__init__ does the same).
    return target.startswith(module + ".")


def test_no_import_cycle():
    graph = {m: {t for t in ts if not _bootstrap(m, t)} for m, ts in GRAPH.items()}
    # The parent package is run before any of its submodules: count that edge too,
    # except from the root packages, which are the top of the graph by design.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_layer_test_sees_an_upward_import(tmp_path):
    # The check itself can fail: an actor importing the exchange is caught.
    path = tmp_path / "bad.py"
    path.write_text("def f():\n    from sandbox._exchange.run import build\n")
    assert "sandbox._exchange.run" in imports_of("actors.bad", path)
    assert layer_of("sandbox._exchange.run") > layer_of("actors.bad")


@pytest.mark.parametrize("first", ["actors", "actors.zoo", "sandbox", "sandbox.messages", "sandbox.testing",
                                   "sandbox._core.runtime", "sandbox._tools.checklog", "sandbox.cli"])
def test_any_public_module_can_be_imported_first(first):
    # Whatever a user imports first, the import order works out (a fresh interpreter each time).
    code = f"import {first}; import sandbox; sandbox.run_scenario; import actors; actors.Clearing"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
