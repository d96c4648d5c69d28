"""trtlab.plots: figures built from real benchmark/profile/monitor frames, checked by reading the figure data."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from trtlab import Session, plots
from trtlab.errors import ConfigError
from trtlab.monitor import Monitor

from conftest import conv_model
from test_monitor import fake_gpu  # noqa: F401  (the fixture: pynvml answered by a fake GPU)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return Session(conv_model(), workspace=tmp_path_factory.mktemp("ws"))


@pytest.fixture(scope="module")
def profile(real_profile):
    return real_profile


@pytest.fixture(scope="module")
def bench(real_benchmark):
    return real_benchmark


def _bars(fig: go.Figure) -> pd.DataFrame:
    rows = [(t.name, y, x) for t in fig.data if t.type == "bar" for x, y in zip(t.x, t.y)]
    return pd.DataFrame(rows, columns=["trace", "name", "ms"])


def test_layer_timings_shows_every_layer_with_its_time_and_op_type(profile):
    frame = profile.to_frame()
    fig = plots.layer_timings(frame)
    bars = _bars(fig)
    assert sorted(bars["name"]) == sorted(frame["name"])
    merged = bars.merge(frame, on="name")
    np.testing.assert_allclose(merged["ms"], merged["median_ms"])
    assert (merged["trace"] == merged["op_type"]).all()  # one trace (legend entry) per op type
    # slowest layer is drawn last on the category axis (= at the top of a horizontal bar chart)
    # (microsecond timings tie: the top layer is one of the slowest, and the axis runs in time order)
    median = frame.set_index("name")["median_ms"]
    order = list(fig.layout.yaxis.categoryarray)
    assert sorted(order) == sorted(frame["name"]) and median[order[-1]] == median.max()
    assert list(median[order]) == sorted(median)
    assert "ms" in fig.layout.xaxis.title.text and fig.layout.title.text
    hover = " ".join(h for t in fig.data for h in t.hovertext)
    assert "% of total" in hover and "out: [" in hover


def test_layer_timings_top_and_precision_colouring(profile):
    frame = profile.to_frame()
    fig = plots.layer_timings(frame, color_by="precision", top=3)
    bars = _bars(fig)
    assert len(bars) == 3
    assert set(bars["name"]) == set(frame.nlargest(3, "median_ms")["name"])
    assert {t.name for t in fig.data} <= set(frame["precision"].astype(str))
    with pytest.raises(ConfigError, match="color_by"):
        plots.layer_timings(frame, color_by="colour")
    with pytest.raises(ConfigError, match="median_ms"):
        plots.layer_timings(frame.drop(columns=["median_ms"]))


def test_op_type_breakdown_treemap_and_bar_sum_to_total(profile):
    by_op = profile.by_op_type()
    tm = plots.op_type_breakdown(by_op)
    assert tm.data[0].type == "treemap"
    assert sum(tm.data[0].values) == pytest.approx(profile.total_ms)
    assert set(tm.data[0].labels) == set(profile.to_frame()["op_type"])
    bar = plots.op_type_breakdown(by_op, kind="bar")
    assert sum(t.x[0] for t in bar.data) == pytest.approx(profile.total_ms)
    with pytest.raises(ConfigError, match="treemap"):
        plots.op_type_breakdown(by_op, kind="pie")


def test_layer_comparison_pairs_layers_by_the_onnx_nodes_they_cover(mlp_session, real_profile):
    # the MLP optimized (Gemm+Relu fused: "fused fc0", ...) against the MLP with every node run as exported:
    # no layer name but fc2 is common, yet every layer pairs through the ONNX nodes it runs
    plain = mlp_session.profile_layers(mlp_session.build("fp32", batch=2, graph_optimization="disable"), runs=5,
                                       warmup=1)
    a = real_profile.to_frame().set_index("name")["median_ms"]
    b = plain.to_frame().set_index("name")["median_ms"]
    assert set(a.index) & set(b.index) == {"fc2"}
    fig = plots.layer_comparison(real_profile.to_frame(), plain.to_frame(), labels=("all", "disable"))
    fa, fb = fig.data
    assert (fa.name, fb.name) == ("all", "disable")
    ya, yb = dict(zip(fa.y, fa.x)), dict(zip(fb.y, fb.x))
    # the graph's Gemm/Relu pairs, read from the model itself: each pair is one group holding both engines' layers
    nodes = [n.name for n in mlp_session.model.proto.graph.node]
    assert nodes == ["fc0", "relu0", "fc1", "relu1", "fc2"]
    assert set(ya) == {"fc0 .. relu0 (2 nodes)", "fc1 .. relu1 (2 nodes)", "fc2"}
    assert ya["fc0 .. relu0 (2 nodes)"] == a["fused fc0"]
    assert yb["fc0 .. relu0 (2 nodes)"] == pytest.approx(b["fc0"] + b["relu0"])
    assert ya["fc2"] == a["fc2"] and yb["fc2"] == b["fc2"]
    assert "3 groups paired by ONNX node" in fig.layout.title.text and "only in" not in fig.layout.title.text
    ratio = (b["fc1"] + b["relu1"]) / a["fused fc1"]
    assert any(f"disable/all = {ratio:.2f}x" in h for h in fb.hovertext)
    last = list(fig.layout.yaxis.categoryarray)[-1]  # drawn on top: the slowest group
    assert max(ya[last], yb[last]) == max(max(ya[n], yb[n]) for n in ya)


def test_layer_comparison_of_two_real_engines(session):
    p1 = session.profile_layers(session.build("fp32", batch=2), runs=3, warmup=1)
    p2 = session.profile_layers(session.build("fp32", batch=2, graph_optimization="disable"), runs=3, warmup=1)
    fig = plots.layer_comparison(p1.to_frame(), p2.to_frame(), labels=("optimized", "unoptimized"))
    assert np.nansum(np.asarray(fig.data[0].x, dtype=float)) == pytest.approx(p1.total_ms)
    assert np.nansum(np.asarray(fig.data[1].x, dtype=float)) == pytest.approx(p2.total_ms)


def test_latency_histogram_and_timeline_use_every_iteration(bench):
    frame = bench.to_frame()
    h = plots.latency_histogram(frame)
    np.testing.assert_array_equal(h.data[0].x, bench.latencies_ms)
    lines = {round(s.x0, 9) for s in h.layout.shapes}
    assert round(bench.stats["median"], 9) in lines and round(bench.stats["p99"], 9) in lines
    assert h.layout.xaxis.title.text == "latency [ms]"
    t = plots.latency_timeline(frame)
    np.testing.assert_allclose(t.data[0].y, bench.latencies_ms)
    assert t.data[0].x[0] == 0.0 and np.all(np.diff(t.data[0].x) > 0)


def test_monitor_timeline_from_real_psutil_samples():
    with Monitor(interval=0.02, source="psutil") as m:
        time.sleep(0.3)
    frame = m.to_frame()
    fig = plots.monitor_timeline(frame)
    names = {t.name for t in fig.data}
    assert {"cpu.utilization [%]", "memory.used [MiB]"} <= names
    util = next(t for t in fig.data if t.name == "cpu.utilization [%]")
    np.testing.assert_allclose(np.asarray(util.y, dtype=float), frame["cpu.utilization [%]"].astype(float))
    assert "psutil" in fig.layout.title.text
    per_cpu = plots.monitor_timeline(frame, per_cpu=True)
    assert len(per_cpu.data) == len(fig.data) + m._source.n_cpus


def test_monitor_timeline_groups_gpu_columns(fake_gpu):
    # a real Monitor on NVML, whose pynvml calls go to the fake GPU of test_monitor (tied there to pynvml)
    with Monitor(interval=0.02, source="nvml") as m:
        while len(m.samples) < 3:
            time.sleep(0.01)
    f = m.to_frame()
    fig = plots.monitor_timeline(f)
    assert [a.text for a in fig.layout.annotations] == ["utilization [%]", "memory used [MiB]", "clock [MHz]",
                                                        "power [W]"]
    assert "NVML" in fig.layout.title.text and f"{len(f)} samples" in fig.layout.title.text
    util = next(t for t in fig.data if t.name == "utilization.gpu [%]")
    np.testing.assert_allclose(np.asarray(util.y, dtype=float), f["utilization.gpu [%]"].astype(float))


GRAPH_ORDER = ["scaled", "r", "tiny", "back", "big"]  # range_model's tensors, in the order its nodes run


def test_deviation_ratio_highlights_failures_in_graph_order(real_compare):
    frame = real_compare.to_frame()
    div = real_compare.first_divergence()
    assert div["tensor"] == "tiny" and div["index"] == 2  # the FP16 underflow branch, as range_model says
    fig = plots.deviation_ratio(frame, threshold=0.1, divergence=div)
    bar = fig.data[0]
    assert list(bar.x) == GRAPH_ORDER
    np.testing.assert_allclose(bar.y, frame["ratio"])
    # highlighted: above the tolerance, or the first divergence (counted here from the frame's own numbers)
    want = [r > 0.1 or i == 2 for i, r in enumerate(frame["ratio"])]
    assert [c == plots.PALETTE[3] for c in bar.marker.color] == want and any(want) and not all(want)
    assert f"{sum(r > 0.1 for r in frame['ratio'])} of 5 exceed tolerance; first divergence tiny" in \
        fig.layout.title.text
    assert "first divergence" in " ".join(bar.hovertext)
    plain = plots.deviation_ratio(frame)
    assert "5 tensors" in plain.layout.title.text and set(plain.data[0].marker.color) == {plots.PALETTE[0]}
    with pytest.raises(ConfigError, match="none of the columns"):
        plots.deviation_ratio(frame[["tensor", "shape"]])


@pytest.mark.parametrize("source", ["range_report", "compare"])
def test_fp16_range_counts_log_scale_with_zero_as_gap(source, real_range_report, real_compare):
    frame = real_range_report.to_frame() if source == "range_report" else real_compare.to_frame()
    prefix = "fp16_" if source == "range_report" else ""
    total = frame["elements" if source == "range_report" else "total_elements"]
    fig = plots.fp16_range_counts(frame)
    assert fig.layout.yaxis.type == "log"
    assert [t.name for t in fig.data] == ["overflow", "underflow", "subnormal"]
    for t in fig.data:
        counts = frame[prefix + t.name].to_numpy()
        assert list(t.x) == GRAPH_ORDER
        # zero counts are gaps on the log axis, the others drawn as counted
        np.testing.assert_array_equal(np.asarray(t.y, dtype=float), np.where(counts > 0, counts, np.nan))
    over = frame.set_index("tensor")[prefix + "overflow"]
    assert over["big"] > 0 and over["scaled"] == 0  # 3e4 x relu(2x) passes 65504 in FP16
    under = int(frame.set_index("tensor").loc["tiny", prefix + "underflow"])
    assert under > 0
    assert f"{under:,} of {int(total[2]):,} ({under / total[2]:.2%})" in fig.data[1].hovertext[2]
    affected = int((frame[[prefix + c for c in ("overflow", "underflow", "subnormal")]].sum(axis=1) > 0).sum())
    assert f"{affected} of 5 tensors" in fig.layout.title.text


def test_error_growth_marks_first_divergence(real_compare):
    frame = real_compare.to_frame()
    fig = plots.error_growth(frame, divergence=real_compare.first_divergence())
    np.testing.assert_allclose(fig.data[0].y, frame["rel_rms_err"])
    marker = next(t for t in fig.data if t.name == "first divergence")
    assert list(marker.x) == [2] and marker.y[0] == pytest.approx(frame["rel_rms_err"][2])
    assert fig.layout.shapes[0].x0 == 2
    assert fig.layout.yaxis.type == "log"
    assert list(fig.layout.xaxis.ticktext) == GRAPH_ORDER
    # without a divergence given, the chart finds the same one the comparison reports
    found = next(t for t in plots.error_growth(frame).data if t.name == "first divergence")
    assert list(found.x) == [2]


def test_error_growth_divergence_by_hand():
    from trtlab.analysis.compare import ComparisonResult, TensorStats, stats_frame
    rows = []
    for i, err in enumerate([1e-4, 2e-4, 1.5e-4, 1e-2, 2e-2]):
        st = TensorStats(f"t{i}")
        ref = np.ones(100, np.float32)
        st.update(ref, ref * (1 + err))
        rows.append(st)
    frame = stats_frame(rows)  # no inputs column: each row's input error is the largest before it
    fig = plots.error_growth(frame)
    marker = next(t for t in fig.data if t.name == "first divergence")
    # by hand: t3 adds 1e-2 - 2e-4 = 9.8e-3, over 4 x 2e-4 and over 10 x fp16's 2^-11 = 4.88e-3
    assert list(marker.x) == [3]
    assert fig.layout.shapes[0].x0 == 3
    assert fig.layout.yaxis.type == "log"
    # the chart marks the same tensor the comparison result reports
    assert ComparisonResult(frame, "fp32", "fp16", 1).first_divergence()["tensor"] == "t3"
    calm = plots.error_growth(stats_frame(rows[:3]))
    assert not [t for t in calm.data if t.name == "first divergence"] and "no divergence" in calm.layout.title.text


def test_throughput_vs_batch_marks_the_knee():
    sweep = pd.DataFrame({"batch": [1, 2, 4, 8, 16, 32] * 2,
                          "precision": ["fp32"] * 6 + ["fp16"] * 6,
                          "throughput_ips": [100, 190, 350, 520, 560, 570, 150, 290, 560, 900, 1000, 1010],
                          "latency_p99_ms": [1, 1.1, 1.2, 1.6, 3, 6, 0.7, 0.8, 0.8, 1, 1.8, 3.5]})
    fig = plots.throughput_vs_batch(sweep)
    knees = {t.name: (t.x[0], t.y[0]) for t in fig.data if t.name.endswith("knee")}
    assert knees == {"fp32 knee": (8, 520), "fp16 knee": (16, 1000)}
    lat = next(t for t in fig.data if t.name == "fp16 latency_p99_ms")
    assert lat.yaxis == "y2" and list(lat.y) == [0.7, 0.8, 0.8, 1, 1.8, 3.5]
    assert fig.layout.xaxis.type == "log"
    bare = plots.throughput_vs_batch(sweep[sweep.precision == "fp32"][["batch", "throughput_ips"]], color=None)
    assert len(bare.data) == 2


def test_core_import_does_not_load_plotly():
    import subprocess
    import sys
    code = "import sys, trtlab; s = trtlab.Session; print(any(m.startswith(('plotly', 'ipywidgets')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_precision_charts_from_a_real_fp16_comparison(session):
    result = session.compare("fp32", "fp16")
    frame = result.to_frame()
    dev = plots.deviation_ratio(frame)
    assert list(dev.data[0].x) == list(frame["tensor"])  # graph order
    np.testing.assert_allclose(dev.data[0].y, frame["ratio"])
    assert "elements with rel. error > 10%" in dev.layout.yaxis.title.text
    growth = plots.error_growth(frame, divergence={"tensor": frame["tensor"].iloc[2], "index": 2, "reason": "test"})
    np.testing.assert_allclose(growth.data[0].y, frame["rel_rms_err"])
    assert list(next(t for t in growth.data if t.name == "first divergence").x) == [2]
    ranges = session.fp16_range_report().to_frame()
    fig = plots.fp16_range_counts(ranges)
    assert [t.name for t in fig.data] == ["overflow", "underflow", "subnormal"]
    assert list(fig.data[0].x) == list(ranges["tensor"])
    bf = plots.fp16_range_counts(ranges, precision="bf16")
    assert "BF16" in bf.layout.title.text


def test_fp16_range_counts_counts_a_real_overflow(tmp_path):
    # x * 1e5 overflows FP16 (max 65504) in every element whose |x| > 0.655
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    g = helper.make_graph([helper.make_node("Mul", ["x", "k"], ["y"], name="scale")], "big",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1000])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1000])],
                          [numpy_helper.from_array(np.array(1e5, np.float32), "k")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    s = Session(m, workspace=tmp_path)
    x = np.linspace(-1, 1, 1000, dtype=np.float32).reshape(1, 1000)
    frame = s.fp16_range_report(data={"x": x}).to_frame()
    fig = plots.fp16_range_counts(frame)
    over = dict(zip(fig.data[0].x, fig.data[0].y))
    assert over["y"] == np.count_nonzero(np.abs(x * np.float32(1e5)) > 65504)


def test_throughput_vs_batch_from_a_real_sweep(real_sweep):
    frame = real_sweep.to_frame()
    assert set(frame["status"]) == {"ok"} and len(frame) == 6
    fig = plots.throughput_vs_batch(frame[frame["status"] == "ok"])
    for prec in ("fp32", "fp16"):
        line = next(t for t in fig.data if t.name == f"{prec} throughput")
        part = frame[(frame["precision"] == prec) & (frame["status"] == "ok")].sort_values("batch")
        assert list(line.x) == list(part["batch"])
        np.testing.assert_allclose(line.y, part["throughput_ips"])
        # the knee: the smallest batch reaching 90% of this precision's best throughput, found here by hand
        tput = part["throughput_ips"].to_numpy()
        want = min(b for b, t in zip(part["batch"], tput) if t >= 0.9 * tput.max())
        knee = next(t for t in fig.data if t.name == f"{prec} knee")
        assert knee.x[0] == want and knee.y[0] == pytest.approx(tput[list(part["batch"]).index(want)])
