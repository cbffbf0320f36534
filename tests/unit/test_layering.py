"""Imports go one way: I/O depends on the core, never the reverse, so the core stays plain,
synchronous Python that tests drive without sockets or clocks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ferryman"
CORE_FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "threading", "uvloop", "httptools",
                  "logging", "ferryman.server", "ferryman.config", "ferryman.cli", "time"}

# auth.py: bcrypt runs in an executor thread, so its verification cache is guarded by a lock.
ALLOWED = {"auth.py": {"threading"}}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _violations(path: Path, forbidden: set[str]) -> list[str]:
    return sorted(n for n in _imports(path) if any(n == f or n.startswith(f + ".") for f in forbidden))


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").glob("*.py")), ids=lambda p: p.name)
def test_core_modules_import_no_io_no_clock_and_nothing_above_them(path: Path) -> None:
    allowed = ALLOWED.get(path.name, set())
    assert _violations(path, CORE_FORBIDDEN - allowed) == []


@pytest.mark.parametrize("path", sorted((PACKAGE / "config").glob("*.py")), ids=lambda p: p.name)
def test_config_modules_never_import_the_server(path: Path) -> None:
    assert _violations(path, {"ferryman.server", "ferryman.cli", "asyncio", "uvloop", "httptools"}) == []


def test_nothing_imports_the_cli() -> None:
    offenders = [str(p) for p in PACKAGE.rglob("*.py")
                 if p.name not in ("cli.py", "__main__.py") and "ferryman.cli" in _imports(p)]
    assert offenders == []


def _server_graph() -> dict[str, set[str]]:
    """server/ module -> the server/ modules it imports (TYPE_CHECKING imports included: a ring of
    type-only imports is still a ring a reader has to untangle)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((PACKAGE / "server").glob("*.py")):
        name = f"ferryman.server.{path.stem}"
        graph[name] = {n for n in _imports(path) if n.startswith("ferryman.server.")}
    return graph


def test_the_server_modules_import_one_way_with_no_cycle() -> None:
    graph = _server_graph()
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(node):] + [node]))
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*stack, node])
        done.add(node)

    for node in graph:
        visit(node, [])


def test_the_access_log_and_the_backend_connections_import_no_other_server_module() -> None:
    graph = _server_graph()
    assert graph["ferryman.server.accesslog"] == set()
    assert graph["ferryman.server.upstream"] <= {"ferryman.server.tokenizer", "ferryman.server.timers"}
