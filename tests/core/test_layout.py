"""The package's shape: stages as subpackages whose imports point one way, no import circle,
no step importing another step, and modules small enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

from skysift.__main__ import STEPS

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "skysift"

#: Layers from the bottom up: a module may import its own layer and those below it.
#: ``core`` is every module directly in skysift/; ``plan`` (the workflow's planning) sits
#: on top of every stage.
LAYERS = ("core", "survey", "stamps", "sim", "learn", "score", "evaluate", "review", "plan")
MAX_MODULE_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if module == "skysift.plan":
        return "plan"
    if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS):
        return parts[1]
    return "core"


def imports_of(path: Path, module: str) -> set[str]:
    """skysift modules ``path`` imports anywhere in its body (functions and TYPE_CHECKING
    blocks included): ``from a.b import c`` counts as ``a.b.c`` when that is a module."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("skysift")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            if not base.startswith("skysift"):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else base)
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {m: imports_of(p, m) & set(MODULES) for m, p in MODULES.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, deps in graph.items():
        for dep in deps:
            if dep != "skysift" and LAYERS.index(layer_of(dep)) > LAYERS.index(layer_of(module)):
                bad.append(f"{module} ({layer_of(module)}) imports {dep} ({layer_of(dep)})")
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_belongs_to_a_layer():
    assert {layer_of(m) for m in MODULES} <= set(LAYERS)
    assert {"skysift.survey.tiles", "skysift.stamps.cutouts", "skysift.sim.mock",
            "skysift.learn.train", "skysift.score.infer", "skysift.evaluate.evaluate",
            "skysift.review.gallery", "skysift.plan"} <= set(MODULES)


def test_imports_point_down_the_layers():
    assert upward_imports(GRAPH) == []


def test_the_check_catches_an_upward_import():
    graph = {m: set(d) for m, d in GRAPH.items()}
    graph["skysift.survey.tiles"].add("skysift.score.infer")  # a deliberately wrong import
    assert upward_imports(graph) == [
        "skysift.survey.tiles (survey) imports skysift.score.infer (score)"]


def test_no_import_circle():
    assert cycles(GRAPH) == []
    graph = {m: set(d) for m, d in GRAPH.items()}
    graph["skysift.survey.catalog"].add("skysift.survey.index")  # index imports catalog
    assert ["skysift.survey.catalog", "skysift.survey.index"] in cycles(graph)


def test_no_step_imports_another_step():
    steps = {module for module, _ in STEPS.values()}
    bad = sorted(f"{m} imports {d}" for m, deps in GRAPH.items() if m != "skysift.__main__"
                 for d in deps & steps if d != m)
    assert bad == []


def test_modules_are_short_enough_to_read():
    long = {m: n for m, p in MODULES.items()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}
