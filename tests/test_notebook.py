"""notebooks/00-quickstart.ipynb runs top to bottom in a real ipykernel, with no errors and no stderr."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import installed

nbformat = installed("nbformat", "nbformat", 'pip install -e ".[test]"', module_level=True)
nbclient = installed("nbclient", "nbclient", 'pip install -e ".[test]"', module_level=True)

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "00-quickstart.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    work = tmp_path_factory.mktemp("nb")
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    nb = nbformat.read(work / NOTEBOOK.name, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=600,
                                     resources={"metadata": {"path": str(work)}})
    client.execute()
    return nb, work


def outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def test_quickstart_runs_without_errors_or_stderr(executed):
    nb, _work = executed
    bad = [o for o in outputs(nb) if o.output_type == "error" or (o.output_type == "stream" and o.name == "stderr")]
    assert not bad, bad


def test_quickstart_shows_benchmark_charts_panel_and_report(executed):
    nb, work = executed
    outs = outputs(nb)
    text = "".join(o.get("text", "") for o in outs if o.output_type == "stream")
    assert "=== Performance summary ===" in text and "Throughput:" in text
    figs = [o.data["application/vnd.plotly.v1+json"] for o in outs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figs) == 2 and all(f["data"] for f in figs)
    assert figs[0]["data"][0]["type"] == "histogram" and figs[1]["data"][0]["type"] == "bar"
    widgets = [o for o in outs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == 1  # the dashboard
    assert (work / "quickstart-report.html").stat().st_size > 1_000_000
    assert list((work / ".trtlab").glob("*/results/*-benchmark.json"))
