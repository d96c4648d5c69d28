"""Every dependency pyproject.toml declares is imported by the package (or is a program it runs), and the reverse."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# needed but never imported: `trtlab lab` runs `python -m jupyter lab`, whose notebooks run in an ipykernel
PROGRAMS = {"jupyterlab", "ipykernel"}
# needed but imported only by a library we use: plotly's FigureWidget (the dashboard's charts) subclasses
# anywidget.AnyWidget, and plotly does not declare anywidget outside its dev extras
RUNTIME_OF_LIBRARIES = {"anywidget": "plotly.basewidget"}


def _imported_modules() -> set[str]:
    mods = set()
    for folder in ("trtlab", "widgets"):
        for f in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.Import):
                    mods |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    mods.add(node.module.split(".")[0])
    return mods


def _dist_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_declared_dependencies_are_imported():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [_dist_name(r) for r in project["dependencies"] + project["optional-dependencies"]["lab"]]
    provides: dict[str, set[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for d in dists:
            provides.setdefault(d.lower().replace("_", "-"), set()).add(module)
    imported = _imported_modules()
    unused = [d for d in declared if d not in PROGRAMS and d not in RUNTIME_OF_LIBRARIES
              and not provides.get(d, set()) & imported]
    assert not unused, f"declared but never imported: {unused}"


def test_third_party_imports_are_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_dist_name(r) for reqs in [project["dependencies"], *project["optional-dependencies"].values()]
                for r in reqs}
    owners = metadata.packages_distributions()
    undeclared = set()
    for module in _imported_modules() - set(sys.stdlib_module_names) - {"trtlab"}:
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [])}
        if dists and not dists & declared:
            undeclared.add(module)
    # optional runtimes found at run time when installed (imported lazily behind availability checks)
    assert undeclared <= {"tensorrt", "tensorrt_rtx", "cuda", "cupy", "ray", "optuna"}, undeclared


def test_libraries_that_need_an_undeclared_runtime_still_import_it():
    """Each RUNTIME_OF_LIBRARIES entry is real: the library module imports the runtime (else drop the entry)."""
    import importlib.util
    for dist, module in RUNTIME_OF_LIBRARIES.items():
        source = Path(importlib.util.find_spec(module).origin).read_text()
        assert re.search(rf"^\s*(import|from) {dist}\b", source, re.M), (dist, module)
