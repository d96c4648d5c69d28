"""Weights held where trained exporters put them: in `Constant` nodes (PP-OCR, silero-vad) and in the ONNX-zoo
layout (IR 3, every initializer also listed as a graph input). Checked on real corpus models against numpy and
plain ONNX Runtime."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import trtlab
from corpus import MODELS
from trtlab.errors import ModelError
from trtlab.precision import lowp

pytestmark = pytest.mark.corpus
ZOO = [m.id for m in MODELS if m.id.startswith("zoo_")]


def plain_ort(path_or_bytes):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path_or_bytes, so, providers=["CPUExecutionProvider"])


def test_parameters_in_constant_nodes_are_counted(fetched, tmp_path):
    m = fetched("ppocr_cls")
    proto = onnx.load(str(m.path))
    # by hand: every float tensor held in a Constant node (PP-OCR has no initializers at all)
    by_hand = [numpy_helper.to_array(a.t) for n in proto.graph.node if n.op_type == "Constant"
               for a in n.attribute if a.name == "value" and a.t.data_type == onnx.TensorProto.FLOAT]
    assert len(proto.graph.initializer) == 0 and by_hand
    s = trtlab.Session(str(m.path), workspace=tmp_path)
    assert s.model.parameter_count == sum(v.size for v in by_hand)
    assert s.model.parameter_bytes == sum(v.nbytes for v in by_hand)
    assert s.model.parameters_by_source == {"initializers": 0, "constants": sum(v.size for v in by_hand)}
    info = s.info()
    assert info["model"]["parameters"] == sum(v.size for v in by_hand)
    assert f"{sum(v.size for v in by_hand):,} in Constant nodes" in str(info)


def test_parameters_inside_if_bodies_are_counted(fetched):
    m = fetched("silero_vad")
    proto = onnx.load(str(m.path))
    total = 0
    stack = [proto.graph]
    while stack:  # numpy over every Constant in the graph and in each If branch
        g = stack.pop()
        for n in g.node:
            for a in n.attribute:
                if n.op_type == "Constant" and a.name == "value" and a.t.data_type == onnx.TensorProto.FLOAT:
                    total += numpy_helper.to_array(a.t).size
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append(a.g)
    assert total > 500_000
    assert trtlab.model.Model.load(str(m.path)).parameter_count == total


def test_int8_quantizes_weights_held_in_constant_nodes(fetched, tmp_path):
    m = fetched("ppocr_cls")
    s = trtlab.Session(str(m.path), workspace=tmp_path)
    feeds = m.feeds()
    table = s.calibrate(feeds * 2, method="minmax")
    e = s.build("int8", calibration=table, shapes=m.shapes())
    g = e.variant.model.graph
    producer = {o: n for n in g.node for o in n.output}
    convs = [n for n in g.node if n.op_type == "Conv"]
    assert convs
    for conv in convs:  # the weight path of every Conv is DequantizeLinear of an int8 tensor, per output channel
        dq = producer.get(conv.input[1])
        assert dq is not None and dq.op_type == "DequantizeLinear", conv.name
        q = next(i for i in g.initializer if i.name == dq.input[0])
        assert q.data_type == onnx.TensorProto.INT8
        assert next(a.i for a in dq.attribute if a.name == "axis") == 0
    ref = plain_ort(str(m.path))
    for f in feeds:
        expected = ref.run(None, f)[0]
        got = e.run(f)[ref.get_outputs()[0].name]
        # measured: max abs difference 0.059 of the two softmax probabilities on the sticker feeds
        np.testing.assert_allclose(got, expected, atol=0.1)


@pytest.mark.parametrize("model_id", ZOO)
def test_fp16_converts_the_onnx_zoo_layout(fetched, model_id, tmp_path):
    m = fetched(model_id)
    proto = onnx.load(str(m.path))
    assert proto.ir_version == 3 and {i.name for i in proto.graph.initializer} <= {i.name for i in proto.graph.input}
    s = trtlab.Session(str(m.path), workspace=tmp_path)
    assert [i.name for i in s.model.inputs] == [i.name for i in proto.graph.input
                                                  if i.name not in {t.name for t in proto.graph.initializer}]
    e = s.build("fp16")
    low = e.variant.model
    onnx.checker.check_model(low)
    assert any(n.op_type == "Conv" for n in low.graph.node)
    assert any(vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 for vi in low.graph.value_info)
    feed = m.feeds()[0]
    ref = plain_ort(str(m.path))
    name = ref.get_outputs()[0].name
    expected = ref.run([name], feed)[0]
    got = e.run(feed)[name]
    finite = np.isfinite(expected) & np.isfinite(got)
    assert finite.mean() > 0.5
    scale = np.abs(expected[finite]).max()
    # measured: at most 4.6e-4 of the largest output (densenet121); the light graphs' constant weights make most
    # of them output a uniform 0.001, which fp16 keeps exactly
    assert np.abs(got[finite] - expected[finite]).max() <= 0.01 * scale


def test_an_invalid_fp16_result_names_the_node_and_op(monkeypatch):
    # DequantizeLinear-13 always yields float32; a schema check that wrongly let it convert must be caught and the
    # message must name the node and its op, not only ONNX's bare "elem type differs"
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])
    inits = [numpy_helper.from_array(np.array([3, -5], np.int8), "wq"),
             numpy_helper.from_array(np.array(0.5, np.float32), "ws")]
    g = helper.make_graph([helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"], name="weight_dq"),
                           helper.make_node("Add", ["x", "w"], ["y"], name="add")], "g", [x], [y], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    monkeypatch.setattr(lowp, "_schema_allows", lambda node, opset, type_str: True)
    with pytest.raises(ModelError) as err:
        lowp.convert(model, "fp16")
    assert "'weight_dq' (DequantizeLinear)" in str(err.value)
    assert "fp32_layers=['weight_dq']" in str(err.value)


def test_smart_turn_weights_with_value_info_convert_to_fp16(fetched, tmp_path):
    # the Whisper encoder lists a weight in value_info as float32: the same inconsistency as the zoo layout
    m = fetched("smart_turn")
    e = trtlab.Session(str(m.path), workspace=tmp_path).build("fp16", shapes=m.shapes())
    ref = plain_ort(str(m.path))
    name = ref.get_outputs()[0].name
    feed = m.feeds()[0]
    # measured: 0.911 (fp32) vs 0.897 (fp16), difference 0.014 on the stored speech clip
    np.testing.assert_allclose(e.run(feed)[name], ref.run([name], feed)[0], atol=0.05)


@pytest.mark.parametrize("model_id", ["zoo_squeezenet", "zoo_inception_v1"])
def test_int8_of_the_zoo_layout_is_a_valid_ir3_model_quantizing_every_conv_input(fetched, model_id):
    from trtlab.precision.qdq import quantize
    m = fetched(model_id)
    proto = onnx.load(str(m.path))
    assert proto.ir_version == 3
    s = trtlab.Session(str(m.path))
    table = s.calibrate(m.feeds(), method="minmax")
    q = quantize(s.model.proto, table).model
    onnx.checker.check_model(q)  # IR 3: every initializer, the new scales included, listed as a graph input
    inits = {i.name for i in q.graph.initializer}
    assert inits <= {v.name for v in q.graph.input}
    convs = [n for n in q.graph.node if n.op_type == "Conv"]
    # every Conv reads a dequantized activation (the light_* weights are ConstantOfShape outputs, not initializers)
    assert convs and all(n.input[0].endswith("__dq") for n in convs)
    feeds = m.feeds()[0]
    out = plain_ort(q.SerializeToString()).run(None, feeds)[0]
    ref = plain_ort(str(m.path)).run(None, feeds)[0]
    assert out.shape == ref.shape and np.isfinite(out).all()
