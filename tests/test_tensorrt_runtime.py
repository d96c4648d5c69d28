"""TensorRT runtime logic against a fake that follows the documented TensorRT and cuda-python APIs exactly
(the real runtime cannot run here: full TensorRT is not installable and TensorRT-RTX does not run on Hopper)."""
from __future__ import annotations

import importlib.util
import threading

import numpy as np
import pytest

import trtlab
from trtlab.analysis.benchmark import run_benchmark
from trtlab.tables import COLUMNS
from trtlab.backends.tensorrt import TensorRTBackend, _import
from trtlab.backends.tensorrt._import import TrtApi
from trtlab.backends.tensorrt.plan import check_compatible
from trtlab.backends.tensorrt.runtime import TensorRTEngine, running_device
from trtlab.config import BuildConfig
from trtlab.errors import (BackendUnavailableError, ConfigError, CudaError, EngineClosedError, InputError, PlanError,
                           PlanMismatchError)

from test_tensorrt_fakes import FakeCudart, make_module

IO = {"inputs": [{"name": "input", "shape": [-1, 4], "dtype": "float32"}],
      "outputs": [{"name": "logits", "shape": [-1, 3], "dtype": "float32"}]}


@pytest.fixture()
def cudart(monkeypatch):
    fake = FakeCudart()
    monkeypatch.setattr(_import, "cuda_runtime", lambda: fake)
    return fake


def make_engine(cudart, family="tensorrt", plan=b"fake-plan", **options):
    api = TrtApi(make_module(cudart), family.replace("-", "_"), family, "10.9.0.34")
    config = BuildConfig.make(family, batch=(1, 2, 8), **options)
    meta = {"io": IO, "profile": {"input": [[1, 4], [2, 4], [8, 4]]}, "config": config.to_dict(),
            "device": "NVIDIA GeForce RTX 4090"}
    return TensorRTEngine(api, plan, meta, config)


def reference(eng, x):
    e = eng._engine()
    return np.maximum(x @ e.w0, 0) @ e.w1


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="full TensorRT is installed here")
def test_missing_tensorrt_says_how_to_install(tmp_path):
    ok, why = TensorRTBackend.available()
    assert not ok and "pip install tensorrt" in why
    with pytest.raises(BackendUnavailableError, match=r"backend 'tensorrt' is not available here.*pip install"):
        trtlab.Session(trtlab.zoo.mlp(), backend="tensorrt", workspace=tmp_path)


def test_execute_mode_runs_synchronously(cudart):
    eng = make_engine(cudart, mode="execute")
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    out = eng.run({"input": x})
    np.testing.assert_allclose(out["logits"], reference(eng, x), rtol=1e-6)
    ctx = eng._engine().contexts[0]
    assert [e[0] for e in ctx.executions] == ["execute_v2"]
    assert "cudaMemcpyAsync" not in cudart.calls and "cudaStreamSynchronize" not in cudart.calls
    eng.run({"input": x})
    assert cudart.calls.count("cudaMalloc") == 2  # buffers reused for the same shapes


def test_enqueue_mode_uses_the_user_stream(cudart):
    eng = make_engine(cudart)  # mode defaults to enqueue
    x = np.ones((2, 4), np.float32)
    out = eng.run({"input": x})
    np.testing.assert_allclose(out["logits"], reference(eng, x), rtol=1e-6)
    ctx = eng._engine().contexts[0]
    kind, handle = ctx.executions[0]
    assert kind == "execute_async_v3" and handle in cudart.streams
    assert "cudaMemcpyAsync" in cudart.calls and cudart.calls[-1] == "cudaStreamSynchronize"


def test_cuda_graph_capture_and_relaunch(cudart):
    eng = make_engine(cudart, cuda_graph=True)
    x = np.full((2, 4), 0.5, np.float32)
    np.testing.assert_allclose(eng.run({"input": x})["logits"], reference(eng, x), rtol=1e-6)
    assert cudart.calls.count("cudaStreamBeginCapture") == 1 and cudart.calls.count("cudaGraphLaunch") == 1
    y = np.full((2, 4), -0.25, np.float32) + np.eye(2, 4, dtype=np.float32)
    np.testing.assert_allclose(eng.run({"input": y})["logits"], reference(eng, y), rtol=1e-6)
    assert cudart.calls.count("cudaStreamBeginCapture") == 1 and cudart.calls.count("cudaGraphLaunch") == 2
    z = np.ones((5, 4), np.float32)  # new shape: recapture, old graph destroyed
    np.testing.assert_allclose(eng.run({"input": z})["logits"], reference(eng, z), rtol=1e-6)
    assert cudart.calls.count("cudaStreamBeginCapture") == 2 and len(cudart.execs) == 1


def test_a_runner_launches_in_its_own_mode_and_leaves_the_engine_alone(cudart):
    eng = make_engine(cudart, cuda_graph=True)
    x = np.ones((2, 4), np.float32)
    eng.run({"input": x})
    assert len(cudart.execs) == 1 and eng.run_mode == "enqueue+cuda_graph"
    ctx = eng._engine().contexts[0]
    before = len(ctx.executions)
    run = eng.runner({"input": x}, mode="execute", cuda_graph=False)
    run()
    run()
    assert [e[0] for e in ctx.executions[before:]] == ["execute_v2", "execute_v2"]
    assert eng.run_mode == "enqueue+cuda_graph" and (eng.mode, eng.cuda_graph) == ("enqueue", True)
    launches = cudart.calls.count("cudaGraphLaunch")
    np.testing.assert_allclose(eng.run({"input": x})["logits"], reference(eng, x), rtol=1e-6)
    assert cudart.calls.count("cudaGraphLaunch") == launches + 1  # run() still replays the engine's graph
    assert eng.launch_mode("execute") == "execute" and eng.device_timer("execute") is None
    with pytest.raises(ConfigError, match="cuda_graph=True needs mode='enqueue'"):
        eng.runner({"input": x}, mode="execute", cuda_graph=True)
    with pytest.raises(ConfigError, match=r"mode must be one of \('enqueue', 'execute'\)"):
        eng.runner({"input": x}, mode="async")
    with pytest.raises(ConfigError, match=r"mode must be one of \('enqueue', 'execute'\)"):
        make_engine(cudart, mode="async")


def test_two_benchmarks_of_one_engine_in_different_modes_each_run_their_own(cudart, tmp_path):
    """Session.benchmark used to switch the shared engine's mode for the run and back: a second benchmark
    starting meanwhile made the first one run in the second's mode."""
    eng = make_engine(cudart)  # built with the default launch: enqueue, no graph
    s = trtlab.Session(trtlab.zoo.mlp(), workspace=tmp_path, max_jobs=2)
    jobs, seen, waited = {}, {"a": threading.Event(), "b": threading.Event()}, []

    def interleave(kind, payload):
        # warm-up reports progress at runs 1 and 9: A waits at its 1st for B's 1st, B at its 2nd for A's 2nd,
        # so each benchmark runs warm-ups while the other is in the middle of its own
        if kind != "progress" or payload.message != "warming up":
            return
        me, other = ("a", "b") if payload.job == jobs["a"].id else ("b", "a")
        first = not seen[me].is_set()
        seen[me].set()
        if (me == "a") == first:
            waited.append(seen[other].wait(20))
    s.events.subscribe(interleave)
    release = threading.Event()
    gates = [s.submit("gate", lambda rep: release.wait(20)) for _ in range(2)]  # both wait until both exist
    jobs["a"] = s.benchmark(eng, iterations=12, warmup=9, mode="execute", background=True)
    jobs["b"] = s.benchmark(eng, iterations=9, warmup=9, mode="enqueue", cuda_graph=True, background=True)
    release.set()
    ra, rb = jobs["a"].result(timeout=30), jobs["b"].result(timeout=30)
    assert all(g.done for g in gates) and waited == [True, True]  # the two really overlapped
    assert (ra.mode, rb.mode) == ("execute", "enqueue+cuda_graph")
    contexts = eng._engine().contexts
    assert len(contexts) == 2  # one per worker thread
    by_kind = {tuple(sorted({e[0] for e in c.executions})): c for c in contexts}
    execute = by_kind[("execute_v2",)]
    graph = by_kind[("execute_async_v3",)]
    assert len(execute.executions) == 9 + 12  # every run of the execute benchmark was execute_v2
    assert len(graph.executions) == 2  # one plain enqueue and one capture; then graph launches only
    assert cudart.calls.count("cudaGraphLaunch") == 9 + 9
    assert rb.device_ms is not None and ra.device_ms is None  # events time enqueue runs only
    assert (eng.mode, eng.cuda_graph, eng.run_mode) == ("enqueue", False, "enqueue")  # the engine is untouched
    assert sorted(r["mode"] for r in s.workspace.results("benchmark")) == ["enqueue+cuda_graph", "execute"]


def test_launch_modes_are_refused_on_an_engine_without_them(tmp_path):
    s = trtlab.Session(trtlab.zoo.mlp(), workspace=tmp_path)
    eng = s.build(batch=1)
    assert not eng.supports_launch_modes and TensorRTEngine.supports_launch_modes
    with pytest.raises(ConfigError, match=r"mode=/cuda_graph= apply to TensorRT engines; .* runs on onnxruntime"):
        s.benchmark(eng, iterations=2, mode="execute")
    with pytest.raises(ConfigError, match="apply to TensorRT engines"):
        eng.runner(eng.random_feeds(0), cuda_graph=True)
    assert s.benchmark(eng, iterations=2, warmup=0).mode == "sync"


def test_rtx_runtime_cache_round_trip(cudart, tmp_path):
    eng = make_engine(cudart, family="tensorrt-rtx")
    eng.runtime_cache_dir = tmp_path
    eng.run({"input": np.ones((2, 4), np.float32)})
    cache = eng._engine().contexts[0].runtime_config.cache
    assert cache.loaded is None  # nothing stored yet
    eng.close()
    path = tmp_path / "tensorrt_rtx-10.9.0.34-NVIDIA_GeForce_RTX_4090-sm89.runtime-cache"
    assert path.read_bytes() == b"RTXCACHE:fc0,fc1"
    again = make_engine(cudart, family="tensorrt-rtx")
    again.runtime_cache_dir = tmp_path
    again.run({"input": np.ones((2, 4), np.float32)})
    assert again._engine().contexts[0].runtime_config.cache.loaded == b"RTXCACHE:fc0,fc1"
    plain = make_engine(cudart)  # full TensorRT: no runtime cache
    plain.runtime_cache_dir = tmp_path
    plain.run({"input": np.ones((2, 4), np.float32)})
    assert plain._engine().contexts[0].runtime_config is None and plain.save_runtime_cache() is None


def test_shape_outside_profile(cudart):
    eng = make_engine(cudart)
    with pytest.raises(InputError, match=r"shape \[9, 4\], outside the engine's optimization profile "
                                         r"\[1, 4\]\.\.\[8, 4\]"):
        eng.run({"input": np.zeros((9, 4), np.float32)})
    with pytest.raises(InputError, match=r"has shape \[2, 5\], but the model expects float32 \[\?, 4\] \(size 4 at axis 1"):
        eng.run({"input": np.zeros((2, 5), np.float32)})


def test_one_context_per_thread_and_deterministic_free(cudart):
    eng = make_engine(cudart)
    x = np.ones((2, 4), np.float32)
    results = []
    threads = [threading.Thread(target=lambda: results.append(eng.run({"input": x})["logits"])) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(eng._engine().contexts) == 3 and len(results) == 3
    assert all(np.allclose(r, reference(eng, x)) for r in results)
    assert cudart.memory and cudart.streams
    eng.close()
    assert cudart.memory == {} and cudart.streams == set()
    with pytest.raises(EngineClosedError, match=r"was closed.*Session\.build"):
        eng.run({"input": x})


def test_profile_layers_and_inspector(cudart):
    eng = make_engine(cudart)
    prof = eng.profile_layers({"input": np.ones((2, 4), np.float32)}, runs=7, warmup=2)
    f = prof.to_frame()
    assert list(f.columns) == COLUMNS and f["name"].tolist() == ["fc0 + relu0", "fc1"]
    assert f["count"].tolist() == [7, 7] and f["median_ms"].tolist() == pytest.approx([0.01, 0.02])
    assert f["op_type"].tolist() == ["CaskGemmMatrixMultiply"] * 2 and f["fused_from"][0] == ["fc0", "relu0"]
    assert eng._engine().contexts[0].profiler is None  # detached afterwards
    layers = eng.layers()
    assert layers["name"].tolist() == ["fc0 + relu0", "fc1"] and layers["precision"].tolist() == ["fp32", "fp32"]


def test_benchmark_harness_with_device_timer(cudart):
    eng = make_engine(cudart)
    res = run_benchmark(eng, iterations=5, warmup=1)
    assert res.iterations == 5 and res.device_ms.tolist() == [0.25] * 5
    assert make_engine(cudart, mode="execute").device_timer() is None


def test_cuda_errors_name_the_error(monkeypatch):
    fake = FakeCudart(fail_malloc=True)
    monkeypatch.setattr(_import, "cuda_runtime", lambda: fake)
    eng = make_engine(fake)
    with pytest.raises(CudaError, match=r"cudaMalloc\(32\) failed with cudaErrorMemoryAllocation"):
        eng.run({"input": np.ones((2, 4), np.float32)})


def test_no_gpu_and_hopper_are_refused(monkeypatch):
    none = FakeCudart(devices=())
    monkeypatch.setattr(_import, "cuda_runtime", lambda: none)
    assert running_device() is None
    with pytest.raises(BackendUnavailableError, match="engines need an NVIDIA GPU"):
        make_engine(none).run({"input": np.ones((1, 4), np.float32)})
    hopper = FakeCudart(devices=[("NVIDIA H100 80GB HBM3", 9, 0)])
    monkeypatch.setattr(_import, "cuda_runtime", lambda: hopper)
    with pytest.raises(BackendUnavailableError, match="TensorRT-RTX engines do not run on Hopper/data-center GPUs"):
        make_engine(hopper, family="tensorrt-rtx").run({"input": np.ones((1, 4), np.float32)})


def test_bad_plan_and_device_mismatch(cudart):
    with pytest.raises(PlanError, match="could not deserialize .* magic tag mismatch"):
        make_engine(cudart, plan=b"garbage").run({"input": np.ones((1, 4), np.float32)})
    api = TrtApi(make_module(cudart), "tensorrt", "tensorrt", "10.9.0.34")
    meta = {"backend": "tensorrt", "module": "tensorrt", "library_version": "10.9.0.34",
            "build_device": "NVIDIA A100-SXM4-80GB", "compute_capability": ["8.0"]}
    with pytest.raises(PlanMismatchError, match=r"built on NVIDIA A100-SXM4-80GB .* this GPU is NVIDIA GeForce RTX "
                                                r"4090 \(8.9\)"):
        check_compatible(meta, api, running_device(), "x.plan")
