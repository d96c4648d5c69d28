"""The hub reaches the UI through registered hooks: a missing [lab] extra is a named error, not an ImportError."""
from __future__ import annotations

import subprocess
import sys

import onnx

from conftest import conv_model


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
    onnx.save(conv_model(), str(tmp_path / "m.onnx"))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)


def test_panel_without_ipywidgets_names_the_lab_extra(tmp_path):
    code = ("import sys; sys.modules['ipywidgets'] = None\n"  # as if the [lab] extra were not installed
            "import trtlab\n"
            "from trtlab.errors import ExtraNotInstalledError\n"
            "s = trtlab.Session('m.onnx', workspace='ws')\n"
            "try:\n    s.panel(monitor=False)\n"
            "except ExtraNotInstalledError as exc:\n    print('REFUSED', exc)\n")
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "REFUSED" in out.stdout and "pip install 'trtlab[lab]'" in out.stdout and "ipywidgets" in out.stdout


def test_the_hub_imports_no_ui_module():
    """session.py and its parts name no UI module in any import, at module level or inside a method."""
    import ast
    from pathlib import Path

    import trtlab
    root = Path(trtlab.__file__).parent
    found = []
    for name in ("session.py", "engines.py", "lab.py", "tuning.py"):
        for node in ast.walk(ast.parse((root / name).read_text())):
            if isinstance(node, ast.ImportFrom):
                mods = [("." * node.level) + (node.module or "")] + [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            found += [f"{name}: {m}" for m in mods if m.split(".")[-1] in ("widgets", "report")
                      or m.lstrip(".").startswith(("widgets", "report", "trtlab.widgets", "trtlab.report"))]
    assert found == []
