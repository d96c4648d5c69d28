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
from trtlab.errors import (BackendUnavailableError, ConfigError, CudaError, EngineClosedError, InputError,
                           LossyCastError, PlanError, PlanMetadataError, PlanMismatchError, RunError)

from test_tensorrt_fakes import FakeCudart, make_module

IO = {"inputs": [{"name": "input", "shape": [-1, 4], "dtype": "float32"}],
      "outputs": [{"name": "logits", "shape": [-1, 3], "dtype": "float32"}]}
# the metadata trtlab's builder writes for each fake plan
PLAN_IO = {b"fake-plan": IO, b"fake-plan:profiles": IO, b"fake-plan:chw4": IO,
           b"fake-plan:nonzero": {"inputs": [{"name": "x", "shape": [-1, 4], "dtype": "float32"}],
                                  "outputs": [{"name": "idx", "shape": [2, -1], "dtype": "int64"}]},
           b"fake-plan:bf16": {"inputs": [{"name": "x", "shape": [-1, 4], "dtype": "bfloat16"}],
                               "outputs": [{"name": "y", "shape": [-1, 4], "dtype": "bfloat16"}]},
           b"fake-plan:reshape": {"inputs": [{"name": "data", "shape": [-1], "dtype": "float32"},
                                             {"name": "shape", "shape": [2], "dtype": "int32"}],
                                  "outputs": [{"name": "y", "shape": [-1, -1], "dtype": "float32"}]}}


@pytest.fixture()
def cudart(monkeypatch):
    fake = FakeCudart()
    monkeypatch.setattr(_import, "cuda_runtime", lambda: fake)
    return fake


def make_engine(cudart, family="tensorrt", plan=b"fake-plan", io=None, **options):
    api = TrtApi(make_module(cudart), family.replace("-", "_"), family, "10.9.0.34")
    config = BuildConfig.make(family, batch=(1, 2, 8), **options)
    meta = {"io": PLAN_IO.get(plan, IO) if io is None else io, "profile": {"input": [[1, 4], [2, 4], [8, 4]]},
            "config": config.to_dict(), "device": "NVIDIA GeForce RTX 4090"}
    return TensorRTEngine(api, plan, meta, config)


def reference(eng, x):
    e = eng._engine()
    return np.maximum(x @ e.net.w0, 0) @ e.net.w1


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
    with pytest.raises(InputError, match=r"input 'input' has shape \[9, 4\]; no optimization profile takes it "
                                         r"\(profile 0: input \[1, 4\]\.\.\[8, 4\]\)"):
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


# ---- the fake's asynchrony, and the runtime's ordering against it -----------------------------------------------
def test_the_fake_runs_stream_work_only_at_synchronisation(cudart):
    """What makes the ordering tests below able to fail: a device-to-host copy lands at synchronisation."""
    _, stream = cudart.cudaStreamCreate()
    _, ptr = cudart.cudaMalloc(16)
    src = np.arange(4, dtype=np.float32)
    dst = np.zeros(4, np.float32)
    cudart.cudaMemcpyAsync(ptr, src.ctypes.data, 16, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)
    cudart.cudaMemcpyAsync(dst.ctypes.data, ptr, 16, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)
    assert cudart.pending(stream) == 2 and dst.tolist() == [0, 0, 0, 0]
    cudart.cudaStreamSynchronize(stream)
    assert cudart.pending(stream) == 0 and dst.tolist() == [0, 1, 2, 3]
    too_many = cudart.cudaMemcpyAsync(ptr, src.ctypes.data, 32, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)
    assert too_many[0] == cudart.cudaError_t.cudaErrorInvalidValue  # past the allocation: refused as CUDA does


def test_outputs_are_read_only_after_the_stream_is_synchronised(cudart, monkeypatch):
    eng = make_engine(cudart)
    x = np.random.default_rng(3).standard_normal((4, 4)).astype(np.float32)
    np.testing.assert_allclose(eng.run({"input": x})["logits"], reference(eng, x), rtol=1e-6)
    calls = [c for c in cudart.calls if c.startswith(("cudaMemcpy", "cudaStreamSynchronize"))]
    assert calls[-3:] == ["cudaMemcpyAsync", "cudaMemcpyAsync", "cudaStreamSynchronize"]  # in, out, then wait
    assert cudart.pending() == 0
    # the same run without the synchronisation returns what was in the host array before the copy: wrong
    from trtlab.backends.tensorrt import cuda
    monkeypatch.setattr(cuda.Stream, "synchronize", lambda self: None)
    y = 2 * x
    stale = eng.run({"input": y})["logits"]
    assert cudart.pending() > 0 and not np.allclose(stale, reference(eng, y))


def test_shapes_and_addresses_are_set_only_when_they_change(cudart):
    eng = make_engine(cudart)
    x = np.ones((2, 4), np.float32)
    eng.run({"input": x})
    ctx = eng._engine().contexts[0]
    first = list(ctx.calls)
    assert first == [("set_input_shape", "input"), ("set_tensor_address", "input"), ("set_tensor_address", "logits")]
    eng.run({"input": 2 * x})
    eng.run({"input": 3 * x})
    assert ctx.calls == first  # same shapes, same buffers: TensorRT is told nothing again
    eng.run({"input": np.ones((1, 4), np.float32)})  # smaller: new shape, buffers reused
    assert ctx.calls[3:] == [("set_input_shape", "input")]
    eng.run({"input": np.ones((8, 4), np.float32)})  # larger: new shape and new buffers
    assert ctx.calls[4:] == [("set_input_shape", "input"), ("set_tensor_address", "input"),
                             ("set_tensor_address", "logits")]


# ---- optimization profiles ----------------------------------------------------------------------------------------
def test_the_profile_that_fits_the_shapes_is_selected_one_context_each(cudart):
    eng = make_engine(cudart, plan=b"fake-plan:profiles")
    assert eng.profiles() == [{"input": ((1, 4), (2, 4), (8, 4))}, {"input": ((9, 4), (16, 4), (32, 4))}]
    rng = np.random.default_rng(0)
    for batch in (3, 16, 8, 9, 32, 1):
        x = rng.standard_normal((batch, 4)).astype(np.float32)
        np.testing.assert_allclose(eng.run({"input": x})["logits"], reference(eng, x), rtol=1e-5)
    contexts = eng._engine().contexts
    assert [c.active_optimization_profile for c in contexts] == [0, 1]
    assert [[k for k in c.calls if k[0] == "set_optimization_profile_async"] for c in contexts] == [
        [("set_optimization_profile_async", 0)], [("set_optimization_profile_async", 1)]]  # once per context
    with pytest.raises(InputError, match=r"input 'input' has shape \[40, 4\]; no optimization profile takes it "
                                         r"\(profile 0: input \[1, 4\]\.\.\[8, 4\]; profile 1: input \[9, 4\]\.\.\[32, 4\]\)"):
        eng.run({"input": np.zeros((40, 4), np.float32)})
    run = eng.runner({"input": np.ones((20, 4), np.float32)})  # a runner and its timer use profile 1's context
    run()
    assert eng.device_timer() is next(c for c in eng._contexts if c.profile == 1).timer


def test_a_refused_profile_switch_is_a_run_error(cudart):
    eng = make_engine(cudart, plan=b"fake-plan:profiles")
    cudart.faults.add("set_optimization_profile_async")
    with pytest.raises(RunError, match=r"refused optimization profile 1 .*setOptimizationProfileAsync: profile 1 is "
                                       r"invalid"):
        eng.run({"input": np.ones((12, 4), np.float32)})


# ---- data-dependent outputs through the output allocator ----------------------------------------------------------
def test_a_data_dependent_output_comes_from_the_output_allocator(cudart):
    eng = make_engine(cudart, plan=b"fake-plan:nonzero")
    rng = np.random.default_rng(1)
    sizes = []
    for x in (np.full((2, 4), -1, np.float32),            # nothing positive: idx is [2, 0]
              rng.standard_normal((4, 4)).astype(np.float32),
              np.ones((64, 4), np.float32),               # 256 hits: the buffer grows
              np.ones((3, 4), np.float32)):               # fewer again: the grown buffer is reused
        out = eng.run({"x": x})["idx"]
        want = np.stack(np.nonzero(x > 0))
        assert out.dtype == np.int64 and out.shape == want.shape
        np.testing.assert_array_equal(out, want)
        sizes.append(list(cudart.mallocs))
    ctx = eng._engine().contexts[0]
    assert [k for k in ctx.calls if k[0] == "set_output_allocator"] == [("set_output_allocator", "idx")]
    alloc = eng._contexts[0].allocator
    assert alloc.requests["idx"] == 2 * 12 * 8 and alloc.buffers["idx"].nbytes == 2 * 256 * 8
    assert sizes[3] == sizes[2]  # no allocation for the smaller result
    assert eng.outputs[0].shape == (2, None)


def test_data_dependent_outputs_refuse_execute_and_cuda_graphs(cudart):
    for options in ({"mode": "execute"}, {"cuda_graph": True}):
        eng = make_engine(cudart, plan=b"fake-plan:nonzero", **options)
        with pytest.raises(ConfigError, match=r"output\(s\) \['idx'\] have a data-dependent shape.*mode='enqueue', "
                                              r"cuda_graph=False"):
            eng.run({"x": np.ones((2, 4), np.float32)})


def test_a_failed_output_allocation_is_a_run_error_naming_the_size(monkeypatch):
    fake = FakeCudart(malloc_limit=1024)
    monkeypatch.setattr(_import, "cuda_runtime", lambda: fake)
    eng = make_engine(fake, plan=b"fake-plan:nonzero")
    eng.run({"x": np.ones((8, 4), np.float32)})  # 512 bytes: fits
    with pytest.raises(RunError, match=r"execute_async_v3 failed .*output allocator gave no memory of 2048 bytes.*"
                                       r"could not get 2048 bytes for 'idx'.*cudaErrorMemoryAllocation"):
        eng.run({"x": np.ones((32, 4), np.float32)})


def test_an_output_without_a_notified_shape_is_a_run_error(cudart, monkeypatch):
    eng = make_engine(cudart, plan=b"fake-plan:nonzero")
    from trtlab.backends.tensorrt import outputs
    real = outputs.make_output_allocator

    def forgetful(api, rt):
        alloc = real(api, rt)
        alloc.notify_shape = lambda tensor_name, shape: None
        return alloc
    monkeypatch.setattr("trtlab.backends.tensorrt.runtime.make_output_allocator", forgetful)
    with pytest.raises(RunError, match=r"did not report the shape of data-dependent output 'idx'"):
        eng.run({"x": np.ones((2, 4), np.float32)})


# ---- shape tensors, bf16 and fp8 ------------------------------------------------------------------------------------
def test_shape_tensor_inputs_live_in_host_memory(cudart):
    eng = make_engine(cudart, plan=b"fake-plan:reshape")
    data = np.arange(12, dtype=np.float32)
    for shape in ((3, 4), (6, 2), (3, 4)):
        out = eng.run({"data": data, "shape": np.array(shape, np.int32)})["y"]
        np.testing.assert_array_equal(out, data.reshape(shape))
    c = eng._contexts[0]
    assert not cudart.is_device(c.addresses["shape"]) and c.addresses["shape"] == c.host["shape"].ctypes.data
    assert "shape" not in c.buffers


def test_bf16_io_moves_two_byte_values_both_ways(cudart):
    import ml_dtypes
    eng = make_engine(cudart, plan=b"fake-plan:bf16")
    x = np.array([[1.0, -2.5, 3.140625, 1e-3], [65504.0, -0.0, 7.0, 0.1]], np.float32)
    y = eng.run({"x": x})["y"]
    assert y.dtype == ml_dtypes.bfloat16 and y.shape == (2, 4)
    want = (x.astype(ml_dtypes.bfloat16).astype(np.float32) * 2).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(y.view(np.uint16), want.view(np.uint16))
    assert eng._contexts[0].buffers["x"].nbytes == x.size * 2  # two bytes per value on the device
    np.testing.assert_array_equal(eng.run({"x": x.astype(ml_dtypes.bfloat16)})["y"].view(np.uint16),
                                  want.view(np.uint16))  # bf16 data is taken as it is


def test_fp8_feeds_are_rounded_or_refused_when_they_overflow():
    import ml_dtypes
    from trtlab.backends.tensorrt.engine_io import IOTensor, to_engine
    t = IOTensor("q", True, "float8", (-1,), False, "LINEAR")
    x = np.array([0.5, -3.0, 448.0, 17.3], np.float32)
    got = to_engine(x, t, "eng")
    assert got.dtype == ml_dtypes.float8_e4m3fn and got.nbytes == 4
    np.testing.assert_array_equal(got.astype(np.float32), [0.5, -3.0, 448.0, 18.0])  # 17.3 rounds to 18 in e4m3
    with pytest.raises(LossyCastError, match=r"input 'q' has 1 value\(s\) beyond float8 e4m3's largest finite value 448"):
        to_engine(np.array([1.0, 500.0], np.float32), t, "eng")


# ---- I/O from the engine, refusing metadata that disagrees ---------------------------------------------------------
@pytest.mark.parametrize("io, message", [
    ({"inputs": [{"name": "input", "shape": [-1, 4], "dtype": "float16"}], "outputs": IO["outputs"]},
     r"input 'input' is float16 in the metadata and float32 in the engine"),
    ({"inputs": IO["inputs"], "outputs": [{"name": "probs", "shape": [-1, 3], "dtype": "float32"}]},
     r"the engine has output 'logits', which its metadata does not list"),
    ({"inputs": IO["inputs"], "outputs": IO["outputs"] + [{"name": "extra", "shape": [1], "dtype": "float32"}]},
     r"the metadata lists output 'extra', which the engine does not have"),
    ({"inputs": IO["outputs"], "outputs": IO["inputs"]}, r"the metadata lists 'input' as an output, the engine has it"),
    ({"inputs": [{"name": "input", "shape": [-1, 5], "dtype": "float32"}], "outputs": IO["outputs"]},
     r"input 'input' has shape \[-1, 5\] in the metadata and \[-1, 4\] in the engine"),
])
def test_metadata_that_disagrees_with_the_engine_is_refused(cudart, io, message):
    eng = make_engine(cudart, io=io)
    with pytest.raises(PlanMetadataError, match=message + r".*does not belong to this plan"):
        eng.run({t["name"]: np.ones((2,) + tuple(t["shape"][1:]), np.float32) for t in io["inputs"]})


def test_io_comes_from_the_engine_when_the_metadata_has_none(cudart):
    eng = make_engine(cudart, plan=b"fake-plan:nonzero", io={})
    assert eng.inputs == []  # nothing known before deserialisation
    eng._engine()
    assert [(t.name, t.shape, t.dtype) for t in eng.inputs] == [("x", (None, 4), "float32")]
    assert [(t.name, t.shape, t.dtype) for t in eng.outputs] == [("idx", (2, None), "int64")]


def test_io_trtlab_cannot_lay_out_is_refused(cudart):
    with pytest.raises(PlanMetadataError, match=r"I/O tensor 'input' has format CHW4; .*linear"):
        make_engine(cudart, plan=b"fake-plan:chw4").run({"input": np.ones((2, 4), np.float32)})
    import test_tensorrt_fakes as fakes
    from trtlab.backends.tensorrt.engine_io import read_io
    net = fakes.Bf16Net()
    net.tensors[0] = fakes.Tensor("x", fakes.IN, fakes.DataType.INT4, (-1, 4))
    with pytest.raises(PlanMetadataError, match=r"I/O tensor 'x' is int4, which numpy cannot hold"):
        read_io(fakes.FakeEngine(cudart, None, net), "plan")


# ---- every failure of a TensorRT call is a named error -----------------------------------------------------------
@pytest.mark.parametrize("fault, options, error, message", [
    ("execute_async_v3", {}, RunError, r"execute_async_v3 failed in optimization profile 0: IExecutionContext::"
                                       r"enqueueV3: an illegal memory access .*\(inputs input float32 \[2, 4\]\)"),
    ("execute_v2", {"mode": "execute"}, RunError, r"execute_v2 failed .*executeV2: an illegal memory access"),
    ("execute_async_v3", {"cuda_graph": True}, RunError, r"execute_async_v3 \(before CUDA graph capture\) failed"),
    ("set_tensor_address", {}, RunError, r"refused the address of tensor 'input': setTensorAddress"),
    ("set_input_shape", {}, RunError, r"refused shape \[2, 4\] for input 'input' in optimization profile 0: "
                                      r"setInputShape"),
    ("deserialize", {}, PlanError, r"could not deserialize .* magic tag mismatch"),
    ("create_execution_context", {}, BackendUnavailableError, r"could not create an execution context"),
])
def test_each_failing_tensorrt_call_is_a_named_error(cudart, fault, options, error, message):
    eng = make_engine(cudart, **options)
    cudart.faults.add(fault)
    with pytest.raises(error, match=message):
        eng.run({"input": np.ones((2, 4), np.float32)})


def test_a_refused_output_allocator_is_a_run_error(cudart):
    eng = make_engine(cudart, plan=b"fake-plan:nonzero")
    cudart.faults.add("set_output_allocator")
    with pytest.raises(RunError, match=r"refused an output allocator for output 'idx': setOutputAllocator"):
        eng.run({"x": np.ones((2, 4), np.float32)})


def test_a_runner_that_fails_mid_benchmark_is_a_run_error(cudart):
    eng = make_engine(cudart)
    run = eng.runner({"input": np.ones((2, 4), np.float32)})
    run()
    cudart.faults.add("execute_async_v3")
    with pytest.raises(RunError, match="execute_async_v3 failed"):
        run_benchmark(eng, iterations=3, warmup=0)


def test_an_exception_from_the_bindings_is_a_run_error(cudart, monkeypatch):
    eng = make_engine(cudart)
    eng.run({"input": np.ones((2, 4), np.float32)})
    ctx = eng._engine().contexts[0]

    def broken(stream_handle):
        raise TypeError("execute_async_v3(): incompatible function arguments")
    monkeypatch.setattr(ctx, "execute_async_v3", broken)
    with pytest.raises(RunError, match=r"execute_async_v3 raised TypeError: execute_async_v3\(\): incompatible"):
        eng.run({"input": np.ones((2, 4), np.float32)})


# ---- minimum versions, checked where the modules are loaded --------------------------------------------------------
def test_too_old_libraries_are_refused_with_the_version_and_the_fix(monkeypatch):
    import types
    real = _import.importlib.import_module
    fakes = {"tensorrt": types.SimpleNamespace(__version__="8.6.1"),
             "tensorrt_rtx": types.SimpleNamespace(__version__="0.9.0")}

    def fake_import(name):
        if name in fakes:
            return fakes[name]
        if name == "tensorrt_rtx_bindings":
            raise ImportError("No module named 'tensorrt_rtx_bindings'")
        return real(name)
    monkeypatch.setattr(_import.importlib, "import_module", fake_import)
    _import._load.cache_clear()
    try:
        with pytest.raises(BackendUnavailableError, match=r"tensorrt 8\.6\.1 is older than 10\.0, the oldest trtlab "
                                                          r"runs on .*upgrade: pip install -U tensorrt"):
            _import.load_api("tensorrt")
        with pytest.raises(BackendUnavailableError, match=r"tensorrt_rtx 0\.9\.0 is older than 1\.0.*"
                                                          r"tensorrt_rtx_bindings: No module"):
            _import.load_api("tensorrt-rtx")
        fakes["tensorrt"] = types.SimpleNamespace(__version__="10.0.1.6")
        _import._load.cache_clear()
        assert _import.load_api("tensorrt").version == "10.0.1.6"
    finally:
        _import._load.cache_clear()
    assert _import.version_tuple("13.0.0rc1") == (13, 0, 0) and _import.version_tuple("10.9.0.34") == (10, 9, 0, 34)


def test_too_old_cuda_bindings_are_refused(monkeypatch):
    import sys
    import types
    pkg = types.ModuleType("cuda.bindings")
    pkg.__version__ = "12.4.0"
    pkg.runtime = types.ModuleType("cuda.bindings.runtime")
    monkeypatch.setitem(sys.modules, "cuda.bindings", pkg)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", pkg.runtime)
    _import._cuda_runtime.cache_clear()
    try:
        with pytest.raises(BackendUnavailableError, match=r"cuda\.bindings 12\.4\.0 is older than 12\.6.*"
                                                          r"pip install -U cuda-python"):
            _import.cuda_runtime()
        assert running_device() is None
    finally:
        _import._cuda_runtime.cache_clear()


def test_runners_with_transfers_copy_the_engine_bytes_and_data_dependent_outputs(cudart):
    """transfers=True (trtexec 10's default) copies what run() copies: 2-byte bf16 values (a float32 feed would not
    fit the 2-byte buffer: the fake refuses such a copy, as CUDA does), and data-dependent outputs at their size."""
    bf16 = make_engine(cudart, plan=b"fake-plan:bf16")
    run = bf16.runner({"x": np.ones((4, 4), np.float32)}, transfers=True)
    run()
    run()
    nonzero = make_engine(cudart, plan=b"fake-plan:nonzero")
    nonzero.run({"x": np.ones((2, 4), np.float32)})
    run = nonzero.runner({"x": np.ones((16, 4), np.float32)}, transfers=True, spin_wait=True)
    run()
    assert cudart.pending() == 0 and nonzero._contexts[0].allocator.requests["idx"] == 2 * 64 * 8
