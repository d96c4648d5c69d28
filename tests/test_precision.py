"""Precision transforms: fp16/bf16 (pins, I/O types, weight report), int8/fp8 Q/DQ, int8+fp16, errors."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import trtlab
import trtlab.zoo as zoo
from trtlab.config import BuildConfig
from trtlab.errors import CalibrationError, ConfigError, PrecisionNotSupportedError
from trtlab.model import Model
from trtlab.precision import make_variant
from trtlab.precision.calibration import CalibrationTable, calibrate, synthetic_batches
from trtlab.precision.lowp import convert, weight_stats
from trtlab.precision.qdq import quantize

from conftest import conv_model

ZOO = [("resnet18", dict(image_size=32)), ("mobilenet_v2", dict(image_size=32)), ("unet", dict(image_size=32)),
       ("bert_small", {})]


def _run(proto, feeds):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def _types(proto):
    m = onnx.shape_inference.infer_shapes(proto)
    t = {i.name: i.data_type for i in m.graph.initializer}
    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        t[vi.name] = vi.type.tensor_type.elem_type
    return t


@pytest.mark.parametrize("name,kw", ZOO)
def test_fp16_zoo_runs_and_matches_fp32(name, kw):
    proto = zoo.get(name, **kw)
    result = convert(proto, "fp16")
    onnx.checker.check_model(result.model, full_check=True)
    feeds = next(synthetic_batches(proto, 1, batch=2, seed=1))
    ref, got = _run(proto, feeds), _run(result.model, feeds)
    for r, g in zip(ref, got):
        assert g.dtype == np.float32  # I/O stay fp32
        assert np.abs(r - g).max() <= 0.03 * np.abs(r).max()
    types = _types(result.model)
    assert all(types[i.name] == TensorProto.FLOAT16 for i in result.model.graph.initializer
               if i.name.endswith(".weight") and "Gather" not in i.name and types[i.name] != TensorProto.INT64)


def test_fp16_keeps_index_computations_and_io_option():
    proto = zoo.get("bert_small")
    low = convert(proto, "fp16", keep_io_types=False).model
    types = _types(low)
    assert types["input_ids"] == TensorProto.INT64
    assert types["embeddings.position_ids"] == TensorProto.INT64  # CumSum on int64 untouched
    assert types["last_hidden_state"] == TensorProto.FLOAT16
    onnx.checker.check_model(low, full_check=True)


def test_pins_keep_named_nodes_fp32(tiny_model):
    v = make_variant(Model.load(tiny_model), BuildConfig.make(precision="fp16", fp32_layers=["conv1"]))
    types = _types(v.model)
    node = next(n for n in v.model.graph.node if n.name == "conv1")
    assert all(types[t] == TensorProto.FLOAT for t in list(node.input) + list(node.output))
    conv0 = next(n for n in v.model.graph.node if n.name == "conv0")
    assert types[conv0.output[0]] == TensorProto.FLOAT16 and types["w0"] == TensorProto.FLOAT16
    assert v.fp32_layers == ["conv1"] and any("pinned" in n for n in v.notes)


def test_unknown_pin_names_close_matches(tiny_model):
    with pytest.raises(ConfigError, match=r"no node named 'conv_1'.*close matches: \['conv1'"):
        make_variant(Model.load(tiny_model), BuildConfig.make(precision="fp16", fp32_layers=["conv_1"]))


def test_weight_report_counts_flush_subnormal_clamp():
    w = np.array([1e-9, -2e-8, 1e-6, 2.0**-20, 1.0, 1e5, -7e4, 0.0], np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [8])
    g = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"], name="mul")], "g", [x], [y],
                          [numpy_helper.from_array(w, "w")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    res = convert(proto, "fp16")
    row = res.weight_report.iloc[0]
    assert (row["flushed_to_zero"], row["subnormal"], row["clamped"]) == (2, 2, 2)
    assert weight_stats(w, "fp16")["flushed_to_zero"] == 2
    low = numpy_helper.to_array(next(i for i in res.model.graph.initializer if i.name == "w"))
    assert low.dtype == np.float16 and low[5] == 65504 and low[6] == -65504 and low[0] == 0
    assert "2 flushed to zero, 2 subnormal, 2 clamped" in res.notes[0]
    bf = convert(proto, "bf16").weight_report.iloc[0]
    assert (bf["flushed_to_zero"], bf["subnormal"], bf["clamped"]) == (0, 0, 0)


def test_bf16_is_valid_onnx_but_refused_by_ort_cpu(tiny_model, workspace):
    v = make_variant(Model.load(tiny_model), BuildConfig.make(precision="bf16"))
    onnx.checker.check_model(v.model, full_check=True)
    # which weights become bf16 follows ONNX's own schemas at opset 17: Gemm takes bfloat16, Conv does not (22+)
    types = _types(v.model)
    for op, weights in (("Conv", ("w0", "b0", "w1", "b1")), ("Gemm", ("fc_w", "fc_b"))):
        allowed = "tensor(bfloat16)" in onnx.defs.get_schema(op, 17).type_constraints[0].allowed_type_strs
        assert allowed == (op == "Gemm")
        want = TensorProto.BFLOAT16 if allowed else TensorProto.FLOAT
        assert [types[w] for w in weights] == [want] * len(weights), op
    assert any("Conv" in n and "stay fp32" in n for n in v.notes), v.notes
    s = trtlab.Session(tiny_model, workspace=workspace)
    with pytest.raises(PrecisionNotSupportedError, match="bf16"):
        s.build(precision="bf16", batch=1)


def _table(proto, n=4):
    return calibrate(proto, n, method="minmax")


def test_int8_qdq_matches_numpy_fake_quant():
    proto = zoo.mlp()
    table = _table(proto)
    q = quantize(proto, table, "int8").model
    onnx.checker.check_model(q, full_check=True)
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("QuantizeLinear") == 3 and ops.count("DequantizeLinear") == 6
    feeds = next(synthetic_batches(proto, 1, batch=4, seed=3))
    got = _run(q, feeds)[0]
    # independent numpy: per-tensor activations, per-output-channel weights, symmetric
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    x = feeds["input"]
    gemms = [n for n in proto.graph.node if n.op_type == "Gemm"]
    for k, n in enumerate(gemms):
        s = table[n.input[0]] / 127
        xq = np.clip(np.rint(x / s), -127, 127) * s
        w = inits[n.input[1]]
        trans_b = any(a.name == "transB" and a.i for a in n.attribute)
        axis = 0 if trans_b else 1
        ws = np.abs(w).max(axis=1 - axis, keepdims=True) / 127
        wq = np.clip(np.rint(w / ws), -127, 127) * ws
        x = xq @ (wq.T if trans_b else wq) + inits[n.input[2]]
        if k < len(gemms) - 1:
            x = np.maximum(x, 0)
    np.testing.assert_allclose(got, x, rtol=1e-4, atol=1e-4 * np.abs(x).max())
    ref = _run(proto, feeds)[0]
    assert np.abs(ref - got).max() <= 0.05 * np.abs(ref).max()


def test_int8_resnet_and_hybrid_and_cache_migration(tmp_path):
    proto = conv_model()
    table = _table(proto)
    path = table.save(tmp_path / "model.calib.cache")
    model = Model.load(proto)
    a = make_variant(model, BuildConfig.make(precision="int8"), table)
    b = make_variant(model, BuildConfig.make(precision="int8"), CalibrationTable.load(path))
    assert [n.op_type for n in a.model.graph.node] == [n.op_type for n in b.model.graph.node]
    add = next(n for n in a.model.graph.node if n.name == "add1")
    assert all(t.endswith("__dq") for t in add.input)  # residual Add quantized
    conv_w = next(n for n in a.model.graph.node if n.name == "w1__dequantize")
    assert next(x.i for x in conv_w.attribute if x.name == "axis") == 0
    feeds = next(synthetic_batches(proto, 1, batch=2, seed=2))
    ref = _run(proto, feeds)[0]
    for v in (a, make_variant(model, BuildConfig.make(precision="int8+fp16"), table)):
        got = _run(v.model, feeds)[0]
        assert np.abs(ref - got).max() <= 0.1 * np.abs(ref).max()
    pinned = make_variant(model, BuildConfig.make(precision="int8", fp32_layers=["conv1"]), table)
    conv1 = next(n for n in pinned.model.graph.node if n.name == "conv1")
    assert list(conv1.input)[:2] == ["r0", "w1"]


def test_fp8_valid_onnx_reference_runs_and_ort_refuses(tiny_model, workspace):
    proto = zoo.mlp()
    q = quantize(proto, _table(proto), "fp8").model
    onnx.checker.check_model(q, full_check=True)
    assert any(i.data_type == TensorProto.FLOAT8E4M3FN for i in q.graph.initializer)
    feeds = next(synthetic_batches(proto, 1, batch=2, seed=3))
    ref = _run(proto, feeds)[0]
    got = ReferenceEvaluator(q).run(None, feeds)[0]
    assert np.abs(ref - got).max() <= 0.2 * np.abs(ref).max()
    s = trtlab.Session(tiny_model, workspace=workspace)
    with pytest.raises(PrecisionNotSupportedError, match="FP8"):
        s.build(precision="fp8", batch=1, calibration=_table(tiny_model))
    assert not [p for p in (s.workspace.path / "engines").iterdir() if not p.name.startswith(".")]


def test_int8_needs_calibration(tiny_model):
    with pytest.raises(CalibrationError, match="needs a calibration"):
        make_variant(Model.load(tiny_model), BuildConfig.make(precision="int8"))


def test_session_calibrate_saves_cache_and_builds_int8(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace)
    table = s.calibrate(2, method="minmax")
    caches = list((s.workspace.path / "calibration").glob("*.cache"))
    assert len(caches) == 1 and CalibrationTable.load(caches[0]).header == table.header
    eng = s.build(precision="int8", batch=1, calibration=table)
    assert any(n.op_type == "QuantizeLinear" for n in eng.variant.model.graph.node)
    with pytest.raises(trtlab.errors.InputError, match="'image' is not an input"):
        s.calibrate([{"image": np.zeros((1, 3, 16, 16), np.float32)}])
    with pytest.raises(CalibrationError, match="yielded nothing"):
        s.calibrate([])
    # failed calibrations wrote nothing: the one cache and its provenance sidecar
    assert sorted(p.name for p in (s.workspace.path / "calibration").glob("*")) == \
        [caches[0].name, caches[0].name + ".trtlab.json"]
