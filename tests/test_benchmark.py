"""Benchmark statistics on known arrays, the summary, and per-layer profiles against the executed graph."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

import trtlab
from trtlab.analysis.benchmark import BenchmarkResult, latency_stats
from trtlab.backends.ort_optimized import coverage
from trtlab.tables import parse_ort_profile
from trtlab.errors import ConfigError


def test_latency_stats_known_array():
    a = np.arange(1, 101, dtype=float)  # 1..100 ms
    s = latency_stats(a)
    assert s["min"] == 1 and s["max"] == 100 and s["mean"] == 50.5 and s["median"] == 50.5
    assert s["p90"] == pytest.approx(np.percentile(a, 90)) == pytest.approx(90.1)
    assert s["p99"] == pytest.approx(99.01)
    assert s["std"] == pytest.approx(np.std(a))
    with pytest.raises(ConfigError, match="no latencies"):
        latency_stats(np.array([]))


def test_result_throughput_frame_and_summary_text():
    lat = np.array([2.0, 4.0, 6.0, 8.0])
    r = BenchmarkResult(engine="m fp32", batch=8, latencies_ms=lat, starts_s=np.array([10.0, 10.002, 10.006, 10.012]),
                        wall_s=0.025, warmup=2)
    assert r.throughput == pytest.approx(4 / 0.025) and r.samples_per_s == pytest.approx(8 * 4 / 0.025)
    f = r.to_frame()
    assert list(f.columns) == ["iteration", "start_s", "latency_ms"]
    np.testing.assert_allclose(f["start_s"], [0, 0.002, 0.006, 0.012])
    text = str(r)
    assert "=== Performance summary ===" in text and "Throughput: 160 qps" in text
    assert "median = 5 ms" in text and "percentile(99%)" in text
    back = BenchmarkResult.from_dict(json.loads(json.dumps(r.to_dict())))
    np.testing.assert_array_equal(back.latencies_ms, lat)
    np.testing.assert_array_equal(back.starts_s, [10.0, 10.002, 10.006, 10.012])
    assert (back.engine, back.batch, back.wall_s, back.warmup) == ("m fp32", 8, 0.025, 2)
    assert back.throughput == pytest.approx(160.0)


def test_session_benchmark_iterations_and_duration(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace)
    eng = s.build(batch=2)
    r = s.benchmark(eng, iterations=50, warmup=3)
    assert r.iterations == 50 and r.batch == 2 and (r.latencies_ms > 0).all()
    assert r.wall_s >= r.latencies_ms.sum() / 1e3 * 0.999
    assert np.all(np.diff(r.starts_s) > 0)
    d = s.benchmark(eng, duration=0.3, warmup=1)
    assert d.iterations > 1 and d.to_frame()["start_s"].iloc[-1] <= 0.3 + d.latencies_ms.max() / 1e3 + 0.3
    with pytest.raises(ConfigError, match="iterations must be positive"):
        s.benchmark(eng, iterations=0)


def test_benchmark_with_user_data(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace)
    eng = s.build(batch=(1, 4, 8))  # random feeds would be the opt batch, 4
    assert s.benchmark(eng, iterations=5).batch == 4
    x = np.ones((5, 3, 16, 16), np.float32)
    r = s.benchmark(eng, iterations=5, data={"input": x})
    assert r.batch == 5 and r.iterations == 5  # the user's batch of 5 is what ran


def _plain_ort_nodes(model, level, tmp_path) -> list[str]:
    """Node names of the graph plain ONNX Runtime (CPU) executes at an optimization level."""
    import onnx
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                   "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    so.optimized_model_filepath = str(tmp_path / f"plain-{level}.onnx")
    ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return [n.name for n in onnx.load(so.optimized_model_filepath).graph.node]


def test_profile_rows_equal_executed_nodes(tiny_model, workspace, tmp_path):
    s = trtlab.Session(tiny_model, workspace=workspace)
    assert _plain_ort_nodes(tiny_model, "disable", tmp_path) == [n.name for n in tiny_model.graph.node]
    for level in ("disable", "all"):
        eng = s.build(batch=2, graph_optimization=level)
        p = s.profile_layers(eng, runs=7, warmup=2)
        f = p.to_frame()
        # one row per node plain ONNX Runtime executes at that level (all 8 exported nodes when disabled)
        assert sorted(f["name"]) == sorted(_plain_ort_nodes(tiny_model, level, tmp_path)), level
        assert len(f) == len(eng.layers()), level
        assert (f["count"] == 7).all() and p.runs == 7
        assert f["share"].sum() == pytest.approx(1.0)
        assert (f["median_ms"] >= f["min_ms"]).all() and (f["median_ms"] <= f["max_ms"]).all()
        assert set(f["provider"]) == {"CPUExecutionProvider"}
        ops = p.by_op_type()
        assert ops["total_ms"].sum() == pytest.approx(f["median_ms"].sum())
        assert ops["layers"].sum() == len(f)
    plain = s.profile_layers(s.build(batch=2, graph_optimization="disable"), runs=3).to_frame().set_index("name")
    assert plain.loc["conv1", "input_shapes"][0] == [2, 8, 16, 16]
    assert plain.loc["fc", "output_shapes"] == [[2, 10]]


def test_parse_profile_skips_warmup_and_aggregates():
    def node(name, ts, dur):
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur,
                "args": {"op_name": "Relu", "provider": "CPUExecutionProvider",
                         "input_type_shape": [{"float": [1, 4]}], "output_type_shape": [{"float": [1, 4]}]}}
    events = []
    for k, durs in enumerate([(1000, 1000), (10, 30), (20, 40), (30, 50)]):
        t = k * 1000
        events.append({"cat": "Session", "name": "model_run", "ts": t, "dur": 900})
        events += [node("a", t + 1, durs[0]), node("b", t + 2, durs[1])]
    p = parse_ort_profile(events, skip_runs=1)
    f = p.to_frame().set_index("name")
    assert p.runs == 3 and f.loc["a", "count"] == 3
    assert f.loc["a", "median_ms"] == pytest.approx(0.020) and f.loc["b", "mean_ms"] == pytest.approx(0.040)
    assert f.loc["a", "precision"] == "fp32"
    assert f.loc["a", "share"] == pytest.approx(0.020 / 0.060)


def test_fused_coverage_traces_original_nodes(tiny_model):
    import onnx
    from onnx import helper
    opt = onnx.ModelProto()
    opt.CopyFrom(tiny_model)
    del opt.graph.node[:]
    # what ORT's Conv+Add+Relu fusion produces: one node reading input/r0, writing r1
    opt.graph.node.extend([
        helper.make_node("Conv", ["input", "w0", "b0"], ["r0"], name="conv0_fused"),
        helper.make_node("FusedConv", ["r0", "w1", "b1", "r0"], ["r1"], name="conv1_fused", domain="com.microsoft"),
        helper.make_node("GlobalAveragePool", ["r1"], ["p"], name="pool")])
    cov = coverage(tiny_model, tiny_model, opt)
    assert cov["conv0_fused"] == ["conv0", "relu0"]
    assert cov["conv1_fused"] == ["conv1", "add1", "relu1"]
    assert cov["pool"] == ["pool"]  # an unchanged node covers itself


def test_ort_fused_nodes_name_what_they_cover(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace)
    p = s.profile_layers(s.build(batch=1, graph_optimization="extended"), runs=2).to_frame()
    covered = [n for lst in p["fused_from"] for n in lst]
    # ORT fuses Conv+Relu at the extended level: the fused row names the original nodes it runs
    assert "relu0" in covered and "conv0" in covered


def test_duration_run_beyond_the_iteration_cap_says_so(tmp_path, monkeypatch):
    """A duration run that reaches MAX_ITERATIONS first reports it in the result and the log, not silently."""
    import trtlab.analysis.benchmark as bench
    monkeypatch.setattr(bench, "MAX_ITERATIONS", 500, raising=False)
    monkeypatch.setattr(bench, "BUFFER_START", 16, raising=False)
    s = trtlab.Session(trtlab.zoo.mlp(), workspace=tmp_path)
    r = s.benchmark(s.build(batch=1), duration=30.0, warmup=2)
    assert r.iterations == 500 and r.wall_s < 30.0
    assert r.stopped and "stopped after 500 iterations" in r.stopped and "MAX_ITERATIONS" in r.stopped
    assert any("MAX_ITERATIONS" in rec.message and rec.severity == "warning" for rec in s.log.records())
    assert "[W]" in str(r) and s.load_result(s.results("benchmark")["id"].iloc[-1]).stopped == r.stopped


def test_duration_run_grows_its_buffers_and_keeps_every_latency(tmp_path, monkeypatch):
    import trtlab.analysis.benchmark as bench
    monkeypatch.setattr(bench, "BUFFER_START", 16, raising=False)
    s = trtlab.Session(trtlab.zoo.mlp(), workspace=tmp_path)
    eng = s.build(batch=1)
    t0 = time.perf_counter()
    r = bench.run_benchmark(eng, duration=0.3, warmup=0)
    assert r.stopped is None and r.iterations > 64  # past several doublings of the 16-entry buffer
    lat, starts = r.latencies_ms, r.starts_s
    assert np.all(np.isfinite(lat)) and np.all(lat > 0)
    assert np.all(np.diff(starts) > 0) and starts[0] >= t0  # every entry a real, ordered measurement
    assert r.wall_s >= 0.3 and (starts[-1] - starts[0]) * 1e3 + lat[-1] <= r.wall_s * 1e3 + 1e-6
    c = bench.run_concurrent(eng, duration=0.3, warmup=0, concurrency=2)
    assert c.stopped is None and c.iterations > 64 and np.all(c.latencies_ms > 0)
