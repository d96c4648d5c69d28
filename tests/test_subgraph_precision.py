"""Reduced precision inside If/Loop/Scan bodies: fp16 converts the work in the bodies, pins reach inner nodes, and
the result says how much of the float work was converted. Checked on hand-built If/Loop graphs against
onnx.reference (which computes in the types the graph declares) and, in test_corpus_subgraphs.py, on the real
silero-vad model against plain ONNX Runtime."""
from __future__ import annotations

import numpy as np
import pytest
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from corpus.inspect_graphs import walk
from trtlab.precision.lowp import convert

RNG = np.random.default_rng(0)
W1 = RNG.normal(0, 0.5, (4, 4)).astype(np.float32)
W2 = RNG.normal(0, 0.5, (4, 4)).astype(np.float32)
WL = RNG.normal(0, 0.5, (4, 4)).astype(np.float32)


def _const(name, value):
    return helper.make_node("Constant", [], [name], name=f"{name}_const", value=numpy_helper.from_array(value, name))


def control_flow_model():
    """y = If(c, then: MatMul(r, W1) + x, else: MatMul(r, W2) * x) with r = Relu(x) computed outside the If (so it
    becomes fp16 outside and the bodies read it from the outer scope), then a Loop of 3 iterations carrying
    h = Tanh(MatMul(h, WL) + y) whose body reads the outer y."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 4])
    then_g = helper.make_graph(
        [_const("w1", W1), helper.make_node("MatMul", ["r", "w1"], ["t_mm"], name="then_matmul"),
         helper.make_node("Add", ["t_mm", "x"], ["t_out"], name="then_add")],
        "then", [], [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, [2, 4])])
    else_g = helper.make_graph(
        [_const("w2", W2), helper.make_node("MatMul", ["r", "w2"], ["e_mm"], name="else_matmul"),
         helper.make_node("Mul", ["e_mm", "x"], ["e_out"], name="else_mul")],
        "else", [], [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, [2, 4])])
    body = helper.make_graph(
        [_const("wl", WL), helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body_cond"),
         helper.make_node("MatMul", ["h_in", "wl"], ["b_mm"], name="body_matmul"),
         helper.make_node("Add", ["b_mm", "y"], ["b_add"], name="body_add"),
         helper.make_node("Tanh", ["b_add"], ["h_out"], name="body_tanh")],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_in", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [2, 4])])
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then_g, else_branch=else_g),
        _const("trip", np.array(3, np.int64)), _const("true", np.array(True)),
        helper.make_node("Loop", ["trip", "true", "x"], ["out"], name="loop", body=body),
    ]
    g = helper.make_graph(nodes, "control_flow", [x, c], [out])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _inner_types(model):
    """{tensor: elem type} over every graph of the model (value_info, inputs, outputs, Constants)."""
    types = {}
    graphs = [model.graph] + [a.g for n, _ in walk(model.graph) for a in n.attribute if a.type == onnx.AttributeProto.GRAPH]
    for g in graphs:
        for vi in (*g.input, *g.value_info, *g.output):
            types[vi.name] = vi.type.tensor_type.elem_type
        for n in g.node:
            if n.op_type == "Constant":
                types[n.output[0]] = n.attribute[0].t.data_type
    return types


def _feeds(cond):
    return {"x": RNG.normal(0, 1, (2, 4)).astype(np.float32), "c": np.array(cond)}


def test_fp16_converts_inside_if_and_loop_bodies_checked_against_onnx_reference():
    model = control_flow_model()
    result = convert(model, "fp16")
    low = onnx.shape_inference.infer_shapes(result.model, strict_mode=True)
    onnx.checker.check_model(low, full_check=True)
    types = _inner_types(low)
    for t in ("t_mm", "t_out", "e_mm", "e_out", "b_mm", "b_add", "w1", "w2", "wl"):
        assert types[t] == TensorProto.FLOAT16, t
    assert types["y"] == types["out"] == TensorProto.FLOAT  # the If and the Loop keep their declared types
    assert {"then_matmul", "else_matmul", "body_matmul", "body_tanh"} <= set(result.converted_nodes)
    assert result.conversion["in_bodies"] >= 6 and result.conversion["fraction"] == 1.0
    for cond in (True, False):
        feeds = _feeds(cond)
        want = ReferenceEvaluator(model).run(None, feeds)[0]
        got = ReferenceEvaluator(low).run(None, feeds)[0]  # onnx.reference computes fp16 where the graph says fp16
        plain = ort.InferenceSession(low.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        assert got.dtype == plain.dtype == np.float32
        assert not np.array_equal(got, want)  # fp16 arithmetic happened
        np.testing.assert_allclose(got, want, atol=5e-3)
        np.testing.assert_allclose(plain, want, atol=5e-3)


def test_fp32_pin_on_an_inner_node_keeps_it_fp32_and_lowers_the_converted_fraction():
    model = control_flow_model()
    full = convert(model, "fp16")
    pinned = convert(model, "fp16", node_block_list=["body_matmul"])
    types = _inner_types(onnx.shape_inference.infer_shapes(pinned.model))
    assert types["b_mm"] == TensorProto.FLOAT and types["b_add"] == TensorProto.FLOAT16
    assert "body_matmul" not in pinned.converted_nodes and pinned.conversion["pinned"] == ["body_matmul"]
    assert pinned.conversion["fraction"] == (full.conversion["converted"] - 1) / full.conversion["float_ops"]
    assert any("MatMul x1" in n for n in pinned.notes), pinned.notes
    feeds = _feeds(True)
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    np.testing.assert_allclose(ReferenceEvaluator(pinned.model).run(None, feeds)[0], want, atol=5e-3)


def test_int8_calibrates_and_quantizes_tensors_inside_if_and_loop_bodies():
    from trtlab.precision.calibration import calibrate
    from trtlab.precision.qdq import quantize
    model = control_flow_model()
    batches = [_feeds(True) for _ in range(3)]
    table = calibrate(model, batches, method="minmax")
    # the inner activations MatMul reads: r (outer, read inside both branches) and the Loop body's h_in
    x = np.stack([b["x"] for b in batches])
    assert table["r"] == pytest.approx(float(np.abs(np.maximum(x, 0)).max()), rel=1e-6)
    assert table["h_in"] > 0
    q = quantize(model, table)
    inner = [n for n, depth in walk(q.model.graph) if depth > 0]
    # then: r (MatMul) and t_mm, x (residual Add); else: r (its Mul takes no Q/DQ); loop: h_in (MatMul), b_mm, y (Add)
    assert sorted(n.input[0] for n in inner if n.op_type == "QuantizeLinear") == sorted(
        ["r", "t_mm", "x", "r", "h_in", "b_mm", "y"])
    assert {"then_matmul", "else_matmul", "body_matmul"} <= {n.name for n in inner
                                                             if any(i.endswith("__dq") for i in n.input)}
    assert "w1" in q.weights and "wl" in q.weights
    onnx.checker.check_model(q.model, full_check=True)
    feeds = _feeds(True)
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    got = ort.InferenceSession(q.model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert not np.array_equal(got, want)
    np.testing.assert_allclose(got, want, atol=0.05)
    assert q.conversion["quantizable"] == q.conversion["quantized"] == 3


def test_pinning_a_control_flow_node_keeps_its_bodies_in_fp32_and_free_of_qdq():
    from trtlab.precision.calibration import calibrate
    from trtlab.precision.qdq import quantize
    model = control_flow_model()
    low = convert(model, "fp16", node_block_list=["branch"])
    types = _inner_types(onnx.shape_inference.infer_shapes(low.model))
    assert [types[t] for t in ("t_mm", "t_out", "e_mm", "e_out")] == [TensorProto.FLOAT] * 4
    assert types["b_mm"] == TensorProto.FLOAT16  # the Loop, not pinned, is converted
    table = calibrate(model, [_feeds(True)], method="minmax")
    q = quantize(model, table, skip_nodes=("loop",))
    body = next(n for n in q.model.graph.node if n.op_type == "Loop").attribute[0].g
    assert not any(n.op_type == "QuantizeLinear" for n in body.node)
    assert any(n.op_type == "QuantizeLinear" for n, depth in walk(q.model.graph) if depth > 0)  # the If's are
