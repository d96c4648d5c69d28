"""The layer table of DESIGN.md, held by an AST walk over every import in trtlab/ and widgets/.

Each module belongs to one layer; an import (at module level, inside a function, or under TYPE_CHECKING) may
only go to the same layer or one below, and the imports among trtlab modules must not form a cycle. Imports
under `if TYPE_CHECKING:` never run, so they count for the direction but not for cycles (a part of the hub may
name the Session it works for in its annotations).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"trtlab": ROOT / "trtlab", "trtlab.widgets": ROOT / "widgets"}

# Bottom first. A module belongs to the layer of the longest prefix naming it ("trtlab.zoo" covers
# "trtlab.zoo.bert"); the package "trtlab" itself (its __init__, the public surface) sits at the top.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # base utilities every layer may use: errors, build configuration, events and jobs, the workspace writer,
    # device probing, the utilization monitor, the hook registry the UI fills and the hub calls, HTML escaping
    ("base", ("trtlab.errors", "trtlab.config", "trtlab.events", "trtlab.workspace", "trtlab.devices",
              "trtlab.monitor", "trtlab.version", "trtlab.hooks", "trtlab.markup")),
    # the model, its demo zoo, and the input data a user gives for it (feed checking, batch iteration)
    ("model", ("trtlab.model", "trtlab.zoo", "trtlab.feeds", "trtlab.batches")),
    ("precision", ("trtlab.precision",)),
    ("tables", ("trtlab.tables", "trtlab.nodemap")),
    ("backends", ("trtlab.backends",)),
    # analyses and figures are one layer: figures are DataFrame in, Figure out, and may use pure analysis
    # helpers (the knee, the first divergence); trtexec reads exports into the analysis results
    ("analysis", ("trtlab.analysis", "trtlab.plots", "trtlab.trtexec", "trtlab.trtexec_format")),
    # the Session façade and its parts: the engine cache, the precision lab, tuning; the environment report
    ("hub", ("trtlab.session", "trtlab.engines", "trtlab.lab", "trtlab.tuning", "trtlab.environment")),
    ("ui", ("trtlab.widgets", "trtlab.report", "trtlab.cli", "trtlab.__main__", "trtlab")),
]
RANK = {name: k for k, (name, _) in enumerate(LAYERS)}


def layer_of(module: str) -> str | None:
    """The layer a module belongs to (longest matching prefix), or None when the table does not place it."""
    best, best_len = None, -1
    for name, prefixes in LAYERS:
        for p in prefixes:
            exact_only = p == "trtlab"
            if (module == p or (not exact_only and module.startswith(p + "."))) and len(p) > best_len:
                best, best_len = name, len(p)
    return best


def discover(sources: dict[str, Path] = SOURCES) -> dict[str, tuple[Path, bool]]:
    """{module name: (file, is package __init__)} for every .py file under the source folders."""
    mods: dict[str, tuple[Path, bool]] = {}
    for pkg, folder in sources.items():
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = [pkg, *path.relative_to(folder).with_suffix("").parts]
            is_pkg = parts[-1] == "__init__"
            mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


def _target(name: str, modules: dict[str, tuple[Path, bool]]) -> str:
    """The module an import of `name` loads: itself, else its longest known prefix."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement anywhere in the tree, with whether it sits under `if TYPE_CHECKING:`."""
    out: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def walk(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append((node, typing_only))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                walk(child, True)
            for child in node.orelse:
                walk(child, typing_only)
            return
        for child in ast.iter_child_nodes(node):
            walk(child, typing_only)

    walk(tree, False)
    return out


def imports(module: str, source: str, is_pkg: bool,
            modules: dict[str, tuple[Path, bool]]) -> list[tuple[str, int, bool]]:
    """(imported trtlab module, line, typing only) for every import statement anywhere in `source`."""
    out = []
    for node, typing_only in _import_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
        out += [(_target(n, modules), node.lineno, typing_only) for n in names
                if n == "trtlab" or n.startswith("trtlab.")]
    return out


def import_graph(sources: dict[str, Path] = SOURCES) -> dict[str, list[tuple[str, int, bool]]]:
    """{module: [(imported module, line, typing only), ...]} over the trtlab modules, self-imports left out."""
    modules = discover(sources)
    return {m: [e for e in imports(m, path.read_text(encoding="utf-8"), is_pkg, modules) if e[0] != m]
            for m, (path, is_pkg) in modules.items()}


def upward(graph: dict[str, list[tuple[str, int, bool]]]) -> list[str]:
    """Every import that goes up the table (or touches a module the table does not place)."""
    bad = []
    for mod, targets in sorted(graph.items()):
        here = layer_of(mod)
        if here is None:
            bad.append(f"{mod}: not in the layer table (add it to LAYERS in tests/test_layers.py)")
            continue
        for target, line, _typing in targets:
            there = layer_of(target)
            if there is None or RANK[there] > RANK[here]:
                bad.append(f"{mod} ({here}) line {line} imports {target} ({there})")
    return bad


def cycles(graph: dict[str, list[tuple[str, int, bool]]]) -> list[list[str]]:
    """The import cycles of imports that run (not under TYPE_CHECKING): strongly connected groups of more than
    one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w, _line, typing_only in graph.get(v, []):
            if typing_only:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


# ---- the package itself ------------------------------------------------------------------------------
def test_every_import_goes_down_the_layer_table():
    bad = upward(import_graph())
    assert not bad, "imports against DESIGN.md's layer table:\n" + "\n".join(bad)


def test_no_import_cycles_among_trtlab_modules():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_walk_sees_every_module_and_the_known_edges():
    graph = import_graph()
    assert {"trtlab.session", "trtlab.tables", "trtlab.widgets.panel", "trtlab.analysis.sweep.runner",
            "trtlab.precision.calibration.driver"} <= set(graph)
    # a module-level relative import and a function-level one, both seen
    assert "trtlab.tables" in {t for t, *_ in graph["trtlab.backends.onnxruntime"]}
    assert "trtlab.analysis.benchmark" in {t for t, *_ in graph["trtlab.analysis.tune"]}


# ---- the checker can fail ----------------------------------------------------------------------------
def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        p = tmp_path / "trtlab" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return {"trtlab": tmp_path / "trtlab"}


def test_an_upward_import_inside_a_function_fails(tmp_path):
    src = _package(tmp_path, {
        "__init__.py": "",
        "errors.py": "",
        "model.py": "from .errors import ModelError\n\ndef view():\n    from .session import Session\n",
        "session.py": "from .model import Model\n",
        "backends/__init__.py": "",
        "backends/base.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                            "    from trtlab.analysis.compare import X\n",
        "analysis/__init__.py": "",
        "analysis/compare.py": "import trtlab.backends.base\n",
    })
    bad = upward(import_graph(src))
    assert bad == ["trtlab.backends.base (backends) line 3 imports trtlab.analysis.compare (analysis)",
                   "trtlab.model (model) line 4 imports trtlab.session (hub)"]
    # the model <-> session pair runs at import time; backends.base's TYPE_CHECKING import never runs
    assert cycles(import_graph(src)) == [["trtlab.model", "trtlab.session"]]


def test_an_unplaced_module_and_a_cycle_within_a_layer_fail(tmp_path):
    src = _package(tmp_path, {
        "__init__.py": "",
        "gadget.py": "",
        "analysis/__init__.py": "",
        "analysis/a.py": "from . import b\n",
        "analysis/b.py": "def f():\n    from .a import g\n",
    })
    graph = import_graph(src)
    assert upward(graph) == ["trtlab.gadget: not in the layer table (add it to LAYERS in tests/test_layers.py)"]
    assert cycles(graph) == [["trtlab.analysis.a", "trtlab.analysis.b"]]


@pytest.mark.parametrize("module, layer", [("trtlab", "ui"), ("trtlab.zoo.bert", "model"),
                                           ("trtlab.precision.calibration.driver", "precision"),
                                           ("trtlab.widgets.panel", "ui"), ("trtlab.tables", "tables"),
                                           ("trtlab.unknown", None)])
def test_layer_of(module, layer):
    assert layer_of(module) == layer
