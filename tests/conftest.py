"""Shared fixtures: small real ONNX models built with onnx.helper, and a temporary workspace."""
from __future__ import annotations

import importlib
import os
import time
from types import ModuleType

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


RTX_INSTALL = 'pip install -e ".[tensorrt-rtx]"'


def in_ci() -> bool:
    """True where the CI runner sets CI=true: there, parts the project installs must be present."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def installed(module: str, what: str, install: str, module_level: bool = False) -> ModuleType:
    """Import `module`, a part the project's extras install. Missing, the test skips on a developer machine and
    FAILS in CI (CI=true), where the extras are installed and an absence is a broken setup, not a choice."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        why = f"{what} is not importable ({exc}); install it with {install}"
    if in_ci():
        pytest.fail(f"CI=true: {why}", pytrace=False)
    pytest.skip(why, allow_module_level=module_level)


def tensorrt_rtx_bindings(module_level: bool = False) -> ModuleType:
    """The real `tensorrt_rtx_bindings` module (the [tensorrt-rtx] extra); see installed()."""
    return installed("tensorrt_rtx_bindings", "TensorRT-RTX", RTX_INSTALL, module_level)


def wait_for(cond, what: str, timeout: float = 60.0) -> None:
    """Poll until cond() is true (job done callbacks run just after the job's future resolves)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def conv_model(channels: int = 8, size: int = 16, seed: int = 0) -> onnx.ModelProto:
    """Conv -> Relu -> Conv -> Add(residual) -> GlobalAveragePool -> Flatten -> Gemm, dynamic batch."""
    rng = np.random.default_rng(seed)
    c = channels
    inits = [
        numpy_helper.from_array((rng.standard_normal((c, 3, 3, 3)) * np.sqrt(2 / 27)).astype(np.float32), "w0"),
        numpy_helper.from_array(np.zeros(c, np.float32), "b0"),
        numpy_helper.from_array((rng.standard_normal((c, c, 3, 3)) * np.sqrt(2 / (9 * c))).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal(c).astype(np.float32) * 0.1, "b1"),
        numpy_helper.from_array((rng.standard_normal((10, c)) * np.sqrt(1 / c)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w0", "b0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c1", "r0"], ["a1"], name="add1"),
        helper.make_node("Relu", ["a1"], ["r1"], name="relu1"),
        helper.make_node("GlobalAveragePool", ["r1"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(nodes, "convnet", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                 ["batch", 3, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture
def tiny_model() -> onnx.ModelProto:
    """A small conv net with a residual Add and a dynamic batch."""
    return conv_model()


@pytest.fixture
def workspace(tmp_path):
    """A fresh workspace folder."""
    return tmp_path / "ws"


def range_model() -> onnx.ModelProto:
    """x*2 -> Relu -> (*1e-7 -> *1e4) and (*3e4): in FP16 the 1e-7 branch underflows and turns subnormal (the
    first divergence, tensor 'tiny' at position 2) and the 3e4 branch overflows 65504; dynamic batch, 256 wide."""
    def const(v: float, name: str) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array(v, np.float32), name)
    nodes = [helper.make_node("Mul", ["x", "k_in"], ["scaled"], name="scale_in"),
             helper.make_node("Relu", ["scaled"], ["r"], name="relu"),
             helper.make_node("Mul", ["r", "k_tiny"], ["tiny"], name="shrink"),
             helper.make_node("Mul", ["tiny", "k_back"], ["back"], name="restore"),
             helper.make_node("Mul", ["r", "k_big"], ["big"], name="grow")]
    g = helper.make_graph(nodes, "ranges", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 256])],
                          [helper.make_tensor_value_info("back", TensorProto.FLOAT, ["batch", 256]),
                           helper.make_tensor_value_info("big", TensorProto.FLOAT, ["batch", 256])],
                          [const(2.0, "k_in"), const(1e-7, "k_tiny"), const(1e4, "k_back"), const(3e4, "k_big")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


# ---- real results, computed once per test run (small models, few iterations) ---------------------------------
# Tests of plots, widgets and the report read these: frames exactly as trtlab produces them.
@pytest.fixture(scope="session")
def mlp_session(tmp_path_factory):
    """A Session on the zoo's MLP (64 -> 128 -> 128 -> 10), ONNX Runtime on the CPU."""
    import trtlab
    import trtlab.zoo as zoo
    return trtlab.Session(zoo.mlp(), workspace=tmp_path_factory.mktemp("mlp-ws"))


@pytest.fixture(scope="session")
def real_profile(mlp_session):
    """Session.profile_layers of the MLP at batch 2 (LayerProfile)."""
    return mlp_session.profile_layers(mlp_session.build("fp32", batch=2), runs=5, warmup=1)


@pytest.fixture(scope="session")
def real_benchmark(mlp_session):
    """Session.benchmark of the MLP at batch 2, 40 iterations (BenchmarkResult)."""
    return mlp_session.benchmark(mlp_session.build("fp32", batch=2), iterations=40, warmup=2)


@pytest.fixture(scope="session")
def real_sweep(mlp_session):
    """Session.sweep of the MLP over batch 1, 2, 4 x fp32, fp16 (SweepResult)."""
    return mlp_session.sweep(batch=(1, 2, 4), precision=("fp32", "fp16"), iterations=20, warmup=2, monitor=False)


@pytest.fixture(scope="session")
def range_session(tmp_path_factory):
    """A Session on range_model()."""
    import trtlab
    return trtlab.Session(range_model(), workspace=tmp_path_factory.mktemp("ranges-ws"))


@pytest.fixture(scope="session")
def real_compare(range_session):
    """Session.compare fp32 vs fp16 of range_model over 2 random batches of 2 (ComparisonResult)."""
    return range_session.compare("fp32", "fp16", data=2, batch=2)


@pytest.fixture(scope="session")
def real_range_report(range_session):
    """Session.fp16_range_report of range_model over the same 2 random batches of 2."""
    return range_session.fp16_range_report(data=2, batch=2)


@pytest.fixture(scope="module")
def fetched():
    """fetched(model_id): the corpus model, fetched (or found in the cache) and verified; the test fails if not."""
    from corpus import CorpusError, get

    def fetch(model_id):
        m = get(model_id)
        try:
            m.fetch()
        except CorpusError as e:
            pytest.fail(f"the real-model corpus could not be fetched: {e}")
        return m
    return fetch
