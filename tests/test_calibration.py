"""Calibration: calibrators against numpy, the TensorRT cache format, validate(), and calibrate() on ORT."""
from __future__ import annotations

import math
import struct
import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from trtlab.errors import (
    CalibrationCacheError,
    CalibrationError,
    CancelledError,
    ConfigError,
    InputError,
)
from trtlab.precision.calibration import (
    CalibrationTable,
    calibrate,
    quantizable_tensors,
    synthetic_batches,
    tensorrt_version_digits,
)
from trtlab.precision.calibration.calibrators import EntropyCalibrator, MinMaxCalibrator, PercentileCalibrator
from trtlab.precision.calibration.thresholds import SMOOTHING_EPS, entropy_threshold_bins

# --- models built in the test ----------------------------------------------------------


def conv_model() -> onnx.ModelProto:
    """x[N,3,8,8] -> Conv -> Relu -> Add(conv, relu) -> Flatten -> Gemm -> y[N,10]."""
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B"),
        numpy_helper.from_array(rng.standard_normal((256, 10)).astype(np.float32) * 0.1, "W2"),
        numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "B2"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["conv_out"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv_out"], ["relu_out"]),
        helper.make_node("Add", ["conv_out", "relu_out"], ["res"]),
        helper.make_node("Flatten", ["res"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W2", "B2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_relu_gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def embedding_model() -> onnx.ModelProto:
    """ids[N,seq] int64 -> Gather(table[100,8]) -> MatMul(W[8,4]) -> out."""
    rng = np.random.default_rng(2)
    inits = [
        numpy_helper.from_array(rng.standard_normal((100, 8)).astype(np.float32), "table"),
        numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "Wm"),
    ]
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"], axis=0),
        helper.make_node("MatMul", ["emb", "Wm"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "seq"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", "seq", 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


CONV_TENSORS = ["x", "conv_out", "relu_out", "flat"]


def conv_batches(sizes=(1, 2, 3), seed=5):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((n, 3, 8, 8)).astype(np.float32)} for n in sizes]


# --- calibrators --------------------------------------------------------------------------


def test_minmax_equals_numpy_max_abs_over_all_batches():
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal(1000).astype(np.float32) * s for s in (1.0, 3.0, 0.5)]
    batches[2][7] = -11.5  # the largest magnitude is negative, in the last batch
    cal = MinMaxCalibrator()
    for b in batches:
        cal.collect("t", b)
    expected = float(np.max(np.abs(np.concatenate(batches))))
    assert cal.compute_amax() == {"t": expected}
    assert expected == 11.5


@pytest.mark.parametrize("percentile", [99.99, 99.0, 50.0])
def test_percentile_matches_numpy_within_one_bin(percentile):
    rng = np.random.default_rng(3)
    # growing ranges force the histogram to widen (re-bin) twice
    batches = [rng.standard_normal(200_000).astype(np.float32) * s for s in (0.5, 1.0, 4.0)]
    cal = PercentileCalibrator(percentile)
    for b in batches:
        cal.collect("t", b)
    counts, edges = cal.histogram("t")
    assert counts.size == 2048 and counts.sum() == 600_000
    expected = np.percentile(np.abs(np.concatenate(batches)), percentile)
    width = edges[1] - edges[0]
    # Tolerance: one histogram bin (range / 2048); the estimate interpolates inside the bin
    # where the cumulative count crosses the percentile.
    assert abs(cal.compute_amax()["t"] - expected) <= width
    assert width < 2 * float(np.max(np.abs(np.concatenate(batches)))) / 2048


def test_histogram_widening_keeps_counts_in_their_value_ranges():
    # Values on a dyadic grid, so bin boundaries are exact in floating point.
    first = np.arange(1, 1025, dtype=np.float32) / 1024  # range becomes 1.0
    second = np.array([0.1, 2.5, 3.0], dtype=np.float32)  # range grows by k=3 to 3.0
    cal = PercentileCalibrator()
    cal.collect("t", first)
    cal.collect("t", second)
    counts, edges = cal.histogram("t")
    assert edges[-1] == 3.0
    expected, _ = np.histogram(np.abs(np.concatenate([first, second])), bins=2048, range=(0.0, 3.0))
    np.testing.assert_array_equal(counts, expected)


def _reference_entropy_search(counts, levels=128, start=128, eps=SMOOTHING_EPS):
    """Straightforward TensorRT/GTC-2017 KL search, written independently for the test.

    For every candidate i: P = first i bins with the rest folded into bin i-1; Q = the first
    i bins merged into `levels` contiguous groups (group j = bins ceil(j*i/levels) ..
    ceil((j+1)*i/levels)-1), each group's count spread over its bins where P > 0; both
    smoothed by moving eps onto empty bins; KL(P||Q); first minimum wins.
    """
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.size
    best_i, best_kl = None, math.inf
    for i in range(start, n + 1):
        p = counts[:i].copy()
        p[i - 1] += counts[i:].sum()
        q = np.zeros(i)
        for j in range(levels):
            lo, hi = -(-j * i // levels), -(-(j + 1) * i // levels)
            used = p[lo:hi] > 0
            if used.any():
                q[lo:hi][used] = counts[lo:hi].sum() / used.sum()

        def smooth(d):
            zeros = d == 0
            return d + eps * zeros - (eps * zeros.sum() / (~zeros).sum()) * ~zeros

        ps, qs = smooth(p), smooth(q)
        ps, qs = ps / ps.sum(), qs / qs.sum()
        kl = float(np.sum(ps * np.log(ps / qs)))
        if kl < best_kl:
            best_i, best_kl = i, kl
    return best_i


def test_entropy_threshold_gaussian_with_outliers_matches_independent_search():
    rng = np.random.default_rng(4)
    gauss = rng.standard_normal(1_000_000).astype(np.float32)
    outliers = np.full(5, 40.0, dtype=np.float32)
    cal = EntropyCalibrator()
    cal.collect("t", gauss[:500_000])
    cal.collect("t", np.concatenate([gauss[500_000:], outliers]))
    amax = cal.compute_amax()["t"]
    # Clips the far outliers, keeps more than the gaussian's 99.9th percentile.
    assert amax < 40.0 / 4
    assert amax > np.percentile(np.abs(gauss), 99.9)
    counts, edges = cal.histogram("t")
    kept = entropy_threshold_bins(counts)
    assert kept == _reference_entropy_search(counts)
    assert amax == pytest.approx(edges[kept])


def test_entropy_threshold_relu_like_histogram_matches_independent_search():
    rng = np.random.default_rng(6)
    x = np.maximum(rng.standard_normal(300_000), 0).astype(np.float32) * rng.lognormal(0, 0.7, 300_000).astype(np.float32)
    cal = EntropyCalibrator()
    cal.collect("r", x)
    counts, edges = cal.histogram("r")
    kept = entropy_threshold_bins(counts)
    assert kept == _reference_entropy_search(counts)
    assert 128 <= kept < 2048
    assert cal.compute_amax()["r"] == pytest.approx(edges[kept])


def test_calibrators_refuse_nan_naming_the_tensor():
    cal = MinMaxCalibrator()
    with pytest.raises(CalibrationError, match="tensor 'bad' has NaN or Inf"):
        cal.collect("bad", np.array([1.0, np.nan], dtype=np.float32))


# --- TensorRT cache format ---------------------------------------------------------------

FOREIGN_CACHE = (
    "TRT-8601-EntropyCalibration2\n"
    "input.1: 3c010a14\n"
    "onnx::Conv_123: 3d0e5c8f\n"
    "/conv1/Conv_output_0: 3f9db09c\n"
    "(Unnamed Layer* 8) [Constant]_output: 39137939\n"
)


def _f32(hex8: str) -> float:
    return struct.unpack(">f", bytes.fromhex(hex8))[0]


def test_scale_hex_is_big_endian_float32():
    table = CalibrationTable.from_amax({"a": 0.0078125 * 127}, version="8601")
    assert table.scale("a") == 0.0078125
    assert table.to_text() == "TRT-8601-EntropyCalibration2\na: 3c000000\n"
    assert CalibrationTable.from_amax({"a": 0.0078125 * 448}, dtype="fp8", version="1").scale("a") == 0.0078125


def test_cache_round_trip_byte_for_byte(tmp_path):
    amax = {"input": 2.5, "conv/out:0": 0.123456789, "z": 1e-6, "relu": 6.0}
    table = CalibrationTable.from_amax(amax, algorithm="MinMaxCalibration", version="100300")
    path = table.save(tmp_path / "model.calib.cache")
    data = path.read_bytes()
    assert data.startswith(b"TRT-100300-MinMaxCalibration\ninput: ")
    assert data.endswith(b"\n") and b" \n" not in data
    loaded = CalibrationTable.load(path)
    assert list(loaded) == list(amax)  # line order kept
    assert loaded.header == "TRT-100300-MinMaxCalibration"
    again = loaded.save(tmp_path / "again.cache")
    assert again.read_bytes() == data
    for name, value in amax.items():
        assert loaded.scale(name) == float(np.float32(value / 127))
    assert sorted(tmp_path.iterdir()) == sorted([path, again])  # no temporary files left


def test_reading_a_cache_written_by_another_tool(tmp_path):
    path = tmp_path / "foreign.cache"
    path.write_bytes(FOREIGN_CACHE.encode())
    table = CalibrationTable.load(path)
    assert table.version == "8601" and table.algorithm == "EntropyCalibration2"
    assert list(table) == ["input.1", "onnx::Conv_123", "/conv1/Conv_output_0", "(Unnamed Layer* 8) [Constant]_output"]
    assert table.scale("input.1") == _f32("3c010a14")
    assert table["onnx::Conv_123"] == pytest.approx(_f32("3d0e5c8f") * 127, rel=1e-12)
    frame = table.to_frame()
    assert list(frame.columns) == ["tensor", "amax", "scale"]
    assert frame["scale"].tolist() == [_f32(h) for h in ("3c010a14", "3d0e5c8f", "3f9db09c", "39137939")]
    assert table.to_text() == FOREIGN_CACHE
    assert table.scales("int8")["/conv1/Conv_output_0"] == _f32("3f9db09c")


@pytest.mark.parametrize(
    "content, pattern",
    [
        ("", r"bad.cache: the calibration cache is empty"),
        (
            FOREIGN_CACHE[: FOREIGN_CACHE.index("3d0e5") + 5],  # cut mid-hex
            r"line 3: the value '3d0e5' has 5 hex digits, expected 8 \(the file looks truncated",
        ),
        ("TensorRT cache v1\ninput.1: 3c010a14\n", r"line 1: bad header 'TensorRT cache v1'"),
        ("TRT-8XXX-EntropyCalibration2\ninput.1: 3c010a14\n", r"line 1: bad header"),
        ("TRT-8601-Percentile99\ninput.1: 3c010a14\n", r"line 1: unknown calibration algorithm 'Percentile99'"),
        ("TRT-8601-EntropyCalibration2\ninput.1: 3c010a14\nconv: 0.0123\n", r"line 3: the value '0.0123' for tensor 'conv' is not 8 hex digits"),
        ("TRT-8601-EntropyCalibration2\ninput.1: zz010a14\n", r"line 2: the value 'zz010a14'"),
        ("TRT-8601-EntropyCalibration2\njust a name\n", r"line 2: 'just a name' is not '<tensor name>: <8 hex digits>'"),
        ("TRT-8601-EntropyCalibration2\na: 3c010a14\na: 3c010a14\n", r"line 3: tensor 'a' appears twice"),
        ("TRT-8601-EntropyCalibration2\na: 7fc00000\n", r"line 2: tensor 'a' has scale nan"),
    ],
)
def test_bad_cache_errors_name_file_line_and_fix(tmp_path, content, pattern):
    path = tmp_path / "bad.cache"
    path.write_text(content)
    with pytest.raises(CalibrationCacheError, match=pattern) as info:
        CalibrationTable.load(path)
    message = str(info.value)
    assert str(path) in message
    assert "calibrate again" in message and "writeCalibrationCache" in message


def test_empty_cache_message():
    with pytest.raises(CalibrationCacheError, match=r"empty.cache: the calibration cache is empty; calibrate again"):
        CalibrationTable.from_text("\n", source="empty.cache")


def test_missing_and_binary_cache_files(tmp_path):
    with pytest.raises(CalibrationCacheError, match=r"nope.cache: calibration cache file not found"):
        CalibrationTable.load(tmp_path / "nope.cache")
    (tmp_path / "engine.plan").write_bytes(b"TRT-8601-EntropyCalibration2\n\xff\xfe\x00")
    with pytest.raises(CalibrationCacheError, match=r"engine.plan, line 2: not text"):
        CalibrationTable.load(tmp_path / "engine.plan")


def test_tensorrt_version_digits():
    assert tensorrt_version_digits("8.6.1") == "8601"
    assert tensorrt_version_digits("10.3.0.26") == "100300"


# --- validate() ---------------------------------------------------------------------------


def test_quantizable_tensors_of_conv_model():
    inferred = onnx.shape_inference.infer_shapes(conv_model())
    assert quantizable_tensors(inferred) == CONV_TENSORS
    emb = onnx.shape_inference.infer_shapes(embedding_model())
    assert quantizable_tensors(emb) == ["emb"]  # int ids and the weights are not activations


def _qdq_inputs(quantized: onnx.ModelProto) -> set[str]:
    """Activations the quantized model really quantizes: inputs of QuantizeLinear nodes (weights are stored
    quantized and only dequantized, so they have no QuantizeLinear)."""
    return {n.input[0] for n in quantized.graph.node if n.op_type == "QuantizeLinear"}


@pytest.mark.parametrize("name", ["resnet18", "unet", "bert_small"])
def test_calibration_calibrates_exactly_what_qdq_quantizes(name):
    from trtlab import zoo
    from trtlab.precision.qdq import quantize

    model = zoo.get(name)
    table = calibrate(model, 1, method="minmax")
    q = quantize(model, table)
    assert set(table) == _qdq_inputs(q.model)
    assert not q.missing


def test_a_graph_input_feeding_no_quantized_op_is_not_calibrated():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                           helper.make_node("Conv", ["r", "w"], ["y"], name="conv")], "g", [x], [y], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    from trtlab.precision.qdq import quantize

    table = calibrate(model, 1, method="minmax")
    assert list(table) == ["r"] == sorted(_qdq_inputs(quantize(model, table).model))


def test_validate_lists_missing_and_extra():
    table = CalibrationTable.from_amax({"x": 1.0, "conv_out": 2.0, "flat": 3.0, "old_conv_out": 4.0}, version="8601")
    result = table.validate(conv_model())
    assert result.missing == ["relu_out"]
    assert result.extra == ["old_conv_out"]
    assert not result.ok
    text = result.explain()
    assert 'TensorRT would report "Could not find scales for tensor relu_out"' in text
    assert "another network, TensorRT version or platform (TensorRT FAQ 3 and 12)" in text
    assert "calibrate again" in text and "'old_conv_out'" in text
    assert str(result) == text
    assert "missing=['relu_out']" in repr(result)


def test_validate_foreign_cache_against_model_is_ok_with_only_extras():
    amax = dict.fromkeys(CONV_TENSORS, 1.0) | {"(Unnamed Layer* 8) [Constant]_output": 1.0}
    result = CalibrationTable.from_amax(amax, version="8601").validate(conv_model())
    assert result.ok and result.missing == []
    assert result.extra == ["(Unnamed Layer* 8) [Constant]_output"]
    assert "TensorRT ignores them" in result.explain()
    full = CalibrationTable.from_amax(dict.fromkeys(CONV_TENSORS, 1.0), version="8601").validate(conv_model())
    assert full.ok and full.extra == [] and "has a scale for every tensor" in full.explain()


# --- calibrate() end to end on ONNX Runtime -----------------------------------------------


def _reference_activations(model, batches):
    ref = ReferenceEvaluator(model)
    names = ["conv_out", "relu_out", "flat"]
    per_batch = []
    for b in batches:
        outs = ref.run(names, b)
        per_batch.append({"x": b["x"], **dict(zip(names, outs))})
    return per_batch


def test_calibrate_minmax_matches_reference_evaluator():
    model = conv_model()
    batches = conv_batches()
    calls = []
    table = calibrate(model, batches, method="minmax", progress=lambda d, t: calls.append((d, t)), version="8601")
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert list(table) == CONV_TENSORS
    assert table.header == "TRT-8601-MinMaxCalibration"
    acts = _reference_activations(model, batches)
    for name in CONV_TENSORS:
        expected = max(float(np.max(np.abs(a[name]))) for a in acts)
        assert table[name] == pytest.approx(expected, rel=1e-5), name
    assert table.validate(model).ok
    from trtlab.model import Model

    assert calibrate(Model(model), batches, method="minmax") == table  # a trtlab Model works too


def test_calibrate_entropy_and_percentile_stay_within_max():
    model = conv_model()
    batches = conv_batches(sizes=(4, 4))
    mm = calibrate(model, batches, method="minmax")
    ent = calibrate(model, batches, method="entropy")
    pct = calibrate(model, batches, method="percentile", percentile=99.0)
    assert ent.algorithm == "EntropyCalibration2" and pct.algorithm == "LegacyCalibration"
    for name in CONV_TENSORS:
        assert 0 < ent[name] <= mm[name] * (1 + 1e-6)
        assert 0 < pct[name] < mm[name]
    acts = _reference_activations(model, batches)
    x_all = np.abs(np.concatenate([a["x"].ravel() for a in acts]))
    assert abs(pct["x"] - np.percentile(x_all, 99.0)) <= mm["x"] * 2 / 2048


def test_calibrate_synthetic_int_inputs_and_generator_progress():
    model = embedding_model()
    batches = list(synthetic_batches(model, 2, batch=3, seed=7))
    assert batches[0]["ids"].shape == (3, 16) and batches[0]["ids"].dtype == np.int64
    assert batches[0]["ids"].min() >= 0 and batches[0]["ids"].max() < 100
    again = list(synthetic_batches(model, 2, batch=3, seed=7))
    np.testing.assert_array_equal(batches[1]["ids"], again[1]["ids"])
    assert not np.array_equal(batches[0]["ids"], batches[1]["ids"])
    assert list(synthetic_batches(model, 1, dynamic_dim=5))[0]["ids"].shape == (1, 5)

    table = calibrate(model, 4, method="minmax")
    assert list(table) == ["emb"]
    emb_table = numpy_helper.to_array(model.graph.initializer[0])
    expected = max(float(np.abs(emb_table[b["ids"]]).max()) for b in synthetic_batches(model, 4))
    assert table["emb"] == pytest.approx(expected)

    pulled = []

    def gen():
        for b in synthetic_batches(model, 5):
            pulled.append(1)
            yield b

    calls = []
    calibrate(model, gen(), method="minmax", num_batches=2, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 2), (1, 2), (2, 2)] and len(pulled) == 2
    calls.clear()
    calibrate(model, (b for b in synthetic_batches(model, 2)), method="minmax", progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, None), (1, None), (2, None)]


def test_calibrate_cancel_raises_cancelled_error():
    cancel = threading.Event()

    def progress(done, total):
        if done == 1:
            cancel.set()

    with pytest.raises(CancelledError, match="cancelled after 1 batch"):
        calibrate(conv_model(), conv_batches(), method="minmax", progress=progress, cancel=cancel)


def test_calibrate_accepts_float64_by_casting():
    batches = [{"x": b["x"].astype(np.float64)} for b in conv_batches()]
    table = calibrate(conv_model(), batches, method="minmax")
    assert table["x"] == pytest.approx(max(float(np.abs(b["x"]).max()) for b in batches), rel=1e-6)


@pytest.mark.parametrize(
    "batch, pattern",
    [
        ({"x": np.zeros((1, 3, 8, 8), np.float32), "z": np.zeros(3)}, r"batch 0: 'z' is not an input of the model; its inputs are \['x'\]"),
        ({"input": np.zeros((1, 3, 8, 8), np.float32)}, r"batch 0: 'input' is not an input"),
        ({}, r"batch 0: input 'x' is missing; expected float32 \[N, 3, 8, 8\]"),
        ({"x": np.zeros((1, 3, 9, 8), np.float32)}, r"input 'x' has shape \[1, 3, 9, 8\], but the model expects float32 \[N, 3, 8, 8\]"),
        ({"x": np.zeros((3, 8, 8), np.float32)}, r"input 'x' has shape \[3, 8, 8\], but the model expects .*rank 4"),
        ({"x": np.zeros((1, 3, 8, 8), np.complex64)}, r"input 'x' has dtype complex64, which cannot be cast safely to the model's float32"),
        ([np.zeros((1, 3, 8, 8), np.float32)], r"calibration batch 0 is a list, expected a dict"),
    ],
)
def test_calibrate_bad_batches(batch, pattern):
    with pytest.raises(InputError, match=pattern):
        calibrate(conv_model(), [batch], method="minmax")


def test_calibrate_bad_dtype_for_int_input():
    pattern = (
        r"input 'ids' has dtype float32, which cannot be cast safely to the model's int64; "
        r"expected int64 \[N, seq\], got float32 \[2, 4\]"
    )
    with pytest.raises(InputError, match=pattern):
        calibrate(embedding_model(), [{"ids": np.zeros((2, 4), np.float32)}], method="minmax")


def test_calibrate_bad_batch_is_reported_by_index():
    batches = conv_batches() + [{"x": np.zeros((1, 3, 8, 7), np.float32)}]
    with pytest.raises(InputError, match="calibration batch 3: input 'x'"):
        calibrate(conv_model(), batches, method="minmax")


def test_calibrate_empty_data_and_bad_arguments():
    with pytest.raises(CalibrationError, match="no calibration batches"):
        calibrate(conv_model(), [], method="minmax")
    with pytest.raises(CalibrationError, match="no calibration batches"):
        calibrate(conv_model(), iter(()), method="entropy")
    with pytest.raises(CalibrationError, match="no calibration batches"):
        calibrate(conv_model(), 0)
    with pytest.raises(ConfigError, match="unknown calibration method 'kl'"):
        calibrate(conv_model(), 1, method="kl")
    with pytest.raises(ConfigError, match="tensor 'nope' is not in the model"):
        calibrate(conv_model(), 1, tensors=["nope"])


def test_calibrate_explicit_tensors_and_fp8():
    table = calibrate(conv_model(), conv_batches(), method="minmax", tensors=["relu_out", "y"], dtype="fp8")
    assert list(table) == ["relu_out", "y"]
    assert table.dtype == "fp8"
    assert table.scale("y") == float(np.float32(table["y"] / 448))
    assert table.scales("int8")["y"] == float(np.float32(table["y"] / 127))


# --- calibration on a session's backend ---------------------------------------------------


def test_session_calibrates_on_its_backend_with_the_providers_it_is_given(tmp_path):
    from trtlab import Session

    s = Session(conv_model(), workspace=tmp_path / "ws")
    real_build = s.backend.build
    built = []

    def recording_build(model, variant, config, reporter):  # the real backend, watched
        engine = real_build(model, variant, config, reporter)
        built.append((config, engine, engine.providers))
        return engine

    s.backend.build = recording_build
    batches = conv_batches()
    table = s.calibrate(batches, method="minmax", providers=["cpu"])
    assert len(built) == 1
    config, engine, providers = built[0]
    assert config.precision == "fp32" and list(config.providers) == ["cpu"]
    assert providers == ["CPUExecutionProvider"]
    assert engine._closed  # the calibration engine is released when calibration ends
    # the engine returned exactly the activations the table needed besides the graph input
    assert set(config.outputs) == set(table) - {"x"}
    assert s.log.records(search="with providers ['CPUExecutionProvider']")
    # and the ranges are those of the model itself (the ONNX reference evaluator)
    acts = _reference_activations(conv_model(), batches)
    for name in table:
        assert table[name] == pytest.approx(max(float(np.max(np.abs(a[name]))) for a in acts), rel=1e-5), name
