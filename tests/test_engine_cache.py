"""The engine cache: model identity, verified loads from the workspace, the backend a config names, the LRU
bound, and single-flight builds. Outputs are checked against plain onnxruntime on the same ONNX model."""
from __future__ import annotations

import gc
import time
import threading
import weakref

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtlab.backends import available_backends
from trtlab.engines import DamagedCacheWarning
from trtlab.model import Model
from trtlab.session import Session

from conftest import conv_model


def plain_ort(proto: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def softmax_model(opset: int) -> onnx.ModelProto:
    """Softmax with the default axis: over the flattened trailing dims before opset 13, over the last axis after."""
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], name="softmax")], "softmax",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def cast_add_model(const: np.ndarray) -> onnx.ModelProto:
    """y = x + Cast(c, float): the same initializer bytes mean different numbers as int32 and as float32."""
    graph = helper.make_graph([helper.make_node("Cast", ["c"], ["cf"], name="cast", to=TensorProto.FLOAT),
                               helper.make_node("Add", ["x", "cf"], ["y"], name="add")], "castadd",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                              [numpy_helper.from_array(const, "c")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


# ---- identity -----------------------------------------------------------------------------------
def test_the_same_graph_at_another_opset_does_not_reuse_the_cached_engine(tmp_path):
    ws = tmp_path / "ws"
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    for opset in (11, 13):  # both sessions share one workspace folder root
        proto = softmax_model(opset)
        eng = Session(proto, workspace=ws).build()
        np.testing.assert_allclose(eng.run({"x": x})["y"], plain_ort(proto, {"x": x})[0], rtol=1e-6, atol=1e-7)
        assert eng.metadata["cache"] == "built"


def test_an_initializer_of_another_dtype_with_the_same_bytes_is_another_model(tmp_path):
    ws = tmp_path / "ws"
    x = np.zeros(1, np.float32)
    as_float = np.array([1.0], np.float32)
    as_int = as_float.view(np.int32)  # the same four bytes: 1065353216
    for const in (as_float, as_int):
        proto = cast_add_model(const)
        eng = Session(proto, workspace=ws).build()
        np.testing.assert_array_equal(eng.run({"x": x})["y"], plain_ort(proto, {"x": x})[0])
    assert Model.load(cast_add_model(as_float)).hash != Model.load(cast_add_model(as_int)).hash


def _with_function(body_op: str) -> onnx.ModelProto:
    fn = helper.make_function("local", "act", ["a"], ["b"], [helper.make_node(body_op, ["a"], ["b"])],
                              [helper.make_opsetid("", 17)])
    graph = helper.make_graph([helper.make_node("act", ["x"], ["y"], domain="local", name="act0")], "fn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    model = helper.make_model(graph, functions=[fn], opset_imports=[helper.make_opsetid("", 17),
                                                                    helper.make_opsetid("local", 1)])
    model.ir_version = 8
    return model


def _with_sparse(values: list[float]) -> onnx.ModelProto:
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(np.array(values, np.float32), "w"),
                                       numpy_helper.from_array(np.array([0, 3], np.int64), "w_idx"), [4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"], name="add")], "sp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                              sparse_initializer=[sparse])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _ir(version: int) -> onnx.ModelProto:
    model = conv_model()
    model.ir_version = version
    return model


@pytest.mark.parametrize("a, b", [(lambda: _with_function("Relu"), lambda: _with_function("Sigmoid")),
                                  (lambda: _with_sparse([1.0, 2.0]), lambda: _with_sparse([1.0, 5.0])),
                                  (lambda: _ir(8), lambda: _ir(9)),
                                  (lambda: softmax_model(11), lambda: softmax_model(13))],
                         ids=["model-local function", "sparse initializer", "ir_version", "opset"])
def test_the_hash_covers_what_the_model_computes(a, b):
    ma, mb = Model.load(a(), check_runtime=False), Model.load(b(), check_runtime=False)
    assert ma.hash != mb.hash
    assert Model.load(a(), check_runtime=False).hash == ma.hash  # and is stable


# ---- verified loads -----------------------------------------------------------------------------
def test_a_flipped_byte_in_a_cached_model_is_rebuilt_with_a_warning(tmp_path):
    proto = conv_model()
    ws = tmp_path / "ws"
    first = Session(proto, workspace=ws)
    eng = first.build(batch=1)
    folder = first.workspace.engine_dir(eng.config)
    path = folder / "model.onnx"
    data = bytearray(path.read_bytes())
    weights = numpy_helper.to_array(next(i for i in proto.graph.initializer if i.name == "w0")).tobytes()
    at = bytes(data).find(weights)
    assert at > 0
    data[at + 3] ^= 0x40  # the exponent of the first weight: a huge value, still a loadable model
    path.write_bytes(bytes(data))

    again = Session(proto, workspace=ws)
    with pytest.warns(DamagedCacheWarning, match=folder.name):
        eng2 = again.build(batch=1)
    assert eng2.metadata["cache"] == "built"
    assert again.log.records("warning", search=str(folder))
    feeds = eng2.random_feeds()
    np.testing.assert_allclose(eng2.run(feeds)["logits"], plain_ort(proto, feeds)[0], rtol=1e-5, atol=1e-6)
    # the rebuilt entry verifies: a third session loads it from disk without a warning
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedCacheWarning)
        assert Session(proto, workspace=ws).build(batch=1).metadata["cache"] == "disk"


def test_an_emptied_entry_folder_is_rebuilt_with_a_warning_naming_it(tmp_path):
    proto = conv_model()
    ws = tmp_path / "ws"
    first = Session(proto, workspace=ws)
    folder = first.workspace.engine_dir(first.build(batch=2).config)
    for f in folder.iterdir():
        f.unlink()
    for _ in range(2):  # and the build after that one works as well, from the rebuilt entry
        s = Session(proto, workspace=ws)
        if not any(folder.iterdir()):
            with pytest.warns(DamagedCacheWarning, match=folder.name):
                eng = s.build(batch=2)
        else:
            eng = s.build(batch=2)
        feeds = eng.random_feeds()
        np.testing.assert_allclose(eng.run(feeds)["logits"], plain_ort(proto, feeds)[0], rtol=1e-5, atol=1e-6)
    assert (folder / "metadata.json").exists() and eng.metadata["cache"] == "disk"


# ---- the backend a config names -----------------------------------------------------------------
def test_build_config_uses_the_backend_the_config_names(tmp_path):
    if not available_backends()["tensorrt-rtx"]["available"]:
        pytest.skip("TensorRT-RTX is not installed here")
    proto = conv_model()
    s = Session(proto, workspace=tmp_path / "ws")
    config = s.make_config(batch=1)
    s.use_backend("tensorrt-rtx")
    eng = s.build_config(config)
    assert eng.backend_name == "onnxruntime" and config.backend == "onnxruntime"
    stored = [r for r in s.workspace.list_engines() if r["key"] == config.key]
    assert stored and stored[0]["metadata"]["backend"] == "onnxruntime"
    feeds = eng.random_feeds()
    np.testing.assert_allclose(eng.run(feeds)["logits"], plain_ort(proto, feeds)[0], rtol=1e-5, atol=1e-6)


# ---- the LRU bound ------------------------------------------------------------------------------
def test_the_cache_keeps_at_most_max_engines_loaded(tmp_path):
    proto = conv_model(channels=4, size=8)
    s = Session(proto, workspace=tmp_path / "ws", max_engines=3)
    refs = [weakref.ref(s.build(batch=b)) for b in range(1, 7)]  # N + 3 configs, none held by the caller
    gc.collect()
    assert len(s._engine_cache.loaded()) <= 3
    assert all(r() is None for r in refs[:3]), "evicted engines nobody holds must be freed"
    again = s.build(batch=1)  # evicted and freed: reloaded from the workspace, not built
    assert again.metadata["cache"] == "disk" and len(s._engine_cache.loaded()) <= 3
    feeds = again.random_feeds()
    np.testing.assert_allclose(again.run(feeds)["logits"], plain_ort(proto, feeds)[0], rtol=1e-5, atol=1e-6)


def test_an_evicted_engine_the_caller_holds_keeps_working(tmp_path):
    proto = conv_model(channels=4, size=8)
    s = Session(proto, workspace=tmp_path / "ws", max_engines=2)
    held = s.build(batch=1)
    for b in range(2, 6):
        s.build(batch=b)
    assert held.config not in s._engine_cache.engines  # evicted from the cache ...
    feeds = held.random_feeds()  # ... but a notebook variable still runs
    np.testing.assert_allclose(held.run(feeds)["logits"], plain_ort(proto, feeds)[0], rtol=1e-5, atol=1e-6)
    assert s.build(batch=1) is held and len(s._engine_cache.loaded()) <= 2  # handed out again, no reload


def test_a_sweep_leaves_at_most_capacity_engines_loaded(tmp_path):
    s = Session(conv_model(channels=4, size=8), workspace=tmp_path / "ws", max_engines=2)
    sw = s.sweep(batch=[1, 2, 3, 4, 5, 6], iterations=5, warmup=1, monitor=False)
    assert (sw.to_frame()["status"] == "ok").all() and len(sw.records) == 6
    assert len(s._engine_cache.loaded()) <= 2
    kept = s.sweep(batch=[1, 2, 3, 4, 5, 6], iterations=5, warmup=1, monitor=False, keep_engines=True)
    assert len(kept.records) == 6 and len(s._engine_cache.loaded()) <= 2


# ---- single flight ------------------------------------------------------------------------------
def _count_builds(backend, delay: float = 0.2, barrier: threading.Barrier | None = None) -> list:
    calls: list = []
    real = backend.build

    def build(model, variant, config, reporter):
        calls.append(config)
        if barrier is not None:
            barrier.wait(timeout=30)  # both builds must be under way at once
        time.sleep(delay)  # widen the window in which a second build could start
        return real(model, variant, config, reporter)
    backend.build = build
    return calls


@pytest.mark.parametrize("trial", range(4))
def test_six_background_builds_of_one_config_build_once(tmp_path, trial):
    s = Session(conv_model(channels=4, size=8), workspace=tmp_path / "ws")
    calls = _count_builds(s.backend)
    jobs = [s.build(batch=2, background=True) for _ in range(6)]
    engines = [j.result(timeout=120) for j in jobs]
    assert len(calls) == 1
    assert all(e is engines[0] for e in engines)
    assert [r["key"] for r in s.workspace.list_engines()] == [engines[0].config.key]


def test_different_configs_build_concurrently(tmp_path):
    s = Session(conv_model(channels=4, size=8), workspace=tmp_path / "ws")
    calls = _count_builds(s.backend, delay=0.0, barrier=threading.Barrier(2))
    jobs = [s.build(batch=b, background=True) for b in (1, 2)]
    engines = [j.result(timeout=120) for j in jobs]  # a serialized cache would break the barrier
    assert len(calls) == 2 and engines[0].config != engines[1].config


@pytest.mark.parametrize("trial", range(3))
def test_two_sessions_saving_one_entry_at_once_keep_one_finished_entry(tmp_path, trial):
    proto = conv_model(channels=4, size=8)
    sessions = [Session(proto, workspace=tmp_path / "ws") for _ in range(3)]  # separate caches, one folder
    barrier = threading.Barrier(3)
    for s in sessions:
        _count_builds(s.backend, delay=0.0, barrier=barrier)
    jobs = [s.build(batch=1, background=True) for s in sessions]
    engines = [j.result(timeout=120) for j in jobs]  # no OSError/FileNotFoundError from the renames
    entries = sessions[0].workspace.list_engines()
    assert [r["key"] for r in entries] == [engines[0].config.key]
    again = Session(proto, workspace=tmp_path / "ws").build(batch=1)
    assert again.metadata["cache"] == "disk"
    feeds = again.random_feeds()
    np.testing.assert_allclose(again.run(feeds)["logits"], plain_ort(proto, feeds)[0], rtol=1e-5, atol=1e-6)
