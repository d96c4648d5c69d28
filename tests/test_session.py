"""Session: engine cache (memory and disk), results written as produced, background jobs with cancel."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import trtlab
from trtlab.config import BuildConfig
from trtlab.errors import CancelledError, ConfigError


def test_second_build_is_a_cache_hit(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace)
    a = s.build(batch=4)
    assert a.metadata["cache"] == "built"
    b = s.build(batch=4)
    assert b is a and b.metadata["cache"] == "memory"
    c = s.build(batch=8)
    assert c is not a and c.metadata["cache"] == "built"
    assert len(s.engines()) == 2


def test_new_session_lists_and_reloads_engines_from_disk(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace)
    eng = s.build(batch=2, graph_optimization="basic")
    key = eng.config.key
    s2 = trtlab.Session(tiny_model, workspace=workspace)
    listed = s2.engines()
    assert list(listed["key"]) == [key] and listed["precision"][0] == "fp32" and not listed["loaded"][0]
    again = s2.build(batch=2, graph_optimization="basic")
    assert again.metadata["cache"] == "disk" and again.config == eng.config
    x = eng.random_feeds()
    np.testing.assert_array_equal(again.run(x)["logits"], eng.run(x)["logits"])
    # and both compute what plain ONNX Runtime computes on the original model
    import onnxruntime as ort
    want = ort.InferenceSession(tiny_model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    np.testing.assert_allclose(again.run(x)["logits"], want, rtol=1e-5, atol=1e-6)
    meta = json.loads((workspace / s.model.hash / "engines" / key / "metadata.json").read_text())
    assert meta["backend"] == "onnxruntime" and "onnxruntime" in meta["versions"] and meta["device"] == "CPU"


def test_build_config_is_hashable_and_round_trips():
    a = BuildConfig.make(precision="fp16", batch=(1, 8, 32), shapes={"x": [(1, 3), (4, 3), (8, 3)]},
                         fp32_layers=["b", "a"], providers="cuda", workspace="1GiB", cuda_options={"b": 1, "a": 2})
    b = BuildConfig.from_dict(json.loads(json.dumps(a.to_dict())))
    assert a == b and hash(a) == hash(b) and a.key == b.key
    assert a.fp32_layers == ("a", "b") and a.option("workspace") == "1GiB"
    assert {a: 1}[b] == 1
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        BuildConfig.make(batch=(8, 4, 2))


def test_results_survive_a_crash(tiny_model, workspace, tmp_path):
    """A kernel that dies right after a benchmark loses nothing: a new Session finds the result on disk."""
    model_path = tmp_path / "m.onnx"
    import onnx
    onnx.save(tiny_model, str(model_path))
    script = textwrap.dedent(f"""
        import os, trtlab
        s = trtlab.Session({str(model_path)!r}, workspace={str(workspace)!r})
        s.benchmark(s.build(batch=2), iterations=20)
        s.profile_layers(s.build(batch=2), runs=3)
        os._exit(9)  # die without any cleanup, like a crashed kernel
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    s = trtlab.Session(str(model_path), workspace=workspace)
    res = s.results()
    assert list(res["kind"]) == ["benchmark", "profile"]
    bench = s.load_result(res["id"][0])
    assert bench.iterations == 20 and bench.batch == 2
    prof = s.load_result(res["id"][1])
    assert prof.runs == 3 and len(prof.to_frame()) > 0
    csv = res["path"][0].replace(".json", ".csv")
    import pandas as pd
    assert len(pd.read_csv(csv)) == 20  # readable without trtlab
    assert not list((workspace / s.model.hash).rglob("*.tmp"))


def test_background_build_and_progress_events(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace)
    events = []
    s.events.subscribe(lambda kind, payload: events.append(kind))
    job = s.build(batch=2, background=True)
    eng = job.result(timeout=60)
    assert job.status == "done" and eng.metadata["cache"] == "built"
    assert "progress" in events and "log" in events and "job" in events


def test_background_benchmark_can_be_cancelled(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace)
    eng = s.build(batch=1)
    job = s.benchmark(eng, duration=30.0, background=True)
    deadline = time.time() + 20
    while job.progress is None and time.time() < deadline:
        time.sleep(0.05)
    job.cancel()
    # a 30 s benchmark that was cancelled: result() raises instead of returning a result
    with pytest.raises(CancelledError, match="benchmark was cancelled"):
        job.result(timeout=60)
    assert job.status == "cancelled"
    assert s.results().empty  # nothing half-written


def test_subscriber_errors_do_not_break_work(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace)

    def broken(kind, payload):
        raise RuntimeError("widget gone")
    s.events.subscribe(broken)
    assert s.build(batch=1).metadata["cache"] == "built"


def test_engine_spec_resolution(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace)
    e = s.engine("fp32")
    assert s.engine(e) is e and s.engine({"precision": "fp32", "batch": 1}) is e
    with pytest.raises(ConfigError, match="cannot make an engine from 42"):
        s.engine(42)


def test_log_filters(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace)
    s.build(batch=1)
    s.log.write("warning", "something odd", "test")
    assert [r.message for r in s.log.records("warning")] == ["something odd"]
    ready = s.log.records("verbose", search="SESSION READY")  # search ignores case
    assert ready and all("session ready" in r.message.lower() for r in ready)
    assert "[W] test: something odd" in s.log.text("warning")


def test_info_reports_environment(tiny_model, workspace):
    info = trtlab.Session(tiny_model, workspace=workspace).info()
    text = str(info)
    assert "onnxruntime" in text and "CPUExecutionProvider" in text and "convnet" in text
    env = info["environment"]
    assert env["libraries"]["numpy"] == np.__version__
    assert env["backends"]["onnxruntime"]["available"] is True
    assert env["cpu"]["logical_cores"] >= 1
    assert isinstance(env["gpus"], list)


def test_core_import_does_not_load_ui_packages():
    code = "import sys, trtlab; print(sorted(m for m in ('plotly', 'ipywidgets', 'jupyter', 'IPython') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
