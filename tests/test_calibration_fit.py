"""Calibration caches in a strongly typed world (TensorRT FAQ 3, 12, 14): whether a cache covers what the Q/DQ
inserter quantizes, FAQ 12's "Could not find scales for tensor" reproduced with a real TensorRT cache and with a
re-exported zoo model, the provenance sidecar that tells when the model changed, the diff of two caches, and the
header version taken from the library actually installed."""
from __future__ import annotations

import struct
import warnings
from importlib import metadata

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import trtlab
from trtlab.errors import CalibrationCacheError
from trtlab.precision.calibration import CalibrationTable, calibrate, diff_tables, header_version, read_sidecar
from trtlab.precision.calibration import cache as cache_module
from trtlab.precision.calibration.coverage import sidecar_path
from trtlab.precision.qdq import quantize

# A cache TensorRT 7.2's writeCalibrationCache wrote for an MNIST LeNet, as published in a public NVDLA tutorial
# README (mnist_calibration.cache). TensorRT names the tensors of its own network: the fully connected layer's
# output appears as "(Unnamed Layer* 4) [Fully Connected]_output", and Flatten is gone. The format is the one ONNX
# Runtime's TensorRT execution provider reads (ReadDynamicRange: header "TRT-<version>-<algorithm>", then one
# "name: <8 hex digits, big-endian IEEE float32 scale>" per line).
TRT72_MNIST_CACHE = """TRT-7202-EntropyCalibration2
data: 3c008912
conv1: 3c60dd38
pool1: 3c60dd38
conv2: 3d895e44
pool2: 3d895e44
(Unnamed Layer* 4) [Fully Connected]_output: 3d65992f
ip1: 3d65ff18
ip2: 3e11094c
prob: 3c083ffd
"""


def hex_scale(text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(text))[0]


def lenet() -> onnx.ModelProto:
    """The same LeNet as an ONNX export names it: data -> conv1 -> pool1 -> conv2 -> pool2 -> flat -> ip1 ->
    relu1 -> ip2 -> prob (ONNX keeps the Flatten and names the ReLU's output)."""
    rng = np.random.default_rng(0)
    w = lambda *s: numpy_helper.from_array((rng.standard_normal(s) * 0.1).astype(np.float32))  # noqa: E731
    inits = [w(20, 1, 5, 5), w(50, 20, 5, 5), w(500, 800), w(10, 500)]
    for t, n in zip(inits, ["conv1_w", "conv2_w", "ip1_w", "ip2_w"]):
        t.name = n
    nodes = [helper.make_node("Conv", ["data", "conv1_w"], ["conv1"], name="conv1"),
             helper.make_node("MaxPool", ["conv1"], ["pool1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["pool1", "conv2_w"], ["conv2"], name="conv2"),
             helper.make_node("MaxPool", ["conv2"], ["pool2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["pool2"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "ip1_w"], ["ip1"], name="ip1", transB=1),
             helper.make_node("Relu", ["ip1"], ["relu1"], name="relu1"),
             helper.make_node("Gemm", ["relu1", "ip2_w"], ["ip2"], name="ip2", transB=1),
             helper.make_node("Softmax", ["ip2"], ["prob"], name="prob")]
    g = helper.make_graph(nodes, "lenet", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 1, 28, 28])],
                          [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def qdq_inputs(model: onnx.ModelProto) -> set[str]:
    return {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}


# ---- a real TensorRT cache on the ONNX export of its network (FAQ 12) ------------------------------------------
def test_a_real_tensorrt_cache_reads_exactly(tmp_path):
    p = tmp_path / "mnist_calibration.cache"
    p.write_text(TRT72_MNIST_CACHE)
    t = CalibrationTable.load(p)
    assert (t.version, t.algorithm, len(t)) == ("7202", "EntropyCalibration2", 9)
    assert t.scale("data") == hex_scale("3c008912") and t.scale("ip2") == hex_scale("3e11094c")
    assert t.provenance is None and "mnist_calibration.cache" in t.version_source
    t.save(tmp_path / "again.cache")  # no model known: TensorRT's format byte for byte, no sidecar
    assert (tmp_path / "again.cache").read_text() == TRT72_MNIST_CACHE
    assert not sidecar_path(tmp_path / "again.cache").exists()


def test_could_not_find_scales_reproduced_with_a_tensorrt_cache(tmp_path):
    p = tmp_path / "mnist_calibration.cache"
    p.write_text(TRT72_MNIST_CACHE)
    table = CalibrationTable.load(p)
    check = table.validate(lenet())
    # what the Q/DQ inserter quantizes, by hand: the activation input of each Conv and Gemm
    assert check.needed == ["data", "pool1", "flat", "relu1"]
    assert check.missing == ["flat", "relu1"] and not check.ok
    assert check.extra == ["(Unnamed Layer* 4) [Fully Connected]_output"]
    assert check.uses["flat"] == ["ip1 (Gemm) input 0"] and check.uses["relu1"] == ["ip2 (Gemm) input 0"]
    text = check.explain()
    assert 'TensorRT would report "Could not find scales for tensor flat"' in text
    assert "TensorRT's own implicit-INT8 calibration" in text and "fp32_layers=" in text
    f = check.to_frame()
    assert f.set_index("tensor").loc[["flat", "relu1"], "status"].tolist() == ["missing", "missing"]
    assert f.set_index("tensor").loc["(Unnamed Layer* 4) [Fully Connected]_output", "status"] == "extra"
    # a build with it is refused, naming the tensors and what to do
    s = trtlab.Session(lenet(), workspace=tmp_path / "ws")
    with pytest.raises(CalibrationCacheError, match=r"(?s)does not fit this model.*'flat' \(ip1 \(Gemm\) input "
                                                     r"0\).*Could not find scales for tensor flat"):
        s.build("int8", calibration=str(p))
    # pinning the uncovered consumers to fp32 is the documented way out: then the cache covers what is left
    e = s.build("int8", calibration=str(p), fp32_layers=["ip1", "ip2"])
    assert qdq_inputs(e.variant.model) == {"data", "pool1"}


def _renamed(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model as another exporter names it: every intermediate tensor '/<node>/<Op>_output_0'."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = {i.name for i in m.graph.input} | {o.name for o in m.graph.output} | {i.name for i in m.graph.initializer}
    new = {}
    for n in m.graph.node:
        for k, o in enumerate(n.output):
            if o not in keep:
                new[o] = f"/{n.name}/{n.op_type}_output_{k}"
    for n in m.graph.node:
        n.input[:] = [new.get(i, i) for i in n.input]
        n.output[:] = [new.get(o, o) for o in n.output]
    del m.graph.value_info[:]
    return m


def test_a_zoo_cache_on_a_re_export_with_other_names(tmp_path):
    model = trtlab.zoo.get("resnet18")
    table = calibrate(model, 1, method="minmax")
    cache = table.save(tmp_path / "resnet18.cache", model=model)
    lines = cache.read_text().splitlines()  # TensorRT's format only: the header, then name: 8 hex digits
    assert lines[0] == table.header and all(len(v) == 8 and int(v, 16) >= 0
                                            for v in (ln.rsplit(": ", 1)[1] for ln in lines[1:]))
    assert len(lines) == len(table) + 1
    side = read_sidecar(cache)
    assert side["model_hash"] == trtlab.model.Model(model).hash and side["tensors"] == len(table)
    loaded = CalibrationTable.load(cache)
    assert loaded.validate(model).ok and not loaded.validate(model).stale
    other = _renamed(model)
    check = loaded.validate(other)
    expected = qdq_inputs(quantize(other, calibrate(other, 1, method="minmax")).model)
    inputs = {i.name for i in other.graph.input}  # graph inputs keep their names
    assert set(check.missing) == expected - inputs and len(check.missing) == len(table) - len(expected & inputs)
    assert check.stale and "quantized tensors" in check.changed
    first = check.missing[0]
    # look-alike old names are pointed out: the ReLU outputs were 'layer1.0.relu1' (the node's name) before
    assert check.close["/layer1.0.relu1/Relu_output_0"] == "layer1.0.relu1"
    assert all(old in table for old in check.close.values()) and "look-alikes" in check.explain()
    with pytest.raises(CalibrationCacheError, match=f"Could not find scales for tensor {first}"):
        trtlab.Session(other, workspace=tmp_path / "ws").build("int8", calibration=str(cache), batch=1)


# ---- the model changed since the cache was written ------------------------------------------------------------
def test_changed_weights_warn_and_a_changed_graph_is_refused(tmp_path):
    from conftest import conv_model
    model = conv_model()
    table = calibrate(model, 1, method="minmax")
    cache = table.save(tmp_path / "conv.cache", model=model)
    edited = conv_model()
    w = next(i for i in edited.graph.initializer if i.name == "w1")
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 2, "w1"))  # same tensors, other weights
    check = CalibrationTable.load(cache).validate(edited)
    assert check.ok and check.stale and "same quantized tensors but hash" in check.changed
    assert "The model changed since the cache was written" in check.explain()
    s = trtlab.Session(edited, workspace=tmp_path / "ws")
    with pytest.warns(RuntimeWarning, match="written for another version of the model"):
        e = s.build("int8", calibration=str(cache), batch=1)
    assert any("calibrate again" in n for n in e.variant.notes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the model it was written for: no warning
        trtlab.Session(model, workspace=tmp_path / "ws2").build("int8", calibration=str(cache), batch=1)
    side = sidecar_path(cache)
    side.write_text("{not json")
    with pytest.raises(CalibrationCacheError, match=r"conv\.cache\.trtlab\.json: the cache's trtlab provenance"):
        CalibrationTable.load(cache)


def test_session_calibrate_stores_the_provenance_beside_the_cache(tmp_path):
    from conftest import conv_model
    s = trtlab.Session(conv_model(), workspace=tmp_path)
    table = s.calibrate(1, method="minmax")
    rec = s.workspace.results("calibration")[-1]
    loaded = CalibrationTable.load(rec["cache"])
    assert loaded.provenance == table.provenance and loaded.provenance["model_hash"] == s.model.hash
    assert loaded.validate(s.model).ok and not loaded.validate(s.model).stale


# ---- the diff of two caches ----------------------------------------------------------------------------------
def test_diff_of_a_tensorrt_cache_and_a_trtlab_one(tmp_path):
    trt = CalibrationTable.from_text(TRT72_MNIST_CACHE)
    mine = calibrate(lenet(), 1, method="minmax", version="100300")
    d = diff_tables(trt, mine)
    assert (d.header_a, d.header_b) == ("TRT-7202-EntropyCalibration2", "TRT-100300-MinMaxCalibration")
    assert d.only_a == ["conv1", "conv2", "pool2", "(Unnamed Layer* 4) [Fully Connected]_output", "ip1", "ip2",
                        "prob"]
    assert d.only_b == ["flat", "relu1"]
    assert sorted(d.scales["tensor"]) == ["data", "pool1"]
    row = d.scales.set_index("tensor").loc["data"]
    mine_hex = next(ln.split(": ")[1] for ln in mine.to_text().splitlines() if ln.startswith("data: "))
    assert row["scale_a"] == hex_scale("3c008912") and row["scale_b"] == hex_scale(mine_hex)
    assert row["ratio"] == pytest.approx(hex_scale(mine_hex) / hex_scale("3c008912"))
    text = d.explain()
    assert "different TensorRT versions (7202 vs 100300)" in text and "different calibration algorithms" in text
    same = diff_tables(mine, mine)
    assert same.same_tensors and (same.scales["ratio"] == 1.0).all() and len(same.changed()) == 0
    assert abs(d.scales["log2_ratio"]).is_monotonic_decreasing


# ---- the header version comes from the library actually used ---------------------------------------------------
def test_header_version_comes_from_the_installed_library(monkeypatch):
    installed = {}
    for dist in metadata.distributions():
        installed[dist.metadata["Name"].lower().replace("_", "-")] = dist.version

    def fake(versions):
        def version(name):
            key = name.lower().replace("_", "-")
            if key in versions:
                return versions[key]
            raise metadata.PackageNotFoundError(name)
        return version

    rtx = {k: v for k, v in installed.items() if k.startswith("tensorrt-rtx-cu") and k.endswith("-bindings")}
    if rtx and not any(k == "tensorrt" or k.startswith("tensorrt-cu") for k in installed):
        # this machine: TensorRT-RTX only (1.x): headers name its version, not TensorRT 10.3's
        v = next(iter(rtx.values()))
        major, minor, patch = (int(x) for x in v.split(".")[:3])
        assert header_version() == (str(major * 1000 + minor * 100 + patch), f"tensorrt_rtx {v}")
        assert CalibrationTable({"a": 1.0}).header == f"TRT-{major * 1000 + minor * 100 + patch}-EntropyCalibration2"
    monkeypatch.setattr(cache_module.metadata, "version", fake({"tensorrt-rtx-cu13-bindings": "1.2.0.54"}))
    assert header_version() == ("1200", "tensorrt_rtx 1.2.0.54")
    monkeypatch.setattr(cache_module.metadata, "version",
                        fake({"tensorrt": "10.9.0.34", "tensorrt-rtx-cu13-bindings": "1.2.0.54"}))
    assert header_version() == ("100900", "tensorrt 10.9.0.34")  # full TensorRT first
    monkeypatch.setattr(cache_module.metadata, "version", fake({}))
    digits, source = header_version()
    assert digits == "100300" and "trtlab's default" in source
    t = CalibrationTable({"a": 1.0})
    assert t.header == "TRT-100300-EntropyCalibration2" and "no TensorRT installed" in t.version_source


# ---- real models of the corpus -------------------------------------------------------------------------------
@pytest.mark.corpus
def test_a_corpus_cache_fits_its_model_and_is_refused_on_another(tmp_path):
    from corpus import CorpusError, get
    cls, rec = get("ppocr_cls"), get("ppocr_rec")
    try:
        cls.fetch()
        rec.fetch()
    except CorpusError as e:
        pytest.fail(f"the real-model corpus could not be fetched: {e}")
    s = trtlab.Session(str(cls.path), workspace=tmp_path / "cls")
    s.calibrate(cls.feeds(), method="minmax")
    cache = s.workspace.results("calibration")[-1]["cache"]
    table = CalibrationTable.load(cache)
    assert table.provenance["model_hash"] == s.model.hash
    assert table.validate(s.model).ok and not table.validate(s.model).stale
    other = trtlab.model.Model.load(str(rec.path))
    check = table.validate(other)
    assert check.missing and check.extra and check.stale
    assert set(check.missing) == set(check.needed) - set(table)  # the plain set difference, by hand
    with pytest.raises(CalibrationCacheError, match="Could not find scales for tensor"):
        trtlab.Session(str(rec.path), workspace=tmp_path / "rec").build("int8", calibration=cache,
                                                                         shapes=rec.shapes())
