"""Hostile names (model, node, tensor, file, trtexec layer and device names) never become markup.

A model whose names hold `<img src=x onerror=...>` is run for real on ONNX Runtime through every analysis; a
vendored trtexec export is edited the same way. Every `_repr_html_`, the panel's widget HTML, the report and the
plotly figures are then checked: statically (no tag from a name survives) and in real Chromium (no script runs,
no dialog opens, no link from a name is drawn in a chart, and the names are shown as text).
"""
from __future__ import annotations

import html
import importlib
import inspect
import json
import os
import pkgutil
import shutil
from pathlib import Path
from typing import Any

import ipywidgets as W
import numpy as np
import onnx
import plotly.graph_objects as go
import plotly.io as pio
import pytest

import trtlab
from trtlab import Session, plots
from trtlab.trtexec import load_trtexec

from conftest import conv_model, wait_for

IMG = '<img src=x onerror="window.__pwned=1">'
SCRIPT = '"><script>window.__pwned=1; alert(1)</script>'
SVG = "<svg onload=window.__pwned=1>"  # no "/": it is also the model's file name
LINK = '<a href="https://evil.example/">'  # plotly draws <a href> in labels as a link
HOSTILE = (IMG, SCRIPT, SVG, LINK)
# what an unescaped name leaves in HTML or plotly text: the start of each hostile tag
RAW = ("<img src=x", "<script>window", "<svg onload", '<a href="https://evil')

CHROMIUM = os.environ.get("TRTLAB_CHROMIUM", "/usr/bin/chromium")
TRTEXEC_DATA = Path(__file__).resolve().parent / "data" / "trtexec"  # real exports vendored in the repository
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"


def hostile_model() -> onnx.ModelProto:
    """The conftest conv net with every graph, node, input, output and activation name made hostile."""
    m = conv_model()
    g = m.graph
    g.name = IMG + "graph"
    weights = {i.name for i in g.initializer}
    renamed: dict[str, str] = {}

    def tensor(name: str) -> str:
        if name not in renamed:
            renamed[name] = HOSTILE[len(renamed) % len(HOSTILE)] + name
        return renamed[name]

    for k, node in enumerate(g.node):
        node.name = HOSTILE[k % len(HOSTILE)] + node.name
        for i, t in enumerate(node.input):
            if t not in weights:
                node.input[i] = tensor(t)
        for i, t in enumerate(node.output):
            node.output[i] = tensor(t)
    for vi in list(g.input) + list(g.output):
        vi.name = tensor(vi.name)
    return m


def hostile_trtexec(tmp: Path) -> Path:
    """A copy of a real trtexec export whose Model path, layer names, layer types and device are hostile."""
    src = TRTEXEC_DATA / "resnet18-a100-fp16"
    dst = tmp / "trtexec-export"
    shutil.copytree(src, dst)
    for p in dst.iterdir():
        p.chmod(0o644)
    build = json.loads((dst / "engine.build.metadata.json").read_text())
    build["model_options"]["Model"] = f"./generated/{SVG}.onnx"
    (dst / "engine.build.metadata.json").write_text(json.dumps(build))
    meta = json.loads((dst / "engine.profile.metadata.json").read_text())
    meta["device_information"]["Selected Device"] = IMG + "A100"
    (dst / "engine.profile.metadata.json").write_text(json.dumps(meta))
    graph = json.loads((dst / "engine.graph.json").read_text())
    rename = {}
    for k, layer in enumerate(graph["Layers"][:8]):
        rename[layer["Name"]] = HOSTILE[k % len(HOSTILE)] + layer["Name"]
        layer["Name"] = rename[layer["Name"]]
        layer["LayerType"] = SCRIPT + layer["LayerType"]
    (dst / "engine.graph.json").write_text(json.dumps(graph))
    prof = json.loads((dst / "engine.profile.json").read_text())
    for rec in prof[1:]:
        rec["name"] = rename.get(rec["name"], rec["name"])
    (dst / "engine.profile.json").write_text(json.dumps(prof))
    return dst


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A Session on the hostile model (loaded from a file with a hostile name) and one result of every kind."""
    tmp = tmp_path_factory.mktemp("hostile")
    path = tmp / f"{SVG}.onnx"
    onnx.save(hostile_model(), path)
    s = Session(path, workspace=tmp / "ws")
    eng = s.build("fp32", batch=1)
    results: dict[str, Any] = {
        "session": s, "info": s.info(), "environment": s.info()["environment"], "engine": eng,
        "benchmark": s.benchmark(eng, iterations=20, warmup=1),
        "profile": s.profile_layers(eng, runs=2, warmup=1),
        "profile (unoptimized)": s.profile_layers(s.build("fp32", batch=1, graph_optimization="disable"),
                                                  runs=2, warmup=1),
        "compare": s.compare("fp32", "fp16"),
        "range report": s.fp16_range_report(),
        "find fp32 layers": s.find_fp32_layers("fp16", tolerance=1e-7, max_steps=3),
        "sweep": s.sweep(batch=(1, 2), iterations=5, warmup=1, monitor=False),
        "tune": s.tune(budget_s=2, trial_s=0.2, precisions=["fp32"]),
        "pareto": s.pareto(candidates=["fp16"], pins=[0, 1], trial_s=0.05, warmup=1),
        "thread safety": s.check_thread_safety(eng, threads=2, iterations=3),
        "effective precision": s.build("fp16", batch=1).effective_precision(),
    }
    rep = load_trtexec(hostile_trtexec(tmp))
    results["trtexec profile"] = rep.profile()
    results["trtexec benchmark"] = rep.benchmark()
    return {"session": s, "results": results, "tmp": tmp}


def repr_html_classes() -> set[type]:
    """Every trtlab class that defines _repr_html_ (importing each trtlab module that imports here)."""
    found = set()
    for info in pkgutil.walk_packages(trtlab.__path__, "trtlab."):
        if info.name.endswith("__main__"):
            continue
        try:
            mod = importlib.import_module(info.name)
        except ImportError:
            continue
        for _n, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ == mod.__name__ and "_repr_html_" in vars(cls):
                found.add(cls)
    return found


def raw_tags(text: str) -> list[str]:
    low = text.lower()
    return [t for t in RAW if t in low]


# ---- static checks -----------------------------------------------------------------------------------------
def test_the_hostile_names_reach_the_results(hostile):
    s = hostile["session"]
    assert s.model.name == SVG and s.model.proto.graph.name == IMG + "graph"
    assert all(any(h in n for h in HOSTILE) for n in s.model.node_names)
    assert any(h in hostile["results"]["profile"].engine for h in HOSTILE)
    tp = hostile["results"]["trtexec profile"]
    assert tp.engine == SVG and any(IMG in n for n in tp.frame["name"])
    assert IMG in hostile["results"]["trtexec benchmark"].device


def test_every_result_type_with_html_is_covered(hostile):
    objs = hostile["results"].values()
    missing = [c.__qualname__ for c in repr_html_classes() if not any(isinstance(o, c) for o in objs)]
    assert not missing, f"result types with _repr_html_ that this test does not render: {missing}"


@pytest.mark.parametrize("kind", ["session", "info", "environment", "engine", "benchmark", "profile", "compare",
                                  "range report", "find fp32 layers", "sweep", "tune", "thread safety",
                                  "trtexec profile", "trtexec benchmark", "pareto"])
def test_repr_html_escapes_every_name(hostile, kind):
    text = hostile["results"][kind]._repr_html_()
    assert not raw_tags(text), f"{kind}: a name became markup: {raw_tags(text)}\n{text[:2000]}"
    if kind not in ("environment", "sweep", "tune"):  # these show no model names
        assert "&lt;" in text, f"{kind}: no name shown at all (the check above would be vacuous)"


def test_markdown_table_escapes_names():
    from trtlab.analysis.sweep import markdown_table
    import pandas as pd
    md = markdown_table(pd.DataFrame({IMG: [SCRIPT], "n": [LINK + "|x"]}))
    assert not raw_tags(md) and "\\|x" in md
    assert html.unescape(md.replace("\\|", "|")).count("window.__pwned=1") == 2


# which keys of a plotly figure's JSON plotly draws as (HTML-subset) text
TEXT_KEYS = {"text", "hovertext", "hovertemplate", "name", "ticktext", "labels", "title"}


def figure_texts(fig: go.Figure) -> list[str]:
    """Every string of the figure that plotly renders as rich text (labels, hover, legend, titles, ticks)."""
    out: list[str] = []

    def walk(v: Any, key: str | None, rich: bool) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, k, rich or k in TEXT_KEYS)
        elif isinstance(v, (list, tuple, np.ndarray)):
            for x in list(v):
                walk(x, key, rich)
        elif isinstance(v, str) and rich:
            out.append(v)

    js = fig.to_plotly_json()
    for trace in js["data"]:
        walk(trace, None, False)
        if "customdata" in (trace.get("hovertemplate") or ""):
            walk(trace.get("customdata"), None, True)
    walk(js["layout"], None, False)
    # category axes label their ticks with the category values unless ticktext replaces them
    for axis in ("x", "y"):
        if "ticktext" not in js["layout"].get(axis + "axis", {}):
            for trace in js["data"]:
                vals = trace.get(axis)
                out.extend(v for v in (list(vals) if vals is not None else []) if isinstance(v, str))
    return out


def hostile_figures(results: dict[str, Any]) -> dict[str, go.Figure]:
    prof, prof2 = results["profile"], results["profile (unoptimized)"]
    cmp = results["compare"].to_frame()
    div = results["compare"].first_divergence()
    figs = {
        "layer timings": plots.layer_timings(prof.frame),
        "layer timings by precision": plots.layer_timings(prof.frame, color_by="precision"),
        "op types treemap": plots.op_type_breakdown(prof.by_op_type()),
        "op types bar": plots.op_type_breakdown(prof.by_op_type(), kind="bar"),
        "layer comparison": plots.layer_comparison(prof.frame, prof2.frame, (prof.engine, prof2.engine)),
        "deviation ratio": plots.deviation_ratio(cmp, divergence=div or cmp["tensor"].iloc[2]),
        "error growth": plots.error_growth(cmp, divergence=div or cmp["tensor"].iloc[2]),
        "fp16 range counts": plots.fp16_range_counts(results["range report"].to_frame()),
        "empty": plots.empty_figure("not drawn", f"no column {IMG}"),
        "pareto front": results["pareto"].figure(),
    }
    tp = results["trtexec profile"]
    figs["trtexec layer timings"] = plots.layer_timings(tp.frame, top=20)
    figs["trtexec op types"] = plots.op_type_breakdown(tp.by_op_type())
    return figs


def test_plot_labels_escape_names(hostile):
    figs = hostile_figures(hostile["results"])
    for what, fig in figs.items():
        texts = figure_texts(fig)
        bad = [t for t in texts if raw_tags(t)]
        assert not bad, f"{what}: plotly would draw these names as markup: {bad[:5]}"
        if what not in ("op types treemap", "op types bar"):  # ONNX Runtime's op types are the real ones
            assert any("&lt;" in t for t in texts), f"{what}: no hostile name in its labels (vacuous check)"
    # the data keeps the real names: clicks and lookups still find the tensor and layer
    fig = figs["deviation ratio"]
    assert list(fig.data[0].x) == list(hostile["results"]["compare"].to_frame()["tensor"].astype(str))
    assert {y for t in figs["layer timings"].data for y in t.y} == set(hostile["results"]["profile"].frame["name"])


# ---- the panel, driven as a user would -------------------------------------------------------------------------
def walk_widgets(w: Any):
    yield w
    for c in getattr(w, "children", ()) or ():
        yield from walk_widgets(c)


@pytest.fixture(scope="module")
def hostile_panel(hostile):
    s = hostile["session"]
    panel = s.panel(monitor=False)
    try:
        node = s.model.node_names[1]
        tensor = s.model.activation_names()[2]
        panel.build.precision.value = "fp16"
        panel.build.pins.set([node])
        panel.outputs.set([tensor])
        panel.build.build_button.click()
        job = panel.build.job
        wait_for(lambda: job.done and not panel.build.build_button.disabled, "the build")
        assert "trtlab-ok" in panel.build.result.value, panel.build.result.value
        panel.build.bench.iterations.value = 20
        panel.build.bench.button.click()
        job = panel.build.bench.job
        wait_for(lambda: job.done and "qps" in panel.build.bench.status.value, "the benchmark")
        panel.outputs.set([])
        panel.build.pins.set([])
        panel.build.precision.value = "fp32"
        for eng in list(panel.build.engines) + [s.build("fp32", batch=1, graph_optimization="disable")]:
            panel.add_engine(eng)
            panel.layers.engine.value = eng
            panel.layers.runs.value = 2
            panel.layers.profile_button.click()
            wait_for(lambda e=eng: "total" in panel.layers.status.value and panel.layers.job.done,
                     f"the profile of {eng.name}")
        tab = panel.precision
        tab.compare_button.click()
        job = tab.job
        wait_for(lambda: job.done and "tensors compared" in tab.status.value, "the comparison")
        tab.pin_tensor(tensor)
        pinned = tab.pin_note.value
        tab.range_button.click()
        job = tab.job
        wait_for(lambda: job.done and "range report" in tab.status.value, "the range report")
        tab.pin_tensor(s.model.inputs[0].name)  # an input: "not produced by a layer"
        panel.log.refresh()
        html_values = {f"{type(w).__name__} {i}": w.value for i, w in enumerate(walk_widgets(panel.widget))
                       if isinstance(w, W.HTML) and w.value}
        html_values["pin note"] = pinned
        figures = {f"figure {i}": go.Figure(w) for i, w in enumerate(walk_widgets(panel.widget))
                   if isinstance(w, go.FigureWidget) and w.data}
        yield {"panel": panel, "html": html_values, "figures": figures}
    finally:
        panel.close()


def test_panel_widget_html_escapes_names(hostile_panel):
    values = hostile_panel["html"]
    bad = {k: raw_tags(v) for k, v in values.items() if raw_tags(v)}
    assert not bad, bad
    shown = [k for k, v in values.items() if "&lt;" in v]
    assert len(shown) >= 6, f"hostile names shown escaped in only {shown}"  # header, status, tables, log, ...
    for what, fig in hostile_panel["figures"].items():
        bad_texts = [t for t in figure_texts(fig) if raw_tags(t)]
        assert not bad_texts, f"{what} ({fig.layout.title.text}): {bad_texts[:5]}"


def test_report_escapes_names(hostile):
    s = hostile["session"]
    path = s.report(hostile["tmp"] / "report.html")
    text = path.read_text()
    body = text.split("</head>", 1)[1]  # the head holds plotly.js itself
    assert not raw_tags(body), raw_tags(body)
    assert html.escape(SVG) in body


# ---- real Chromium ---------------------------------------------------------------------------------------------
def chromium():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set TRTLAB_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed")
    return sync_playwright


# canaries proving that the page runs inline scripts and error handlers, so "not pwned" means something
CANARY = ('<script>window.__canary_script = 1</script>'
          '<img src="data:," onerror="window.__canary_img = 1" style="display:none">')


def page_of(parts: dict[str, str], figures: dict[str, go.Figure]) -> str:
    from plotly.offline import get_plotlyjs
    body = "".join(f"<section><h2>{html.escape(k)}</h2>{v}</section>" for k, v in parts.items())
    charts = "".join(f"<section class='chart'>{pio.to_html(f, include_plotlyjs=False, full_html=False)}</section>"
                     for f in figures.values())
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><script>{get_plotlyjs()}</script></head>"
            f"<body>{CANARY}{body}{charts}</body></html>")


def check_page(page, n_plots: int) -> None:
    """No script from a name ran; the canaries did; charts draw no link; the names are visible as text."""
    page.wait_for_function("() => window.__canary_script === 1 && window.__canary_img === 1", timeout=30_000)
    if n_plots:
        page.wait_for_function(f"""() => [...document.querySelectorAll('.js-plotly-plot')]
                                          .filter(e => e.querySelector('.main-svg')).length >= {n_plots}""",
                               timeout=60_000)
    page.wait_for_load_state("load")
    page.wait_for_timeout(300)  # let any error handler of a failed image fire
    assert page.evaluate("() => window.__pwned") is None
    links = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot svg a, a[href*="evil.example"]')]
                                   .map(a => a.outerHTML)""")
    assert not links, links
    text = page.evaluate("() => document.body.innerText")
    assert IMG in text or SVG in text, "the hostile names are not shown as text"


@pytest.mark.browser
def test_chromium_runs_no_script_from_names_in_results_widgets_and_charts(hostile, hostile_panel):
    sync_playwright = chromium()
    parts = {k: v._repr_html_() for k, v in hostile["results"].items()}
    parts.update(hostile_panel["html"])
    figures = {**hostile_figures(hostile["results"]), **hostile_panel["figures"]}
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.set_content(page_of(parts, figures), wait_until="load")
            check_page(page, len(figures))
            # the tick labels of the charts show the names literally, link tag included
            ticks = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot .ytick text, "
                                  ".js-plotly-plot .xtick text')].map(e => e.textContent)")
            assert any(t.startswith(LINK) for t in ticks), ticks[:20]
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.locator(".chart").first.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOTS / "hostile-names.png"), full_page=False)
        finally:
            browser.close()
    assert dialogs == []


@pytest.mark.browser
def test_chromium_report_with_hostile_names_runs_no_script(hostile):
    sync_playwright = chromium()
    path = hostile["session"].report(hostile["tmp"] / "report-browser.html")
    text = path.read_text(encoding="utf-8")
    assert text.count("<body>") == 1
    path.write_text(text.replace("<body>", "<body>" + CANARY), encoding="utf-8")
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.route("http*://**/*", lambda route: route.abort())
            page.goto(path.as_uri())
            check_page(page, 4)  # latency histogram and timeline, layer timings, op types
        finally:
            browser.close()
    assert dialogs == []
