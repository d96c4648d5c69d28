"""Benchmarks of TensorRT engines follow trtexec's defaults of the installed major (the fake TensorRT as 10.x and
11.x): CUDA graph capture, copies inside or outside the timed region, spin-wait or blocking synchronise, and the
per-layer profiler attached only in a run of its own after the timed loop."""
from __future__ import annotations

import numpy as np
import pytest

import trtlab
from trtlab.analysis.benchmark import BenchmarkResult, run_benchmark, run_concurrent
from trtlab.analysis.launch import Launch, launch_defaults, major_of, resolve_launch
from trtlab.backends.tensorrt import _import
from trtlab.backends.tensorrt._import import TrtApi
from trtlab.backends.tensorrt.runtime import TensorRTEngine
from trtlab.config import BuildConfig
from trtlab.errors import ConfigError

from test_tensorrt_fakes import FakeCudart, make_module

IO = {"inputs": [{"name": "input", "shape": [-1, 4], "dtype": "float32"}],
      "outputs": [{"name": "logits", "shape": [-1, 3], "dtype": "float32"}]}
V10, V11 = "10.9.0.34", "11.0.0.114"


@pytest.fixture()
def cudart(monkeypatch):
    fake = FakeCudart()
    monkeypatch.setattr(_import, "cuda_runtime", lambda: fake)
    return fake


def make_engine(cudart, version, family="tensorrt", **options):
    api = TrtApi(make_module(cudart, version), family.replace("-", "_"), family, version)
    config = BuildConfig.make(family, batch=(1, 2, 8), **options)
    meta = {"io": IO, "profile": {"input": [[1, 4], [2, 4], [8, 4]]}, "config": config.to_dict(),
            "device": "NVIDIA GeForce RTX 4090"}
    return TensorRTEngine(api, b"fake-plan", meta, config)


def timed_regions(calls: list[str]) -> list[list[str]]:
    """The calls between each pair of cudaEventRecord (the device timer's start and stop around one timed run)."""
    marks = [i for i, c in enumerate(calls) if c == "cudaEventRecord"]
    return [calls[a + 1:b] for a, b in zip(marks[::2], marks[1::2])]


# ---- the pure rules -----------------------------------------------------------------------------------------------
def test_the_rules_per_major():
    d10, d11 = launch_defaults("tensorrt", V10), launch_defaults("tensorrt", V11)
    assert (d10.rules, d10.cuda_graph, d10.transfers, d10.spin_wait, d10.separate_profile_always) == \
        ("trtexec 10", False, True, False, False)
    assert (d11.rules, d11.cuda_graph, d11.transfers, d11.spin_wait, d11.separate_profile_always) == \
        ("trtexec 11", True, False, True, True)
    assert launch_defaults("tensorrt", "12.1").rules == "trtexec 11"
    assert launch_defaults("tensorrt", "8.6.1").rules == "trtexec 10"
    assert launch_defaults("tensorrt-rtx", "1.2.0.54").rules == "trtexec 10"  # tensorrt_rtx: flags are opt-ins
    assert major_of("11.0.0.114") == 11
    with pytest.raises(ConfigError, match="cannot read a major version"):
        major_of("dev")
    with pytest.raises(ConfigError, match="one way to run"):
        launch_defaults("onnxruntime", "1.20")


def test_resolution_order_caller_then_build_options_then_rules():
    d11 = launch_defaults("tensorrt", V11)
    plain = resolve_launch(d11, "enqueue")
    assert (plain.cuda_graph, plain.transfers, plain.spin_wait, plain.chosen) == (True, False, True, ())
    built = resolve_launch(d11, "enqueue", build_options={"cuda_graph": False})
    assert built.cuda_graph is False and built.chosen == ("cuda_graph",)
    given = resolve_launch(d11, "enqueue", cuda_graph=True, transfers=True, build_options={"cuda_graph": False})
    assert (given.cuda_graph, given.transfers, given.chosen) == (True, True, ("cuda_graph", "transfers"))
    execute = resolve_launch(d11, "execute", mode_chosen=True)
    assert execute.cuda_graph is False and execute.chosen == ("mode",)  # no stream to capture
    with pytest.raises(ConfigError, match="cuda_graph=True needs mode='enqueue'"):
        resolve_launch(d11, "execute", cuda_graph=True)
    assert Launch.from_dict(given.to_dict()) == given


# ---- benchmarks on the fake ---------------------------------------------------------------------------------------
def test_tensorrt_10_benchmark_times_copies_without_graph_or_spin(cudart):
    eng = make_engine(cudart, V10)
    r = run_benchmark(eng, iterations=5, warmup=2)
    assert r.mode == "enqueue" and r.launch["rules"] == "trtexec 10"
    assert "cudaStreamBeginCapture" not in cudart.calls and "cudaGraphLaunch" not in cudart.calls
    regions = timed_regions(cudart.calls)
    assert len(regions) == 5
    for region in regions:  # one input in, one output out, a blocking synchronise: all inside the timed run
        assert region.count("cudaMemcpyAsync") == 2
        assert "cudaStreamSynchronize" in region and "cudaStreamQuery" not in region
    ctx = eng._engine().contexts[0]
    assert [e[0] for e in ctx.executions] == ["execute_async_v3"] * 7


def test_tensorrt_11_benchmark_replays_a_graph_with_spin_wait_and_no_copies(cudart):
    eng = make_engine(cudart, V11)
    r = run_benchmark(eng, iterations=5, warmup=2)
    assert r.mode == "enqueue+cuda_graph" and r.launch["rules"] == "trtexec 11"
    assert cudart.calls.count("cudaStreamBeginCapture") == 1 and cudart.calls.count("cudaGraphLaunch") == 7
    regions = timed_regions(cudart.calls)
    assert len(regions) == 5
    for region in regions:
        assert region[0] == "cudaGraphLaunch" and "cudaMemcpyAsync" not in region
        assert "cudaStreamQuery" in region and "cudaStreamSynchronize" not in region
    # and the inputs are in device memory once, before the loop: the result is still right
    x = eng.random_feeds(0)["input"]
    e = eng._engine()
    np.testing.assert_allclose(eng.run({"input": x})["logits"], np.maximum(x @ e.net.w0, 0) @ e.net.w1, rtol=1e-6)


def test_the_other_behaviour_on_request(cudart):
    eng = make_engine(cudart, V11)
    r = run_benchmark(eng, iterations=3, warmup=1, cuda_graph=False, transfers=True, spin_wait=False)
    assert r.mode == "enqueue" and "cudaStreamBeginCapture" not in cudart.calls
    for region in timed_regions(cudart.calls):
        assert region.count("cudaMemcpyAsync") == 2 and "cudaStreamSynchronize" in region
    assert r.launch["chosen"] == ["cuda_graph", "transfers", "spin_wait"]
    built = make_engine(cudart, V11, cuda_graph=False)  # a build option counts as the user's choice
    assert run_benchmark(built, iterations=2, warmup=0).mode == "enqueue"
    old = make_engine(cudart, V10)
    assert run_benchmark(old, iterations=2, warmup=0, cuda_graph=True).mode == "enqueue+cuda_graph"


def test_profile_is_a_separate_run_after_the_timed_one(cudart):
    for version in (V10, V11):
        eng = make_engine(cudart, version)
        r = run_benchmark(eng, iterations=4, warmup=2, profile=True)
        ctx = eng._engine().contexts[0]
        n_timed = sum(1 for _ in ctx.profiled) - 20 - 3  # profile_layers: 3 warm-up + 20 profiled runs
        assert n_timed >= 6 and not any(ctx.profiled[:n_timed])  # warm-up and timed runs: no profiler
        assert all(ctx.profiled[-20:])
        assert r.profile is not None and r.profile.runs == 20 and r.launch["profile"] is True
        assert "separate run after the timed one" in str(r)
        plain = run_benchmark(eng, iterations=2, warmup=0)
        assert plain.profile is None and "profile=True adds one" in str(plain)


def test_summary_states_the_rules_and_the_other_behaviour(cudart):
    s10 = str(run_benchmark(make_engine(cudart, V10), iterations=3, warmup=0))
    assert "trtexec 10 defaults for tensorrt 10.9.0.34" in s10
    assert "cuda_graph=True (--useCudaGraph)" in s10 and "transfers=False (--noDataTransfers)" in s10
    assert "spin_wait=True (--useSpinWait)" in s10 and "--separateProfileRun" in s10
    s11 = str(run_benchmark(make_engine(cudart, V11), iterations=3, warmup=0))
    assert "Launch: enqueue, CUDA graph, copies outside the timed run, spin-wait (trtexec 11 defaults" in s11
    assert "cuda_graph=False (--noCudaGraph)" in s11 and "transfers=True (--includeDataTransfers)" in s11
    r = run_benchmark(make_engine(cudart, V11), iterations=3, warmup=0)
    back = BenchmarkResult.from_dict(r.to_dict())
    assert back.launch == r.launch and str(back).splitlines()[-3:] == str(r).splitlines()[-3:]


def test_session_benchmark_follows_the_major_and_stores_the_profile(cudart, tmp_path):
    s = trtlab.Session(trtlab.zoo.mlp(), workspace=tmp_path)
    r = s.benchmark(make_engine(cudart, V11), iterations=3, warmup=1, profile=True)
    assert r.mode == "enqueue+cuda_graph" and r.profile is not None
    assert [x["kind"] for x in s.workspace.results()] == ["benchmark", "profile"]
    stored = s.workspace.results("benchmark")[0]
    assert stored["launch"]["rules"] == "trtexec 11"


def test_onnxruntime_engines_refuse_transfers_and_spin_wait(tmp_path):
    s = trtlab.Session(trtlab.zoo.mlp(), workspace=tmp_path)
    eng = s.build(batch=1)
    with pytest.raises(ConfigError, match="transfers=/spin_wait= apply to TensorRT engines"):
        run_benchmark(eng, iterations=2, transfers=True)
    r = run_benchmark(eng, iterations=2, warmup=0, profile=True)
    assert r.launch is None and r.profile is not None and "Launch:" not in str(r)


def test_concurrent_benchmarks_follow_the_major_too(cudart):
    r = run_concurrent(make_engine(cudart, V11), concurrency=2, iterations=3, warmup=1)
    assert r.launch["rules"] == "trtexec 11" and r.launch["cuda_graph"] is True
    assert cudart.calls.count("cudaStreamBeginCapture") == 2  # one graph per thread's context
    assert "Launch: enqueue, CUDA graph" in str(r)
