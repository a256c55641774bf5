"""The package's shape: data flows one way, the core never imports the research tools, no
import cycles, no imports hidden inside functions (outside the CLI), short functions, and the
rendered results match their records."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ser_jax"
# The command-line layer imports each verb's module when the verb runs, so that
# `ser-jax predict` does not load the trainer; nothing else may import inside a function.
LAZY_ALLOWED = {"ser_jax.cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> tuple[set[str], set[str]]:
    """(modules imported at module level, modules imported inside functions) of ``ser_jax``."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    inner: set[str] = set()
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    nested = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        names = [n for n in names if n.split(".")[0] == "ser_jax"]
        (inner if id(node) in nested else top).update(names)
    return top, inner


def graph() -> dict[str, set[str]]:
    mods = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in mods.items():
        top, _ = imports(path)
        edges[name] = {m for m in top if m in mods and m != name}
    return edges


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def test_no_function_level_imports_outside_the_cli():
    found = []
    for path in PACKAGE.rglob("*.py"):
        _, inner = imports(path)
        if inner and module_name(path) not in LAZY_ALLOWED:
            found.append(f"{path.relative_to(REPO)}: {sorted(inner)}")
    assert not found, "imports inside functions:\n" + "\n".join(found)


def test_the_core_never_imports_the_research_tools():
    edges = graph()
    core = [m for m in edges if not m.startswith("ser_jax.research") and m != "ser_jax.cli"]
    bad = [
        f"{m} imports {sorted(edges[m])}"
        for m in core
        if any(e.startswith("ser_jax.research") for e in edges[m])
    ]
    assert not bad, "\n".join(bad)


def test_no_function_over_80_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = n.end_lineno - n.lineno + 1
                if lines > 80:
                    long.append(f"{path.relative_to(REPO)}:{n.lineno} {n.name} ({lines} lines)")
    assert not long, "\n".join(long)


@pytest.mark.parametrize("script", ["render_results.py", "render_benchmarks.py"])
def test_results_render_byte_identical_from_their_records(script):
    proc = subprocess.run(
        [sys.executable, f"experiments/{script}", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr or proc.stdout


def test_readme_is_for_users():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    for word in ("round ", "named best", "rule "):
        assert word not in text.lower(), word
