"""The import direction of the layers, read from the source (lazy imports inside functions included).

- the core (``dna_zoo`` without ``dna_zoo.cli``) imports none of search / export / hub / cli;
- export never imports search;
- no import cycles between modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# checkout folder -> installed package (the package-dir mapping of setup.py)
ROOTS = {"dna_zoo": "dna_zoo", "search": "dna_zoo.search", "export": "dna_zoo.export", "hub": "dna_zoo.hub"}


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for folder, pkg in ROOTS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            mods[".".join([pkg, *parts])] = path
    return mods


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(name: str) -> str | None:
    """The longest known module that ``name`` (a module or a name inside one) refers to."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in MODULES:
            return cand
        parts.pop()
    return None


def imports_of(module: str) -> set[str]:
    """Every dna_zoo module that ``module`` imports, at the top or inside a function."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    package = module if _is_package(module) else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            hit = _resolve(t)
            if hit and hit != module:
                out.add(hit)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def _layer(module: str) -> str:
    for layer in ("dna_zoo.search", "dna_zoo.export", "dna_zoo.hub", "dna_zoo.cli"):
        if module == layer or module.startswith(layer + "."):
            return layer
    return "core"


def test_every_source_module_is_seen():
    assert "dna_zoo.search.latency.table" in MODULES and "dna_zoo.export.api" in MODULES
    assert GRAPH["dna_zoo.search.latency.build"], "the parser found no imports where there are some"


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("core", {"dna_zoo.search", "dna_zoo.export", "dna_zoo.hub", "dna_zoo.cli"}),
        ("dna_zoo.export", {"dna_zoo.search", "dna_zoo.hub", "dna_zoo.cli"}),
        ("dna_zoo.search", {"dna_zoo.hub", "dna_zoo.cli"}),
        ("dna_zoo.hub", {"dna_zoo.cli"}),
    ],
)
def test_import_direction(layer, forbidden):
    bad = sorted(
        f"{m} imports {t}"
        for m, ts in GRAPH.items()
        if _layer(m) == layer
        for t in ts
        if _layer(t) in forbidden
    )
    assert not bad, "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    # a package's __init__ counts as a module: a module importing its own package's re-exports while
    # that __init__ imports the module is a cycle too (it sees a half-initialised package)
    cycles = _cycles(GRAPH)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)
