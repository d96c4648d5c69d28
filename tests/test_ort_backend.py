"""ONNX Runtime engines against independent references, input checking and thread safety."""
from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

import trtlab
from trtlab.errors import BackendUnavailableError, ConfigError, EngineClosedError, InputError, PrecisionNotSupportedError


def test_outputs_match_onnx_reference(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace)
    eng = s.build(batch=3)
    x = np.random.default_rng(1).standard_normal((3, 3, 16, 16)).astype(np.float32)
    got = eng.run({"input": x})["logits"]
    ref = ReferenceEvaluator(tiny_model).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert [o.name for o in eng.outputs] == ["logits"] and eng.inputs[0].dtype == "float32"


def test_zoo_resnet18_matches_reference(workspace):
    model = trtlab.zoo.resnet18(image_size=32)
    s = trtlab.Session(model, workspace=workspace)
    eng = s.build(batch=2)
    feeds = eng.random_feeds(seed=3)
    ref = ReferenceEvaluator(model).run(None, feeds)[0]
    np.testing.assert_allclose(eng.run(feeds)["logits"], ref, rtol=1e-3, atol=1e-4)


def test_marked_outputs_equal_reference_intermediates(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace)
    eng = s.build(batch=2, outputs="all")
    names = [o.name for o in eng.outputs]
    assert set(["c0", "r0", "c1", "a1", "r1", "p", "f", "logits"]) <= set(names)
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)
    got = eng.run({"input": x})
    ev = ReferenceEvaluator(tiny_model)
    ref = dict(zip(["r0", "a1"], ev.run(["r0", "a1"], {"input": x})))
    np.testing.assert_allclose(got["r0"], ref["r0"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["a1"], ref["a1"], rtol=1e-4, atol=1e-5)


def test_bad_inputs_named(tiny_model, workspace):
    eng = trtlab.Session(tiny_model, workspace=workspace).build(batch=2)
    x = np.zeros((2, 3, 16, 16), np.float32)
    with pytest.raises(InputError, match=r"'image' is not an input of the model; its inputs are \['input'\]"):
        eng.run({"image": x})
    with pytest.raises(InputError, match=r"'input' is missing; expected float32 \[batch, 3, 16, 16\]"):
        eng.run({})
    with pytest.raises(InputError, match="'input' has dtype complex64, which cannot be cast safely to the model's float32"):
        eng.run({"input": x.astype(np.complex64)})
    with pytest.raises(InputError, match="'input' has shape \\[2, 3, 16\\], but the model expects.*rank 4"):
        eng.run({"input": x[..., 0]})
    with pytest.raises(InputError, match="'input' has shape .*size 3 at axis 1"):
        eng.run({"input": np.zeros((2, 4, 16, 16), np.float32)})
    # float64 is cast (same kind), as a user would expect
    assert eng.run({"input": x.astype(np.float64)})["logits"].dtype == np.float32


def test_unavailable_provider_and_precision(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace)
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider is not available.*onnxruntime-gpu"):
        s.build(batch=1, providers=["cuda"])
    with pytest.raises(PrecisionNotSupportedError, match="FP8"):
        s.build(batch=1, precision="fp8")
    with pytest.raises(ConfigError, match="unknown precision 'fp12'"):
        s.build(batch=1, precision="fp12")
    with pytest.raises(ConfigError, match="graph_optimization='fast'"):
        s.build(batch=1, graph_optimization="fast")


def test_concurrent_runs_identical(tiny_model, workspace):
    eng = trtlab.Session(tiny_model, workspace=workspace).build(batch=4)
    x = np.random.default_rng(5).standard_normal((4, 3, 16, 16)).astype(np.float32)
    expected = eng.run({"input": x})["logits"]
    results, errors = [], []

    def worker():
        try:
            for _ in range(20):
                results.append(eng.run({"input": x})["logits"])
        except Exception as exc:  # surfaced below
            errors.append(exc)
    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 120
    for r in results:
        np.testing.assert_array_equal(r, expected)


def test_graph_optimization_and_threads_reach_the_session(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace)
    off = s.build(batch=1, graph_optimization="disable", threads=1)
    on = s.build(batch=1, graph_optimization="all", threads=1)
    # without optimization ORT executes every node; with it, Conv+Relu fusions shrink the executed graph
    assert len(off.layers()) == 8
    assert len(on.layers()) < 8
    x = off.random_feeds()
    np.testing.assert_allclose(off.run(x)["logits"], on.run(x)["logits"], rtol=1e-4, atol=1e-5)


def test_cuda_requested_without_a_gpu_is_refused_wherever_it_stands(monkeypatch):
    # onnxruntime-gpu installed but no GPU visible: asking for CUDA first (then CPU) must still be refused
    import onnxruntime

    from trtlab.backends.onnxruntime import provider_names
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    for requested in (["cuda"], ["cuda", "cpu"]):
        with pytest.raises(BackendUnavailableError, match="no NVIDIA GPU is visible"):
            provider_names(requested)
    assert provider_names(None) == ["CPUExecutionProvider"]


def test_closed_engine_says_closed_and_how_to_get_a_new_one(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace)
    eng = s.build(batch=2)
    x = np.ones((2, 3, 16, 16), np.float32)
    eng.close()
    for use in (lambda: eng.run({"input": x}), lambda: eng.runner({"input": x}),
                lambda: eng.profile_layers({"input": x}, runs=1)):
        with pytest.raises(EngineClosedError, match=r"engine convnet .* was closed.*Session\.build\(\.\.\.\) again"):
            use()
    fresh = s.build(batch=2)
    assert fresh is not eng
    ref = ReferenceEvaluator(tiny_model).run(["logits"], {"input": x})[0]
    np.testing.assert_allclose(fresh.run({"input": x})["logits"], ref, rtol=1e-4, atol=1e-5)
