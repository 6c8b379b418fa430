"""The import graph's shape: no circles between modules or packages, no arrow back up a layer,
imports inside functions only where a heavy optional dependency must stay lazy, modules small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cllora"

# Lowest layer first; a module may import only from its own layer or below.
LAYERS = [
    {"errors", "files", "seeds"},  # no cllora imports but each other
    {"device", "data", "model", "metrics", "curves", "train", "ranks", "partition", "aggregate", "privacy"},  # pure cores
    {"config"},  # reads the cores' registries (schemes, strategies and their options)
    {"records"},  # a run's columns and files
    {"engine"},  # the in-process loop: draws nothing, knows no Flower
    {"analysis"},  # reads run files into rows, statistics, verdicts and claims: numbers only
    {"report"},  # draws and writes the page from analysis; its run_figures module is a listener the runners attach
    {"flower"},  # a second runner over the engine's loop
    {"runner"},  # picks the engine for a config
    {"sweep"},  # grids of runs
    {"commands", "cli"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """(imported cllora module, inside a function?) for each import in the file."""
    tree = ast.parse(path.read_text())
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if child.module.startswith("cllora"):
                    for alias in child.names:
                        sub = f"{child.module}.{alias.name}"
                        found.append((sub if sub in known else child.module, inner))
            elif isinstance(child, ast.Import):
                found.extend((a.name, inner) for a in child.names if a.name.startswith("cllora"))
            visit(child, inner)

    visit(tree, False)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: {t for t, _ in imports(p, known) if t != m and t in known} for m, p in mods.items()}


def unit(module: str) -> str:
    """The package (or top-level module) a module belongs to: its architectural unit."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer(module: str) -> int:
    name = unit(module)
    for i, names in enumerate(LAYERS):
        if name in names:
            return i
    raise AssertionError(f"{module}: its unit {name!r} is in no layer of test_architecture.LAYERS")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            strong(v)
    return out


def test_no_import_circles_between_modules():
    assert cycles(graph()) == []


def test_no_import_circles_between_packages():
    units: dict[str, set[str]] = {}
    for src, targets in graph().items():
        units.setdefault(unit(src), set()).update(unit(t) for t in targets if unit(t) != unit(src))
    assert cycles(units) == []


def test_no_arrow_runs_back_up_a_layer():
    upward = [f"{src} -> {t}" for src, targets in graph().items() if src != "cllora"
              for t in targets if t != "cllora" and layer(t) > layer(src)]
    assert upward == []


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_inside_functions_say_why():
    """A cllora import inside a function is allowed only with a comment on its line (or the line
    above) saying why: it keeps a heavy dependency lazy (torch, transformers, flwr, ray,
    matplotlib), or keeps `cllora --help` from loading any command's dependencies."""
    mods = modules()
    bare = []
    for name, path in mods.items():
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("cllora"):
                    said = lines[inner.lineno - 1] + lines[inner.end_lineno - 1] + lines[inner.lineno - 2]
                    if "#" not in said:
                        bare.append(f"{name}:{inner.lineno}")
    assert bare == []


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: module_name(p))
def test_module_is_small_and_says_what_it_owns(path):
    text = path.read_text()
    assert len(text.splitlines()) <= 350
    assert ast.get_docstring(ast.parse(text)), f"{path.name} has no module docstring"


def test_few_modules_at_the_top_level():
    top = [p.name for p in SRC.glob("*.py")]
    assert len(top) < 15, top


def test_analysis_draws_nothing():
    """The numbers package imports no plotting and no HTML code, and nothing of the report: the
    report draws from analysis, never the reverse."""
    drawn = []
    for name, path in modules().items():
        if unit(name) != "analysis":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            drawn += [f"{name}: {n}" for n in names
                      if n.split(".")[0] in ("matplotlib", "html") or n.startswith("cllora.report")]
    assert drawn == []
