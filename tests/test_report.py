"""Session.report(): one self-contained HTML file with every stored result charted."""
from __future__ import annotations

import base64
import json
import re
import time

import numpy as np
import plotly
import pytest

from trtlab import Session, plots

from conftest import conv_model


def plotly_payloads(text: str) -> list[list[dict]]:
    """The trace lists passed to Plotly.newPlot in the page, decoded."""
    out = []
    dec = json.JSONDecoder()
    for m in re.finditer(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*", text):
        data, _end = dec.raw_decode(text, m.end())
        out.append(data)
    return out


def values(v) -> list:
    """A trace array as plotly wrote it: a list, or a typed array {"dtype", "bdata"} in base64."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    s = Session(conv_model(), workspace=ws)
    e1 = s.build("fp32", batch=2)
    e2 = s.build("fp32", batch=2, graph_optimization="disable")
    with s.monitor(interval=0.02) as mon:
        bench = s.benchmark(e1, iterations=25, warmup=2)
        while len(mon.samples) < 3:  # the tiny model runs faster than the sampling interval
            time.sleep(0.02)
    p1 = s.profile_layers(e1, runs=3, warmup=1)
    p2 = s.profile_layers(e2, runs=3, warmup=1)
    sweep = s.sweep(batch=(1, 2, 4), iterations=20, warmup=2, monitor=False)
    # an input 3e4 times larger overflows FP16 in the first Conv: a comparison with a first divergence
    big = (np.random.default_rng(0).standard_normal((2, 3, 16, 16)) * 3e4).astype(np.float32)
    overflowing = s.compare("fp32", "fp16", data=[{"input": big}])
    assert overflowing.first_divergence()["tensor"] == "c0"
    s.comparison = s.compare("fp32", "fp16")  # kept for the display test
    s.fp16_range_report()
    path = s.report(tmp_path_factory.mktemp("out") / "sub" / "report.html")
    return s, path, bench, p1, p2, sweep, overflowing, mon


def test_report_is_one_file_with_plotly_inlined_once(filled):
    _s, path, *_ = filled
    text = path.read_text(encoding="utf-8")
    assert path.name == "report.html" and text.startswith("<!DOCTYPE html>")
    assert text.count(f"plotly.js v{plotly.__version__}") <= 1  # the library banner, once
    assert len(text) > 3_000_000  # plotly.js itself (~4.5 MB) is inside
    assert not re.search(r"<script[^>]+src=", text), "no external scripts"
    assert not re.search(r"<link[^>]+href=\"http", text), "no external stylesheets"


def test_report_charts_every_kind_of_result(filled):
    s, path, bench, p1, p2, sweep, overflowing, mon = filled
    text = path.read_text(encoding="utf-8")
    for heading in ("Environment", "Engines", "Benchmarks", "Per-layer profiles", "Sweeps and tuning",
                    "Comparisons and other results", "Monitor traces", "Log"):
        assert f">{heading}</h2>" in text
    payloads = plotly_payloads(text)
    # 2 benchmark charts, 2x2 profile charts, 1 side-by-side, 1 sweep, 3 charts for each of the two comparisons,
    # 1 range report chart, 1 monitor
    assert len(payloads) == 2 + 4 + 1 + 1 + 3 + 3 + 1 + 1
    assert ">compare <span" in text and ">fp16_range <span" in text
    hist = payloads[0][0]
    assert hist["type"] == "histogram"
    assert values(hist["x"]) == pytest.approx(list(bench.latencies_ms))
    bars = [t for data in payloads for t in data if t["type"] == "bar" and t.get("orientation") == "h"]
    # the report colours layers by effective precision: one trace per label
    groups = len(set(plots.effective_labels(p1.frame)))
    shown = {y: x for t in bars[:groups] for x, y in zip(values(t["x"]), values(t["y"]))}
    assert shown == pytest.approx(dict(zip(p1.frame["name"], p1.frame["median_ms"])))
    # the overflowing comparison: deviation bars as compare measured them, the divergence at c0 marked
    frame = overflowing.to_frame()
    dev = [d for d in payloads if d[0]["type"] == "bar" and values(d[0]["x"]) == list(frame["tensor"])]
    assert any(values(d[0]["y"]) == pytest.approx(list(frame["ratio"])) for d in dev)
    marks = [t for data in payloads for t in data if t.get("name") == "first divergence"]
    assert marks and all(values(t["x"]) == [0] for t in marks)
    # the sweep: its throughput line is the sweep's measured points, in batch order
    points = sweep.to_frame().sort_values("batch")
    lines = [t for data in payloads for t in data if t.get("name") == "fp32 throughput"]
    assert len(lines) == 1 and values(lines[0]["x"]) == [1, 2, 4]
    assert values(lines[0]["y"]) == pytest.approx(list(points["throughput_ips"]))
    assert any(t.get("name", "").endswith("knee") for data in payloads for t in data)
    util = "utilization.gpu [%]" if mon.source == "nvml" else "cpu.utilization [%]"
    traces = [t for data in payloads for t in data if t.get("name") == util]
    assert len(traces) == 1
    assert values(traces[0]["y"]) == pytest.approx(list(mon.to_frame()[util].astype(float)))
    assert f"{bench.throughput:.4g}" in text
    assert s.model.name in text and "onnxruntime" in text


def test_report_of_an_empty_workspace_says_so(tmp_path):
    s = Session(conv_model(), workspace=tmp_path / "ws")
    text = s.report(tmp_path / "empty.html").read_text(encoding="utf-8")
    assert "no benchmarks in this workspace yet" in text and "no layer profiles yet" in text
    assert plotly_payloads(text) == []


def test_results_have_notebook_and_terminal_displays(filled):
    s, _path, bench, p1, *_ = filled
    eng = s.build("fp32", batch=2)
    cmp = s.comparison
    for obj, must in ((s, s.model.name), (eng, eng.name), (bench, f"{bench.throughput:.1f} qps"),
                      (p1, f"{p1.total_ms:.3f} ms"), (cmp, "fp16 vs fp32")):
        assert must in obj._repr_html_(), type(obj).__name__
        assert not repr(obj).startswith("<trtlab.") and len(repr(obj)) < 2000, type(obj).__name__
    panel = s.panel(monitor=False)
    try:
        assert repr(panel).startswith("<trtlab Panel for convnet")
        assert "application/vnd.jupyter.widget-view+json" in panel._repr_mimebundle_()
    finally:
        panel.close()
