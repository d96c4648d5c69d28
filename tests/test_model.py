"""Model loading, validation errors and the graph view."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtlab.errors import DynamicShapeError, ModelError, ModelTooLargeError, UnsupportedOpsetError
from trtlab.model import Model, onnxruntime_max_opset

from conftest import conv_model


def test_load_from_path_bytes_and_proto_agree(tmp_path, tiny_model):
    path = tmp_path / "m.onnx"
    onnx.save(tiny_model, str(path))
    a, b, c = Model.load(path), Model.load(path.read_bytes()), Model.load(tiny_model)
    assert a.hash == b.hash == c.hash
    assert a.name == "m" and a.path == path
    assert [i.name for i in a.inputs] == ["input"]
    assert a.inputs[0].shape == ("batch", 3, 16, 16) and a.inputs[0].dtype == "float32"


def test_hash_changes_with_weights(tiny_model):
    assert Model.load(tiny_model).hash != Model.load(conv_model(seed=1)).hash


def test_external_data_model_loads(tmp_path, tiny_model):
    path = tmp_path / "ext.onnx"
    ref = {i.name: numpy_helper.to_array(i) for i in tiny_model.graph.initializer}
    expected_hash = Model.load(tiny_model).hash
    onnx.save_model(tiny_model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.data", size_threshold=0)
    assert (tmp_path / "ext.data").exists()
    m = Model.load(path)
    w = {i.name: numpy_helper.to_array(i) for i in m.proto.graph.initializer}
    for k in ref:
        np.testing.assert_array_equal(w[k], ref[k])
    assert m.hash == expected_hash


def test_external_data_missing_file(tmp_path, tiny_model):
    path = tmp_path / "ext.onnx"
    onnx.save_model(tiny_model, str(path), save_as_external_data=True, location="ext.data", size_threshold=0)
    (tmp_path / "ext.data").unlink()
    with pytest.raises(ModelError, match="external weight data.*missing"):
        Model.load(path)


def test_missing_file():
    with pytest.raises(ModelError, match="nothere.onnx not found"):
        Model.load("nothere.onnx")


def test_empty_and_non_onnx_and_truncated(tmp_path, tiny_model):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        Model.load(empty)
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 20)
    with pytest.raises(ModelError, match="notes.onnx.*(not a readable ONNX|does not contain an ONNX graph)"):
        Model.load(text)
    data = tiny_model.SerializeToString()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="cut.onnx.*truncated"):
        Model.load(cut)


def test_invalid_graph_names_checker_message(tiny_model):
    bad = onnx.ModelProto()
    bad.CopyFrom(tiny_model)
    bad.graph.node[1].input[0] = "no_such_tensor"
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        Model.load(bad, name="broken")


def test_opset_newer_than_onnxruntime(tiny_model):
    limit = onnxruntime_max_opset()
    assert limit is not None and limit >= 17
    m = onnx.ModelProto()
    m.CopyFrom(tiny_model)
    m.opset_import[0].version = limit + 1
    with pytest.raises(UnsupportedOpsetError, match=f"opset {limit + 1}.*opsets up to {limit}: upgrade"):
        Model.load(m, name="future")


def test_over_two_gb_without_external_data(tmp_path, monkeypatch):
    # a real >2 GB file is too big for CI; patch the size check's input instead of writing one
    path = tmp_path / "huge.onnx"
    path.write_bytes(b"\x08\x07" + b"\x00" * 64)
    import trtlab.model as tm
    monkeypatch.setattr(tm, "_TWO_GB", 16)
    with pytest.raises(ModelTooLargeError, match="huge.onnx.*2 GB limit.*save_as_external_data"):
        Model.load(path)


def test_unknown_dims_need_to_be_given(tiny_model):
    m = Model.load(tiny_model)
    with pytest.raises(DynamicShapeError, match="'input'.*'batch' at axis 0.*batch=N"):
        m.resolve_input_shapes()
    assert m.resolve_input_shapes(batch=4) == {"input": (4, 3, 16, 16)}
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq"])])
    mm = Model.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    with pytest.raises(DynamicShapeError, match="'seq' at axis 1.*dims=\\{'seq': N\\}"):
        mm.resolve_input_shapes(batch=2)
    assert mm.resolve_input_shapes(batch=2, dims={"seq": 7}) == {"x": (2, 7)}


def test_graph_view(tiny_model):
    m = Model.load(tiny_model)
    g = m.graph()
    assert list(g["name"]) == ["conv0", "relu0", "conv1", "add1", "relu1", "pool", "flatten", "fc"]
    row = g.set_index("name").loc["conv1"]
    assert row["op_type"] == "Conv" and row["output_shapes"] == [["batch", 8, 16, 16]]
    assert row["output_dtypes"] == ["float32"]
    t = m.tensors().set_index("name")
    assert t.loc["r0", "kind"] == "activation" and sorted(t.loc["r0", "consumers"]) == ["add1", "conv1"]
    assert t.loc["w0", "kind"] == "initializer" and t.loc["logits", "kind"] == "output"
    expected = sum(int(np.prod(i.dims)) for i in tiny_model.graph.initializer)
    assert m.parameter_count == expected and m.parameter_bytes == expected * 4
    assert m.activation_names()[:3] == ["c0", "r0", "c1"]


def test_random_integer_inputs_follow_the_models_declared_range():
    import trtlab
    m = Model.load(trtlab.zoo.bert(size="small", attention_mask=True))
    feeds = m.random_inputs({"input_ids": (4, 64), "attention_mask": (4, 64)}, seed=0)
    assert set(np.unique(feeds["attention_mask"])) <= {0, 1}
    assert feeds["input_ids"].max() >= 100  # the vocabulary range, not the [0, 100) default
    assert m.input_range("input_ids")[1] == 8192


def test_loading_a_proto_with_unnamed_nodes_leaves_the_callers_proto_unchanged():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"]), helper.make_node("Neg", ["t"], ["y"])],
                          "g", [x], [y])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    before = proto.SerializeToString()
    m = Model.load(proto)
    assert proto.SerializeToString() == before  # the caller's nodes keep their empty names
    assert [n.name for n in m.proto.graph.node] == ["Relu_0", "Neg_0"]
    assert Model.load(proto).hash == m.hash  # and loading it again gives the same identity
