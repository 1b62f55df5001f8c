"""The package's layering: no import circle among vocadapt's modules, function-local imports included.

A function-local import hides a circle from Python (nothing fails at import time) but not from a
reader: the modules still depend on each other, so neither can be understood, moved or tested
alone. The check parses every module with ``ast`` (nothing is imported), takes every
``import``/``from ... import`` anywhere in the file, resolves relative imports and names that are
submodules, and looks for strongly connected components of the module graph.

Imports under ``if TYPE_CHECKING:`` are left out: they never run and only name a type for an
annotation.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vocadapt

SRC = Path(vocadapt.__file__).resolve().parent.parent


def _modules(src: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``) for every vocadapt module under ``src``."""
    out = {}
    for f in sorted((src / "vocadapt").rglob("*.py")):
        parts = list(f.relative_to(src).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node of ``tree`` at any depth, except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the vocadapt modules it imports (the nearest existing module for each name)."""
    modules = _modules(src)

    def nearest(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in modules.items():
        deps: set[str | None] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                deps.update(nearest(a.name) for a in node.names if a.name.split(".")[0] == "vocadapt")
                continue
            if node.level:  # relative: from the module's package, one level up per extra dot
                package = name.split(".") if is_pkg else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "vocadapt":
                continue
            for alias in node.names:  # `from pkg import sub` imports the submodule pkg.sub
                sub = f"{base}.{alias.name}"
                deps.add(sub if sub in modules else nearest(base))
        deps.discard(None)
        deps.discard(name)
        graph[name] = {d for d in deps if d is not None}
    return graph


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module: each is an import circle."""
    # Tarjan's algorithm, iterative so deep graphs cannot hit the recursion limit.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    components.append(comp)
    return components


def cycle_in(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest closed path through the component's first module (breadth-first inside it)."""
    start = min(comp)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, v, start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    return sorted(comp)


def test_no_import_cycle():
    graph = import_graph()
    assert "vocadapt.cli" in graph and len(graph) > 50, "the module scan found too little"
    found = circles(graph)
    assert not found, "import circles (function-local imports count):\n" + "\n".join(
        f"{' -> '.join(cycle_in(graph, c))}  [{len(c)} modules in this circle: {', '.join(sorted(c))}]" for c in found
    )


def test_cycle_finder_sees_local_and_relative_imports(tmp_path):
    """The checker itself: a circle closed only by a function-local relative import is found,
    and one closed only under TYPE_CHECKING is not."""
    pkg = tmp_path / "vocadapt"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from .sub import high\n")
    (pkg / "sub" / "high.py").write_text("from vocadapt import low\n")
    (pkg / "typed.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vocadapt.sub import other\n"
    )
    (pkg / "sub" / "other.py").write_text("import vocadapt.typed\n")
    graph = import_graph(tmp_path)
    assert graph["vocadapt.low"] == {"vocadapt.sub.high"}
    assert graph["vocadapt.typed"] == set()
    found = circles(graph)
    assert found == [{"vocadapt.low", "vocadapt.sub.high"}]
    assert cycle_in(graph, found[0]) == ["vocadapt.low", "vocadapt.sub.high", "vocadapt.low"]


def test_dead_code_is_gone():
    """Removed with the restructuring; nothing in src, tests, benchmarks or docs used them."""
    import vocadapt.errors
    import vocadapt.tokenizer.canonical

    assert not hasattr(vocadapt.errors, "require_path")
    assert not hasattr(vocadapt.tokenizer.canonical, "unicode_to_bytes")
    names = [p.name for p in (SRC / "vocadapt").rglob("*.py")]
    assert names.count("helper.py") <= 1 and "_common.py" not in names
