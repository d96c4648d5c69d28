"""Sweeps: points against direct benchmarks, utilization per point, resume after cancel, the knee detector."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from trtlab.analysis.benchmark import run_concurrent
from trtlab.analysis.knee import find_knee, knee_sentence
from trtlab.analysis.sweep import SweepResult, SweepSpec, load_sweep, point_key
from trtlab.model import output_shapes
from trtlab.errors import CancelledError, ConfigError
from trtlab.monitor import Monitor
from trtlab.session import Session

from conftest import conv_model


@pytest.fixture
def session(tmp_path):
    return Session(conv_model(channels=4, size=8), workspace=tmp_path / "ws")


def test_sweep_points_match_direct_benchmarks(session):
    # the test's own clock at each "point i of n" progress event: point i runs between stamps i and i+1
    stamps: list[float] = []

    def stamp(kind, p):
        if kind == "progress" and p.task.startswith("sweep") and ":" not in p.task:
            stamps.append(time.perf_counter())
    unsubscribe = session.events.subscribe(stamp)
    # 1000 iterations a point (tens of ms on this tiny model) so one scheduler stall cannot dominate a point
    try:
        sw = session.sweep(batch=[1, 4], concurrency=[1, 2], iterations=1000, warmup=20, monitor=False)
    finally:
        unsubscribe()
    f = sw.to_frame()
    assert len(stamps) == len(f) + 1
    # the cartesian product, in spec order, all successful
    assert list(zip(f["batch"], f["concurrency"])) == [(1, 1), (1, 2), (4, 1), (4, 2)]
    assert (f["status"] == "ok").all() and sw.complete and sw.missing == []
    seen = set()
    for i, row in f.iterrows():
        engine = session.build(batch=int(row["batch"]))
        # the sweep released its engines: the first build of each reloads it from the workspace (no new build)
        assert engine.metadata["cache"] == ("memory" if row["batch"] in seen else "disk")
        seen.add(row["batch"])
        assert row["engine_key"] == engine.config.key
        direct = session.benchmark(engine, iterations=1000, warmup=20) if row["concurrency"] == 1 else \
            run_concurrent(engine, None, 2, iterations=1000, warmup=20)
        # structural equalities are exact: iterations (per thread), batch, engine
        assert row["iterations"] == direct.iterations == 1000 * row["concurrency"]
        assert direct.batch == row["batch"] and direct.engine == row["engine"]
        # throughput bounds: the timed iterations ran inside [t_start, t_end], itself inside the point's window on
        # the test's clock; c threads each running its inferences back to back finish no faster than
        # c / mean latency. samples/s is the same bounds times the batch
        assert stamps[i] <= row["t_start"] < row["t_end"] <= stamps[i + 1]
        lo = row["iterations"] / (row["t_end"] - row["t_start"])
        hi = row["concurrency"] / (row["latency_mean_ms"] / 1e3)
        assert lo * 0.999 <= row["throughput_ips"] <= hi * 1.001, (lo, row["throughput_ips"], hi)
        assert lo * row["batch"] * 0.999 <= row["samples_per_s"] <= hi * row["batch"] * 1.001
        # timings agree loosely (CPUs here are noisy and shared)
        assert 0.1 < row["throughput_ips"] / direct.throughput < 10
        assert 0.2 < row["latency_median_ms"] / direct.stats["median"] < 5
        assert row["latency_median_ms"] <= row["latency_p99_ms"] <= row["latency_max_ms"]
    # the sweep is written to the workspace as a result and as JSONL points
    assert len(session.results("sweep")) == 1
    assert len((sw.path / "points.jsonl").read_text().splitlines()) == 4


def test_each_point_carries_its_utilization_window(session):
    mon = Monitor(interval=0.01, source="psutil").start()
    try:
        sw = session.sweep(batch=[1, 2], concurrency=[1, 2], duration=0.3, warmup=2, monitor=mon)
    finally:
        mon.stop()
    for r in sw.records:
        # a 10 ms sampler on shared CPUs can be starved for much of a 0.3 s point: at least one sample, and
        # exactly the ones stamped inside the point (below)
        assert r["util_source"] == "cpu" and r["util_samples"] >= 1
        assert 0 <= r["util_mean_pct"] <= r["util_peak_pct"] <= 100
        # exactly the monitor's samples stamped inside the point's timed iterations, counted and averaged here
        inside = [s for s in mon.samples if r["t_start"] <= s["perf_counter"] <= r["t_end"]]
        util = [float(s["cpu.utilization [%]"]) for s in inside]
        assert r["util_samples"] == len(inside)
        assert r["util_mean_pct"] == pytest.approx(np.mean(util))
        assert r["util_peak_pct"] == pytest.approx(np.max(util))
    windows = sorted((r["t_start"], r["t_end"]) for r in sw.records)
    assert all(a[1] <= b[0] for a, b in zip(windows, windows[1:]))  # points do not overlap


def test_monitor_true_starts_and_stores_its_own_samples(session):
    sw = session.sweep(batch=[1], iterations=5, warmup=1, monitor=0.01)
    assert (sw.path / "monitor.csv").exists()
    assert pd.read_csv(sw.path / "monitor.csv").shape[0] >= 1


def test_interrupted_sweep_resumes_only_the_remaining_points(session):
    batches, k = [1, 2, 3, 4, 5], 2
    n = len(batches)
    seen: list[int] = []

    def stop_after_k(kind, p):
        # the sweep's own progress (not a point's) says "point i+1 of n" before point i+1 starts
        if kind == "progress" and p.task.startswith("sweep") and ":" not in p.task and p.total == n:
            seen.append(p.done)
            if p.done == k:
                while not session.jobs:
                    time.sleep(0.001)
                session.cancel_all()
    unsubscribe = session.events.subscribe(stop_after_k)
    job = session.sweep(batch=batches, iterations=5, warmup=1, monitor=False, background=True)
    with pytest.raises(CancelledError, match="cancelled"):
        job.result(timeout=120)
    unsubscribe()
    assert job.status == "cancelled"
    spec = SweepSpec.make(batch=batches, iterations=5, warmup=1)
    partial = load_sweep(session.workspace.path / "sweeps" / spec.id)
    assert [r["batch"] for r in partial.records] == batches[:k]
    assert not partial.complete and [p["batch"] for p in partial.missing] == batches[k:]
    first = {point_key(r): r["finished"] for r in partial.records}

    ran: list[int] = []
    unsubscribe = session.events.subscribe(
        lambda kind, p: ran.append(p.task) if kind == "progress" and p.message.startswith("point") else None)
    done = session.sweep(batch=batches, iterations=5, warmup=1, monitor=False, resume=True)
    unsubscribe()
    assert done.ran == n - k and done.complete
    assert [r["batch"] for r in done.records] == batches
    # the finished points were kept, not run again
    assert all(first[point_key(r)] == r["finished"] for r in done.records[:k])
    lines = [json.loads(x) for x in (done.path / "points.jsonl").read_text().splitlines()]
    assert [x["batch"] for x in lines] == batches
    # resuming by id needs no arguments and runs nothing more
    again = session.sweep(resume=done.id)
    assert again.ran == 0 and again.complete


def test_torn_last_line_is_ignored_and_rerun(session):
    sw = session.sweep(batch=[1, 2], iterations=3, warmup=1, monitor=False)
    path = sw.path / "points.jsonl"
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # a crash while writing the 2nd point
    assert [r["batch"] for r in load_sweep(sw.path).records] == [1]
    again = session.sweep(batch=[1, 2], iterations=3, warmup=1, monitor=False, resume=True)
    assert again.ran == 1 and again.complete


def test_failed_points_are_recorded_once_and_retried_only_when_asked(session):
    # fp8 passes the up-front option check but ONNX Runtime refuses it when the point builds
    sw = session.sweep(batch=[1], precision=["fp32", "fp8"], iterations=3, warmup=1, monitor=False)
    f = sw.to_frame()
    assert list(f["precision"]) == ["fp32", "fp8"]
    assert list(f["status"]) == ["ok", "error"]
    assert "FP8" in f["error"].iloc[1]
    assert "1 point(s) failed" in sw.describe()
    again = session.sweep(batch=[1], precision=["fp32", "fp8"], iterations=3, warmup=1, monitor=False, resume=True)
    assert again.ran == 0 and again.missing == []  # a deterministic failure is not retried forever
    lines = [json.loads(x) for x in (sw.path / "points.jsonl").read_text().splitlines()]
    assert [(x["precision"], x["status"]) for x in lines] == [("fp32", "ok"), ("fp8", "error")]
    retried = session.sweep(batch=[1], precision=["fp32", "fp8"], iterations=3, warmup=1, monitor=False,
                            resume=True, retry_failed=True)
    assert retried.ran == 1  # only the failed point is tried again


def test_an_invalid_option_value_is_refused_before_any_point_runs(session):
    with pytest.raises(ConfigError, match="graph_optimization='bogus' is not valid"):
        session.sweep(batch=[1], options={"graph_optimization": ["basic", "bogus"]}, iterations=3, monitor=False)
    assert not (session.workspace.path / "sweeps").exists() or not any((session.workspace.path / "sweeps").iterdir())


def test_spec_validation():
    with pytest.raises(ConfigError, match="positive integers"):
        SweepSpec.make(batch=[0, 2])
    with pytest.raises(ConfigError, match="has no values"):
        SweepSpec.make(options={"graph_optimization": []})
    a = SweepSpec.make(batch=[1, 2], options={"cuda_options": [{"prefer_nhwc": "1"}]})
    assert SweepSpec.from_dict(json.loads(json.dumps(a.to_dict()))) == a and a.id.startswith("sweep-")
    assert a.points()[0]["options"] == {"cuda_options": {"prefer_nhwc": "1"}}


# ---- the knee on crafted curves ------------------------------------------------------------------
BATCHES = [1, 2, 4, 8, 16, 32, 64]


@pytest.mark.parametrize("curve, knee_batch, saturated", [
    ([100, 200, 400, 800, 1500, 1560, 1580], 16, True),       # saturates at 16 (1500 >= 0.9 * 1580)
    ([100, 200, 400, 800, 1600, 3200, 6400], 64, False),      # linear: still growing at the largest batch
    ([100, 190, 350, 750, 800, 700, 500], 8, True),           # peaks then falls (cache thrash): knee before peak
    ([500, 990, 1000, 1010, 995, 1005, 1000], 2, True),       # noisy plateau from batch 2
    ([100, 200, 400, 800, 1300, 1500, 1560], 32, True),        # 1300 < 0.9*1560 = 1404 <= 1500
])
def test_knee_on_crafted_curves(curve, knee_batch, saturated):
    k = find_knee(BATCHES, curve)
    assert k.batch == knee_batch and k.saturated is saturated
    assert k.best_throughput == max(curve) and k.max_batch == 64
    assert k.throughput >= 0.9 * max(curve)
    # every smaller batch is below the fraction: this is the smallest batch reaching it
    assert all(t < 0.9 * max(curve) for b, t in zip(BATCHES, curve) if b < knee_batch)


def test_knee_ignores_order_and_nan():
    k = find_knee([64, 1, 16, 4, 8], [1000, 100, 950, float("nan"), 700])
    assert k.batch == 16 and k.saturated
    assert find_knee([8], [10.0]).batch == 8 and not find_knee([8], [10.0]).saturated
    assert find_knee([], []).batch is None
    assert find_knee([1, 2, 4], [10, 10, 10]).batch == 1  # a flat curve: the smallest batch is already the best
    with pytest.raises(ConfigError, match="fraction"):
        find_knee([1, 2], [1, 2], fraction=1.5)


def test_knee_sentences():
    sat = find_knee(BATCHES, [100, 200, 400, 800, 1500, 1560, 1580])
    s = knee_sentence(sat, "fp16", util_pct=97.0, util_source="gpu")
    assert "throughput stops growing after batch 16" in s and "device is saturated" in s
    assert "TensorRT FAQ 6" in s and "97%" in s and "starved" not in s
    low = knee_sentence(sat, "fp16", util_pct=35.0, util_source="gpu")
    assert "starved" in low and "TensorRT FAQ 4" in low
    grow = knee_sentence(find_knee(BATCHES, [1, 2, 4, 8, 16, 32, 64]))
    assert "still growing at the largest batch 64" in grow and "+100%" in grow
    assert "only batch 8" in knee_sentence(find_knee([8], [1.0]))


def crafted(curves: dict[tuple[str, int], list[float]], latency=lambda b: 0.5 * b) -> SweepResult:
    spec = SweepSpec.make(batch=BATCHES, precision=sorted({p for p, _ in curves}),
                          concurrency=sorted({c for _, c in curves}))
    recs = []
    for (p, c), tps in curves.items():
        for b, t in zip(BATCHES, tps):
            recs.append({"precision": p, "batch": b, "concurrency": c, "options": {}, "status": "ok",
                         "samples_per_s": float(t), "throughput_ips": t / b, "latency_median_ms": latency(b),
                         "latency_p99_ms": 1.5 * latency(b), "util_mean_pct": min(100.0, t / 16),
                         "util_source": "gpu"})
    return SweepResult(recs, spec)


def test_sweep_result_knees_best_and_plot():
    sw = crafted({("fp32", 1): [100, 200, 400, 800, 1500, 1560, 1580],
                  ("fp16", 1): [200, 400, 800, 1600, 3000, 3100, 3150]})
    kn = sw.knees()
    assert sorted(kn["curve"]) == ["fp16", "fp32"]  # one concurrency: the label is the precision alone
    assert dict(zip(kn["precision"], kn["knee_batch"])) == {"fp32": 16, "fp16": 16}
    assert "stops growing after batch 16" in sw.describe()
    assert sw.best()["precision"] == "fp16" and sw.best()["batch"] == 64
    # p99 = 0.75 ms x batch: a 10 ms budget allows batch <= 8
    best = sw.best(latency_budget_ms=10)
    assert (best["precision"], best["batch"]) == ("fp16", 8)
    assert sw.best(objective="latency")["batch"] == 1
    with pytest.raises(ConfigError, match="within 0.1 ms"):
        sw.best(latency_budget_ms=0.1)
    with pytest.raises(ConfigError, match="objective"):
        sw.best(objective="speed")
    fig = sw.plot()
    stars = [t for t in fig.data if t.name and t.name.endswith("knee")]
    assert sorted(t.x[0] for t in stars) == [16, 16]
    assert sw.knee(precision="fp32").batch == 16
    with pytest.raises(ConfigError, match="2 curves"):
        sw.knee()
    assert "| precision |" in sw.to_markdown()


def test_output_shapes_match_onnxruntime(session):
    from trtlab import zoo
    proto = zoo.bert(size="small")
    feeds = {"input_ids": np.zeros((3, 16), np.int64)}
    shapes = output_shapes(proto, feeds)
    s = Session(proto, workspace=session.workspace.root)
    eng = s.build(batch=3, dims={"sequence": 16})
    outs = eng.run(feeds)
    assert shapes == {k: v.shape for k, v in outs.items()}
    conv = session.build(batch=5)
    assert output_shapes(conv.variant.model, conv.random_feeds()) == {"logits": (5, 10)}


def test_fixed_buffer_runner_binds_outputs_it_owns(session):
    # the CUDA-graph runner's binding logic, exercised on the CPU device (the GPU run only changes the device)
    from trtlab.analysis.benchmark import cuda_graph_runner, timing_engine, uses_cuda_graph
    engine = session.build(batch=3)
    feeds = engine.random_feeds(1)
    run = cuda_graph_runner(engine, feeds, device="cpu")
    out = run.outputs["logits"]
    run()
    np.testing.assert_array_equal(out.numpy(), engine.run(feeds)["logits"])
    assert out.shape() == [3, 10]
    assert not uses_cuda_graph(engine) and timing_engine(engine, 4) is engine


def test_cuda_graph_engines_refuse_concurrency(session):
    from trtlab.analysis.benchmark import timing_engine, uses_cuda_graph
    engine = session.build(batch=2)
    # pose as a CUDA-graph engine (the flag and option the ORT backend sets on a GPU)
    engine.on_cuda = True
    engine.config = engine.config.replace(options={"cuda_options": {"enable_cuda_graph": "1"}})
    assert uses_cuda_graph(engine)
    with pytest.raises(ConfigError, match="one captured CUDA graph"):
        run_concurrent(engine, None, 2, iterations=2)
    assert timing_engine(engine, 1) is engine


def test_budget_stops_before_the_next_point(session):
    sw = session.sweep(batch=[1, 2], iterations=3, warmup=1, monitor=False, budget_s=0.0)
    assert sw.ran == 0 and sw.records == [] and "time budget" in sw.stopped
    assert len(sw.missing) == 2 and "2 of 2 points not run yet" in sw.describe()
    rest = session.sweep(batch=[1, 2], iterations=3, warmup=1, monitor=False, resume=True)
    assert rest.ran == 2 and rest.complete and rest.stopped is None


def test_points_from_different_device_types_are_not_compared_silently(session):
    sw = session.sweep(batch=[1, 2], iterations=3, warmup=1, monitor=False)
    here = sw.records[0]["device_type"]
    assert here.startswith("CPU: ") and sw.records[0]["host"] and sw.mixed_devices_note() is None
    import warnings as w
    with w.catch_warnings():
        w.simplefilter("error")
        sw.best()  # one device type: no warning
    other = dict(sw.records[1], device_type="NVIDIA H100 80GB HBM3", host="gpu-node")  # as a second host records it
    mixed = SweepResult([sw.records[0], other], sw.spec, sw.path)
    assert mixed.device_types == [here, "NVIDIA H100 80GB HBM3"]
    with pytest.warns(UserWarning, match="2 device types"):
        mixed.best()
    assert "points ran on 2 device types" in mixed.describe()
