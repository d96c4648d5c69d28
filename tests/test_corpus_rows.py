"""Real corpus models through compare / find_fp32_layers: overflow counted per tensor, rows labelled by kind,
unnamed nodes given ids."""
from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import trtlab
from corpus import get

pytestmark = pytest.mark.corpus


def _session(model_id, tmp_path):
    m = get(model_id)
    m.fetch()
    return m, trtlab.Session(str(m.path), workspace=tmp_path / "ws")


def test_magika_fp16_overflow_is_counted_per_tensor_like_plain_ort(tmp_path):
    m, s = _session("magika", tmp_path)
    feeds = m.feeds()
    # the engine plain ONNX Runtime runs (fp16_mode="native"): the counts below are its own
    c = s.compare("fp32", {"precision": "fp16", "fp16_mode": "native"}, outputs="all", data=feeds, shapes=m.shapes())
    f = c.to_frame().set_index("tensor")
    bad = f[f["cand_inf"] + f["cand_nan"] > 0]
    assert len(bad) >= 3 and any("ApplyActivation_1" in t for t in bad.index)
    # the independent count: plain ONNX Runtime on trtlab's fp16 variant with those tensors marked
    variant = s._engine_cache.make_variant(s.make_config("fp16", shapes=m.shapes())).model
    proto = onnx.ModelProto()
    proto.CopyFrom(variant)
    del proto.graph.output[:]
    proto.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in bad.index)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    outs = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(
        list(bad.index), feeds[0])
    for name, arr in zip(bad.index, outs):
        assert f.loc[name, "cand_inf"] == np.count_nonzero(np.isinf(arr)), name
        assert f.loc[name, "cand_nan"] == np.count_nonzero(np.isnan(arr)), name
        assert f.loc[name, "cand_overflow_inf"] == np.count_nonzero(np.isinf(arr)), name
        assert f.loc[name, "ref_inf"] == 0 and f.loc[name, "ref_nan"] == 0
    stats = ["max_abs_err", "mean_abs_err", "max_rel_err", "mean_rel_err", "cosine", "snr_db", "rel_rms_err"]
    values = f[stats].to_numpy(float)
    assert not np.isinf(values).any()  # finite over the finite elements, or null (NaN in the frame)
    assert "overflowed to inf in fp16" in repr(c) and str(int(bad["cand_inf"].sum())) in repr(c)
    s_ = c.summary
    assert s_["worst_tensor"] in bad.index and s_["tensors_overflowed_to_inf_fp16"] == len(bad)
    div = c.first_divergence()
    assert div["rel_rms_err"] is None or math.isfinite(div["rel_rms_err"])
    r = s.find_fp32_layers("fp16", data=feeds, dims={"unk__214": 4}, tolerance=1e-5, max_steps=4)
    assert r.ranking and all(r.ranking)


def test_ppocr_det_headlines_are_activations_and_rows_carry_kind(tmp_path):
    m, s = _session("ppocr_det", tmp_path)
    c = s.compare("fp32", "fp16", outputs="all", data=m.feeds(), shapes=m.shapes())
    f = c.to_frame().set_index("tensor")
    assert f.loc["batch_norm_0.w_2", "kind"] == "weight"  # the BatchNormalization variance, a Constant
    div = c.first_divergence()  # None since fp16 keeps p2o.BatchNormalization.1 in fp32 and follows fp32 closely
    assert div is None or f.loc[div["tensor"], "kind"] == "activation"
    assert f.loc[c.summary["worst_tensor"], "kind"] == "activation"
    producers = {o: n.op_type for n in onnx.load(str(m.path)).graph.node for o in n.output}
    consts = [t for t in f.index if producers.get(t) == "Constant"]
    assert consts and (f.loc[consts, "kind"] != "activation").all()


def test_ppocr_rec_integer_rows_stay_out_of_range_statistics(tmp_path):
    m, s = _session("ppocr_rec", tmp_path)
    c = s.compare("fp32", "fp16", outputs="all", data=m.feeds(), shapes=m.shapes())
    f = c.to_frame()
    ints = f[f["ref_dtype"].str.startswith(("int", "uint", "bool"))]
    assert len(ints) and (ints["kind"] == "integer").all()
    assert (ints[["overflow", "underflow", "subnormal"]] == 0).all().all()
    div = c.first_divergence()
    assert div is None or div["tensor"] in set(f[f["kind"] == "activation"]["tensor"])


def test_unnamed_nodes_get_stable_ids_usable_as_pins(tmp_path):
    m, s = _session("ppocr_det", tmp_path)
    raw = onnx.load(str(m.path))
    unnamed = [i for i, n in enumerate(raw.graph.node) if not n.name]
    assert unnamed  # the PP-OCR export leaves most nodes unnamed
    names = s.model.node_names
    assert all(names) and len(set(names)) == len(names)
    i = unnamed[0]
    node = raw.graph.node[i]
    assert names[i].startswith(node.op_type + "_")
    assert trtlab.Session(str(m.path), workspace=tmp_path / "b").model.node_names == names  # stable
    e = s.build("fp16", shapes=m.shapes(), fp32_layers=[names[i]])
    assert names[i] in e.variant.fp32_layers


def _dims(s, m):
    """dims={placeholder: size} for the corpus feeds (fp16_range_report takes dims)."""
    shapes = m.shapes()
    return {d: v for i in s.model.inputs for d, v in zip(i.shape, shapes[i.name]) if isinstance(d, str)}


def test_ppocr_det_range_report_keeps_the_overflowing_weight_out_of_the_activation_headline(tmp_path):
    m, s = _session("ppocr_det", tmp_path)
    rep = s.fp16_range_report(data=m.feeds(), dims=_dims(s, m))
    f = rep.to_frame().set_index("tensor")
    # the independent count: the BatchNormalization variance as stored in its Constant node
    const = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in onnx.load(str(m.path)).graph.node
             if n.op_type == "Constant"}
    var = const["batch_norm_0.w_2"]
    assert f.loc["batch_norm_0.w_2", "kind"] == "weight"
    assert f.loc["batch_norm_0.w_2", "fp16_overflow"] == np.count_nonzero(np.abs(var) > 65504) > 0
    assert (f.loc[[t for t in const if t in f.index], "kind"] != "activation").all()
    sm = rep.summary
    acts = f[f["kind"] == "activation"]
    assert sm["tensors_with_fp16_overflow"] == int((acts["fp16_overflow"] > 0).sum()) == 0
    assert sm["weights_with_fp16_overflow"] == 1 and "weights: 1 overflow fp16" in repr(rep)


def test_magika_range_report_labels_integer_tensors_and_counts_no_range_for_them(tmp_path):
    m, s = _session("magika", tmp_path)
    rep = s.fp16_range_report(data=m.feeds(), dims=_dims(s, m))
    f = rep.to_frame()
    # the independent labels: plain ONNX Runtime's output dtypes of the same tensors
    proto = onnx.load(str(m.path))
    names = list(f["tensor"])
    del proto.graph.output[:]
    proto.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in names)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    outs = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(
        names, m.feeds()[0])
    ints = [t for t, a in zip(names, outs) if a.dtype.kind in "iub"]
    assert len(ints) >= 10 and sorted(f[f["kind"] == "integer"]["tensor"]) == sorted(ints)
    counts = [c for c in f.columns if c.startswith(("fp16_", "bf16_"))]
    assert (f[f["kind"] == "integer"][counts] == 0).all().all() and rep.summary["integers"] == len(ints)
