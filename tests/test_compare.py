"""Layer-wise comparison: metrics against numpy on full tensors, streaming memory bound, range report,
first_divergence, find_fp32_layers, evaluate, and bad input."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

import trtlab
import trtlab.zoo as zoo
from trtlab.analysis.compare import ComparisonResult, TensorStats, stats_frame, with_sources
from trtlab.errors import CancelledError, ConfigError, InputError, PrecisionNotSupportedError
from trtlab.events import Reporter

from conftest import conv_model

ROOT = Path(__file__).resolve().parents[1]


def _numpy_row(ref: np.ndarray, cand: np.ndarray) -> dict:
    r, c = ref.astype(np.float64).ravel(), cand.astype(np.float64).ravel()
    d = np.abs(r - c)
    nz = r != 0
    rel = d[nz] / np.abs(r[nz])
    over = np.count_nonzero(rel > 0.1) + np.count_nonzero(~nz & (d > 0))
    return {"max_abs_err": d.max(), "mean_abs_err": d.mean(), "max_rel_err": rel.max() if rel.size else 0.0,
            "mean_rel_err": rel.mean() if rel.size else 0.0, "elements_over_10pct": over, "total_elements": r.size,
            "ratio": over / r.size, "cosine": r @ c / np.sqrt((r @ r) * (c @ c)),
            "snr_db": 10 * np.log10((r @ r) / (d @ d)),
            "subnormal": np.count_nonzero((np.abs(r) >= 2.0**-24) & (np.abs(r) < 2.0**-14))}


def test_metrics_equal_numpy_on_full_tensors(tmp_path):
    s = trtlab.Session(conv_model(), workspace=tmp_path)
    rng = np.random.default_rng(0)
    data = [{"input": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)} for _ in range(3)]
    c = s.compare("fp32", "fp16", outputs="all", data=data, max_segment_bytes="1GiB")
    frame = c.to_frame()
    assert list(frame["tensor"]) == s.model.activation_names()
    assert "1 segment(s)" in " ".join(c.notes)
    ref_e = s.build(outputs="all", batch=2)
    # compare runs the analysis engine: on the CPU provider fp16_mode="faithful" (every tensor stored in fp16)
    cand_e = s.build(precision="fp16", outputs="all", batch=2, fp16_mode="faithful")
    refs = [ref_e.run(d) for d in data]
    cands = [cand_e.run(d) for d in data]
    for _, row in frame.iterrows():
        name = row["tensor"]
        r = np.concatenate([x[name] for x in refs])
        k = np.concatenate([x[name] for x in cands])
        assert row["cand_dtype"] == str(k.dtype)
        for col, want in _numpy_row(r, k).items():
            assert row[col] == pytest.approx(want, rel=1e-5, abs=1e-9), (name, col)
    saved = s.results("compare")
    assert len(saved) == 1 and Path(saved["path"][0]).with_suffix(".csv").exists()


STAT_COLUMNS = ["max_abs_err", "mean_abs_err", "max_rel_err", "mean_rel_err", "elements_over_10pct", "total_elements",
                "ratio", "cosine", "snr_db", "rel_rms_err", "ref_nan", "ref_inf", "cand_nan", "cand_inf",
                "cand_overflow_inf", "finite_elements", "ref_max_abs", "overflow", "underflow", "subnormal"]


def _float64_stats(ref: np.ndarray, cand: np.ndarray, integer: bool = False) -> dict:
    """Every statistic of a comparison row from whole arrays, as the compare module defines them: elementwise
    errors in float32 (the precision both are compared in), squares, products and sums in float64."""
    r32, c32 = ref.astype(np.float32).ravel(), cand.astype(np.float32).ravel()
    rfin, cfin = np.isfinite(r32), np.isfinite(c32)
    fin = rfin & cfin
    ra = np.abs(r32[rfin]).astype(np.float64)
    r, c = r32[fin], c32[fin]
    d = np.abs(r - c)
    nz = r != 0
    rel = d[nz] / np.abs(r[nz])
    d64, r64, c64 = d.astype(np.float64), r.astype(np.float64), c.astype(np.float64)
    ref2, cand2, err2 = float(np.sum(r64 * r64)), float(np.sum(c64 * c64)), float(np.sum(d64 * d64))
    over = (np.count_nonzero(rfin & ~cfin) + np.count_nonzero(rel.astype(np.float64) > 0.1)
            + np.count_nonzero(~nz & (d > 0)))
    ranged = not integer
    return {"max_abs_err": float(d64.max()), "mean_abs_err": float(d64.mean()),
            "max_rel_err": float(rel.max()) if rel.size else 0.0,
            "mean_rel_err": float(rel.astype(np.float64).mean()) if rel.size else 0.0,
            "elements_over_10pct": over, "total_elements": r32.size, "ratio": over / r32.size,
            # the row's conventions where a quantity is undefined: no reference energy, or no error
            "cosine": (float(np.sum(r64 * c64)) / math.sqrt(ref2 * cand2) if ref2 * cand2 > 0
                       else (1.0 if err2 == 0 else 0.0)),
            "snr_db": 10 * math.log10(ref2 / err2) if err2 > 0 and ref2 > 0 else None,
            "rel_rms_err": math.sqrt(err2 / ref2) if ref2 > 0 else (0.0 if err2 == 0 else None),
            "ref_nan": np.count_nonzero(np.isnan(r32)), "ref_inf": np.count_nonzero(np.isinf(r32)),
            "cand_nan": np.count_nonzero(np.isnan(c32)), "cand_inf": np.count_nonzero(np.isinf(c32)),
            "cand_overflow_inf": np.count_nonzero(rfin & np.isinf(c32)), "finite_elements": r.size,
            "ref_max_abs": float(ra.max()),
            "overflow": np.count_nonzero(ra > 65504) if ranged else 0,
            "underflow": np.count_nonzero((ra > 0) & (ra < 2.0**-24)) if ranged else 0,
            "subnormal": np.count_nonzero((ra >= 2.0**-24) & (ra < 2.0**-14)) if ranged else 0}


def _assert_row(row, want: dict, where: str) -> None:
    for col in STAT_COLUMNS:
        got, exp = row[col], want[col]
        if exp is None:
            assert got is None or got != got, (where, col, got)
        elif isinstance(exp, (int, np.integer)):
            assert got == exp, (where, col, got, exp)
        else:  # float64 sums taken in another order: equal to rounding
            assert got == pytest.approx(exp, rel=1e-9, abs=1e-300), (where, col, got, exp)


def _stats_model(n: int) -> onnx.ModelProto:
    """Tensors of n elements with what compare must count: fp16 overflow to inf (x * 3e4 where |x| > 2.18),
    exact zeros (Relu), fp16 underflow and subnormals (x * 1e-6), NaN in both (Sqrt of negatives), -inf in
    the reference (Log of zeros), and an integer tensor (Shape)."""
    k = {"big": 3e4, "tiny": 1e-6, "shrink": 1e-4}
    nodes = [helper.make_node("Mul", ["x", "k_big"], ["big"], name="grow"),
             helper.make_node("Relu", ["x"], ["relu"], name="relu"),
             helper.make_node("Mul", ["x", "k_tiny"], ["tiny"], name="tiny"),
             helper.make_node("Sqrt", ["x"], ["sqrt"], name="sqrt"),
             helper.make_node("Log", ["relu"], ["log"], name="log"),
             helper.make_node("Mul", ["big", "k_shrink"], ["small"], name="shrink"),
             helper.make_node("Add", ["small", "relu"], ["sum"], name="add"),
             helper.make_node("Shape", ["x"], ["shape"], name="shape"),
             helper.make_node("Add", ["sum", "tiny"], ["y"], name="out")]
    g = helper.make_graph(nodes, "stats", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n]),
                           helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                          [numpy_helper.from_array(np.array(v, np.float32), f"k_{name}") for name, v in k.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_statistics_equal_float64_numpy_on_plain_onnxruntime_outputs(tmp_path):
    """compare()'s every per-tensor statistic against float64 numpy over whole tensors of two batches, run by plain
    ONNX Runtime sessions with every tensor marked; tensors of 2.3 statistics steps, non-finite values in some
    steps only."""
    import onnxruntime as ort
    from trtlab.analysis.compare import CHUNK
    n = int(CHUNK * 2.3)
    s = trtlab.Session(_stats_model(n), workspace=tmp_path)
    rng = np.random.default_rng(3)
    data = []
    for scale in (1.0, 1.5):
        x = rng.standard_normal((1, n)).astype(np.float32) * np.float32(scale)
        x[0, :CHUNK + 10] = np.clip(x[0, :CHUNK + 10], 0.05, 2.0)  # the first step finite in both engines
        x[0, 7] = 0.0  # but one exact zero (the Log's -inf)
        data.append({"x": x})
    c = s.compare("fp32", "fp16", outputs="all", data=data, max_segment_bytes="1GiB")
    frame = c.to_frame().set_index("tensor")
    names = s.model.activation_names()
    runs = {}
    from trtlab.backends.ort_fp16 import store_every_fp16
    from trtlab.lab import lab_variant
    for precision in ("fp32", "fp16"):
        # the model compare's engine runs: its analysis config's variant with every tensor marked, fp16 tensors
        # stored in fp16 if faithful (marked first: a graph output keeps its name and type there)
        config, variant = lab_variant(s, precision, Reporter("test"))
        proto = onnx.ModelProto()
        proto.CopyFrom(variant.model)
        del proto.graph.output[:]
        proto.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in names)
        if config.option("fp16_mode") == "faithful":
            proto = store_every_fp16(proto)[0]
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
        runs[precision] = [dict(zip(names, sess.run(names, d))) for d in data]
    for name in names:
        ref = np.concatenate([o[name].ravel() for o in runs["fp32"]])
        cand = np.concatenate([o[name].ravel() for o in runs["fp16"]])
        _assert_row(frame.loc[name], _float64_stats(ref, cand, integer=ref.dtype.kind in "iub"), name)
    assert frame.loc["big", "cand_overflow_inf"] > 0 and frame.loc["relu", "elements_over_10pct"] >= 0
    assert frame.loc["sqrt", "ref_nan"] > 0 and frame.loc["log", "ref_inf"] > 0
    assert frame.loc["tiny", "underflow"] > 0 and frame.loc["tiny", "subnormal"] > 0
    assert frame.loc["shape", "kind"] == "integer"


def test_statistics_steps_share_buffers_without_leaking_between_tensors():
    """One Scratch reused across tensors of different dtypes and sizes (as compare_streaming does) gives each
    tensor's statistics as float64 numpy does over the whole tensor."""
    from trtlab.analysis.compare import CHUNK, Scratch
    rng = np.random.default_rng(0)
    n = CHUNK * 2 + 123
    relu = np.maximum(rng.standard_normal(n), 0).astype(np.float32)
    a = rng.standard_normal(n).astype(np.float32)
    b = (a * (1 + 1e-3 * rng.standard_normal(n))).astype(np.float32)
    b[CHUNK * 2 + 5], b[CHUNK * 2 + 6], a[CHUNK * 2 + 7] = np.inf, np.nan, -np.inf  # in the last step only
    small = rng.standard_normal(50).astype(np.float32) * np.float32(1e-5)
    cases = {"relu_fp16": (relu, relu.astype(np.float16)), "nonfinite_late": (a, b),
             "small_fp16": (small, small.astype(np.float16)), "int": (rng.integers(-3, 3, n), rng.integers(-3, 3, n)),
             "exact": (relu, relu.copy()), "ref_zero_cand_not": (np.zeros(10, np.float32), np.full(10, 1e-3, np.float32)),
             # relative error float32(1 / 10), which is above 0.1: over 10%
             "at_10pct": (np.full(10, 10, np.float32), np.full(10, 9, np.float32))}
    scratch = Scratch()
    for name, (ref, cand) in cases.items():
        st = TensorStats(name, kind="integer" if ref.dtype.kind == "i" else "activation")
        half = ref.size // 2
        st.update(ref[:half], cand[:half], scratch)
        st.update(ref[half:], cand[half:], scratch)
        _assert_row(st.row(), _float64_stats(ref, cand, integer=ref.dtype.kind in "iub"), name)


def test_half_to_float_equals_numpy_on_every_float16():
    """compare converts float16 candidates by bit arithmetic (numpy converts one element at a time): every one of
    the 65536 float16 bit patterns gives numpy's float32 bits, NaN payloads included."""
    from trtlab.analysis.compare import Scratch, half_to_float
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    with np.errstate(all="ignore"):
        ours = half_to_float(every, np.empty(every.size, np.float32))
    np.testing.assert_array_equal(ours.view(np.uint32), every.astype(np.float32).view(np.uint32))
    assert Scratch(8).halves_by_bits


def test_segmented_path_equals_one_segment_for_exact_candidates(tmp_path):
    s = trtlab.Session(conv_model(), workspace=tmp_path)
    data = 2
    same = s.compare("fp32", "fp32", data=data, max_segment_bytes="4KiB").to_frame()
    assert (same["max_abs_err"] == 0).all() and (same["cosine"] == 1).all() and len(same) == 8
    one = s.compare("fp32", "fp16", data=data, max_segment_bytes="1GiB").to_frame()
    many = s.compare("fp32", "fp16", data=data, max_segment_bytes="4KiB").to_frame()
    # ORT CPU runs fp16 Conv through Casts to fp32 and keeps fp32 between such nodes inside one session;
    # segment boundaries round to fp16 as a typed engine stores tensors, so errors agree in size, not bits
    assert np.allclose(many["snr_db"], one["snr_db"], atol=6)
    assert list(many["total_elements"]) == list(one["total_elements"])


def test_first_divergence_definition():
    # a chain t0 -> t4; each row's relative RMS error is exactly its err (ref * (1 + err))
    errs = [1e-4, 2e-4, 1.5e-4, 3e-3, 2e-2]
    rows = []
    for i, err in enumerate(errs):
        st = TensorStats(f"t{i}")
        ref = np.ones(100, np.float32)
        st.update(ref, ref * (1 + err))
        rows.append(st)
    frame = with_sources(stats_frame(rows), {f"t{i}": (f"n{i}", "Mul", (f"t{i - 1}",) if i else ())
                                             for i in range(5)})
    c = ComparisonResult(frame, "fp32", "fp16", 1)
    div = c.first_divergence()
    # by hand: t3 adds 3e-3 - 1.5e-4 = 2.85e-3 > 4 x 1.5e-4 but < 10 x 2^-11 = 4.88e-3; t4 adds 1.7e-2 > 4 x 3e-3
    assert div["tensor"] == "t4" and div["node"] == "n4" and div["inputs"] == ["t3"]
    assert div["input_error"] == pytest.approx(3e-3, rel=1e-3) and div["added_error"] == pytest.approx(1.7e-2, rel=1e-3)
    assert div["gain"] == pytest.approx(20 / 3, rel=1e-3) and "4 x" in div["rule"] and "0.000488" in div["rule"]
    assert c.first_divergence(factor=6) is None  # 1.7e-2 < 6 x 3e-3
    assert c.first_divergence(floor=1e-3)["tensor"] == "t3"
    sens = c.sensitivity().set_index("tensor")
    assert list(sens["added_error"]) == pytest.approx([1e-4, 1e-4, -5e-5, 2.85e-3, 1.7e-2], rel=1e-2)
    st = TensorStats("t_nan")
    st.update(np.ones(4, np.float32), np.array([1, np.nan, 1, 1], np.float32))
    c2 = ComparisonResult(stats_frame(rows[:1] + [st]), "fp32", "fp16", 1)
    div = c2.first_divergence()
    # t_nan's rel. error (1e-4 elsewhere) is no divergence by size: the one NaN the reference lacks makes it one
    assert div["tensor"] == "t_nan" and div["index"] == 1 and "NaN" in div["reason"]
    f = c2.to_frame().set_index("tensor")
    assert (f.loc["t_nan", "cand_nan"], f.loc["t_nan", "ref_nan"], f.loc["t0", "cand_nan"]) == (1, 0, 0)
    assert c2.summary["tensors"] == 2 and c2.summary["first_divergence"] == "t_nan"
    assert c2.summary["worst_tensor"] == "t_nan" and c2.summary["worst_rel_rms_err"] == 0.0  # over finite elements
    assert "first divergence t_nan" in repr(c2)


def _big_chain(n: int = 10, elems: int = 4_000_000) -> onnx.ModelProto:
    nodes, prev = [], "x"
    for i in range(n):
        nodes.append(helper.make_node("Mul" if i % 2 else "Add", [prev, "k"], [f"t{i}"], name=f"op{i}"))
        prev = f"t{i}"
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", elems])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["batch", elems])],
                          [numpy_helper.from_array(np.array([1.001], np.float32), "k")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


CHILD = """
import sys, threading, time, numpy as np, onnx, psutil, trtlab
s = trtlab.Session(onnx.load(sys.argv[1]), workspace=sys.argv[2])
x = np.random.default_rng(0).standard_normal((1, 4_000_000)).astype(np.float32)
proc, peak, stop = psutil.Process(), [0], threading.Event()
def poll():
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.002)
import pandas, onnxruntime  # loaded before the baseline
base = proc.memory_info().rss
t = threading.Thread(target=poll)
t.start()
c = s.compare("fp32", "fp16", data=[{"x": x}, {"x": x}], batch=1, max_segment_bytes=sys.argv[3])
stop.set()
t.join()
print(peak[0] - base, len(c.to_frame()))
"""


def test_streaming_peak_memory_is_bounded(tmp_path):
    """10 tensors of 16 MB: one segment holds 160 MB (fp32) + 80 MB (fp16); one tensor per segment ~2 copies."""
    path = tmp_path / "chain.onnx"
    onnx.save(_big_chain(), str(path))
    script = tmp_path / "child.py"
    script.write_text(CHILD)

    def growth(budget: str) -> int:
        out = subprocess.run([sys.executable, str(script), str(path), str(tmp_path / "ws"), budget], cwd=ROOT,
                             capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"})
        assert out.returncode == 0, out.stderr[-2000:]
        grow, tensors = out.stdout.split()
        assert int(tensors) == 10
        return int(grow)

    largest = 16_000_000
    unbounded = growth("1GiB")  # one segment: every tensor of both runs at once
    bounded = growth("16MiB")   # one tensor per segment
    assert unbounded >= 10 * largest  # the measurement sees the difference
    assert bounded <= 6 * largest     # ref + cand outputs and carries of the largest tensor, plus ORT temporaries


def test_range_report_counts_match_numpy(tmp_path):
    scale = np.array([1e-6], np.float32)
    g = helper.make_graph([helper.make_node("Mul", ["x", "s"], ["small"], name="scale_down"),
                           helper.make_node("Mul", ["x", "big"], ["large"], name="scale_up")], "r",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 1000])],
                          [helper.make_tensor_value_info("small", TensorProto.FLOAT, [4, 1000]),
                           helper.make_tensor_value_info("large", TensorProto.FLOAT, [4, 1000])],
                          [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(np.array([3e4], np.float32), "big")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    s = trtlab.Session(m, workspace=tmp_path)
    x = np.random.default_rng(1).standard_normal((4, 1000)).astype(np.float32) * 10
    rep = s.fp16_range_report(data=[{"x": x}])
    f = rep.to_frame().set_index("tensor")
    small, large = np.abs(x * scale[0]), np.abs(x * np.float32(3e4))
    assert f.loc["small", "fp16_underflow"] == np.count_nonzero((small > 0) & (small < 2.0**-24))
    assert f.loc["small", "fp16_subnormal"] == np.count_nonzero((small >= 2.0**-24) & (small < 2.0**-14))
    assert f.loc["large", "fp16_overflow"] == np.count_nonzero(large > 65504) > 0
    assert f.loc["large", "max_abs"] == pytest.approx(large.max(), rel=1e-6)
    assert f.loc["large", "p50_abs"] == pytest.approx(np.percentile(large, 50), rel=0.05)
    assert f.loc["large", "p99_abs"] == pytest.approx(np.percentile(large, 99), rel=0.05)
    assert len(rep.problems("fp16")) == 2


def test_outputs_none_compares_the_model_outputs_and_bad_outputs_are_refused(tmp_path):
    s = trtlab.Session(conv_model(), workspace=tmp_path)
    none = s.compare("fp32", "fp16", outputs=None, data=1).to_frame()
    assert list(none["tensor"]) == [o.name for o in conv_model().graph.output]
    assert list(none["tensor"]) == list(s.compare("fp32", "fp16", outputs=[], data=1).to_frame()["tensor"])
    for bad in (5, [3], {"a": 1.0}.values()):
        with pytest.raises(ConfigError, match="outputs="):
            s.compare("fp32", "fp16", outputs=bad, data=1)


def test_range_report_labels_kinds_and_never_range_checks_integers(tmp_path):
    """An int64 Slice end of INT64_MAX (how exporters spell 'to the end') and a float weight beyond 65504 in a
    Constant: the integer is no fp16 overflow; the weight is one, shown apart from the activations."""
    end = np.array([np.iinfo(np.int64).max], np.int64)
    big = np.array([1e5, 2.0], np.float32)
    nodes = [helper.make_node("Constant", [], ["ends"], name="ends", value=numpy_helper.from_array(end)),
             helper.make_node("Constant", [], ["w"], name="w", value=numpy_helper.from_array(big)),
             helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["sliced"], name="slice"),
             helper.make_node("Mul", ["sliced", "w"], ["y"], name="scale")]
    g = helper.make_graph(nodes, "ints", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
                          [numpy_helper.from_array(np.array([1], np.int64), "starts"),
                           numpy_helper.from_array(np.array([0], np.int64), "axes")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    s = trtlab.Session(m, workspace=tmp_path)
    x = np.full((3, 2), 0.5, np.float32)
    rep = s.fp16_range_report(data=[{"x": x}])
    f = rep.to_frame().set_index("tensor")
    assert list(f["kind"]) == ["integer", "weight", "activation", "activation"]
    assert (f.loc["ends", ["fp16_overflow", "bf16_overflow", "fp16_underflow"]] == 0).all()
    assert f.loc["w", "fp16_overflow"] == np.count_nonzero(big > 65504) == 1
    y = (x[1:] * big)  # numpy: 5e4 in both rows, under 65504
    assert f.loc["y", "fp16_overflow"] == np.count_nonzero(np.abs(y) > 65504) == 0
    sm = rep.summary
    assert (sm["tensors_with_fp16_overflow"], sm["weights_with_fp16_overflow"], sm["integers"]) == (0, 1, 1)
    assert list(rep.problems("fp16").index) == [1] and rep.problems("fp16", kinds=("activation",)).empty
    assert "weights: 1 overflow fp16" in repr(rep)
    c = s.compare("fp32", "fp16", outputs="all", data=[{"x": x}]).to_frame().set_index("tensor")
    assert list(c["kind"]) == list(f["kind"])  # one rule labels both


def test_candidate_overflowing_to_inf_is_a_result_not_a_math_error(tmp_path):
    """x * 3e4 passes FP16's 65504 for |x| > 2.18: the FP16 candidate holds inf there. The comparison reports it
    (SNR -inf, the tensor as first divergence); it used to raise ValueError from log10(0)."""
    g = helper.make_graph([helper.make_node("Mul", ["x", "k"], ["big"], name="grow"),
                           helper.make_node("Mul", ["big", "s"], ["y"], name="shrink")], "overflow",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
                          [numpy_helper.from_array(np.array(3e4, np.float32), "k"),
                           numpy_helper.from_array(np.array(1e-4, np.float32), "s")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    s = trtlab.Session(m, workspace=tmp_path)
    x = np.linspace(-4, 4, 64, dtype=np.float32).reshape(1, 64)
    assert not np.any((np.abs(x) > 2.17) & (np.abs(x) < 2.20))  # no element near the rounding boundary
    c = s.compare("fp32", "fp16", outputs=["big"], data=[{"x": x}])
    f = c.to_frame().set_index("tensor")
    n_inf = int(np.count_nonzero(np.abs(x) > 2.2))
    assert n_inf > 0 and f.loc["big", "cand_inf"] == n_inf and f.loc["big", "ref_inf"] == 0
    assert f.loc["big", "overflow"] == np.count_nonzero(np.abs(x * np.float32(3e4)) > 65504)
    # the error statistics are over the elements both keep finite: small (fp16 rounding), not inf
    assert 0 < f.loc["big", "rel_rms_err"] < 1e-2 and math.isfinite(f.loc["big", "snr_db"])
    assert f.loc["big", "cand_overflow_inf"] == n_inf and "overflowed to inf in fp16" in repr(c)
    assert c.first_divergence()["tensor"] == "big"


def _ort_executed_ops(model: onnx.ModelProto, tmp_path: Path) -> list[str]:
    """Op types of the graph plain ONNX Runtime (ORT_ENABLE_ALL, CPU) executes for `model`."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(tmp_path / f"opt-{len(model.graph.output)}.onnx")
    ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]


def test_marking_effect_reports_lost_fusions(tmp_path):
    proto = conv_model()
    s = trtlab.Session(proto, workspace=tmp_path / "ws")
    s.mark_outputs("all")
    eff = s.marking_effect(s.build(batch=1))
    # the reference: plain ONNX Runtime on the model and on a copy with every tensor a graph output
    marked = onnx.ModelProto()
    marked.CopyFrom(proto)
    marked.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in s.model.activation_names()
                               if n != "logits")
    plain_ops, marked_ops = _ort_executed_ops(proto, tmp_path), _ort_executed_ops(marked, tmp_path)
    assert (eff["marked_nodes"], eff["unmarked_nodes"]) == (len(marked_ops), len(plain_ops))
    assert len(marked_ops) > len(plain_ops) and eff["changed"]
    lost = sorted(set(plain_ops) - set(marked_ops))
    assert eff["fused_ops_lost"] == lost and ("fused ops lost" in eff["note"]) == bool(lost)
    assert f"{len(marked_ops)} nodes marked vs {len(plain_ops)} unmarked" in eff["note"]
    assert "marked tensors block fusions, as TensorRT FAQ 9 warns" in eff["note"]
    with pytest.raises(ConfigError, match="no such tensor"):
        s.mark_outputs(["nope"])


def test_find_fp32_layers_meets_tolerance(tmp_path):
    s = trtlab.Session(zoo.mlp(), workspace=tmp_path)
    r = s.find_fp32_layers("fp16", tolerance=1e-5, data=1, batch=4)
    assert r.met and r.final <= 1e-5 < r.baseline
    assert set(r.pins) <= set(s.model.node_names) and r.pins
    steps = r.steps
    assert steps.iloc[0]["phase"] == "unpinned" and not steps.iloc[0]["passed"]
    assert steps["passed"].any()
    loose = s.find_fp32_layers("fp16", tolerance=1.0, data=1, batch=4)
    assert loose.pins == [] and len(loose.steps) == 1


def test_evaluate_top1_top5_and_faq_flag(tmp_path):
    s = trtlab.Session(zoo.mlp(), workspace=tmp_path)
    rng = np.random.default_rng(0)
    data = [{"input": rng.standard_normal((16, 64)).astype(np.float32)} for _ in range(2)]
    fp32 = s.build(batch=16)
    logits = [fp32.run(d)["logits"] if "logits" in [o.name for o in fp32.outputs] else
              fp32.run(d)[fp32.outputs[0].name] for d in data]
    labels = [lg.argmax(1) for lg in logits]
    labels[1][:4] = (labels[1][:4] + 1) % logits[1].shape[1]  # 4 of 32 wrong for fp32
    f = s.evaluate(data, labels, metric="top1", precisions=["fp32", "fp16"], batch=16)
    assert f.loc[0, "value"] == pytest.approx(100 * 28 / 32)
    top5 = s.evaluate(data, labels, metric="top5", precisions=["fp32"], batch=16)
    want = sum(int((np.argsort(-lg, 1)[:, :5] == lb[:, None]).any(1).sum()) for lg, lb in zip(logits, labels))
    assert top5.loc[0, "value"] == pytest.approx(100 * want / 32)
    custom = s.evaluate(data, labels, metric=lambda y, t: float((y.argmax(1) == t).mean()), precisions=["fp32"])
    assert custom.loc[0, "value"] == pytest.approx(28 / 32)
    # the fp16 row's drop and flag, against top-1 counted with numpy on the fp16 engine's own logits
    fp16 = s.build(precision="fp16", batch=16)
    fp16_top1 = 100 * sum(int((fp16.run(d)["logits"].argmax(1) == lb).sum()) for d, lb in zip(data, labels)) / 32
    row = f.set_index("precision").loc["fp16"]
    assert row["value"] == pytest.approx(fp16_top1)
    assert row["drop_vs_fp32"] == pytest.approx(100 * 28 / 32 - fp16_top1)
    assert bool(row["flag"]) == (100 * 28 / 32 - fp16_top1 > 1.0)
    with pytest.raises(InputError, match="2 batches of data but 1"):
        s.evaluate(data, labels[:1])


def _mlp_biased(delta: float, cls: int = 0) -> onnx.ModelProto:
    """zoo.mlp with `delta` added to the last layer's bias of class `cls`."""
    m = zoo.mlp()
    init = next(i for i in m.graph.initializer if i.name == "fc2.bias")
    b = numpy_helper.to_array(init).copy()
    b[cls] += delta
    init.CopyFrom(numpy_helper.from_array(b, "fc2.bias"))
    return m


def test_evaluate_flags_a_drop_of_more_than_one_point(tmp_path):
    """TensorRT FAQ 14: more than 1 point below fp32 is flagged. Engines that miss exactly 1 and 3 of 200
    samples (0.5 and 1.5 points): the bias of class 0 is raised just past the 1st/3rd smallest margin."""
    from trtlab.analysis.evaluate import evaluate
    rng = np.random.default_rng(5)
    data = [{"input": rng.standard_normal((100, 64)).astype(np.float32)} for _ in range(2)]
    fp32 = trtlab.Session(zoo.mlp(), workspace=tmp_path / "a").build(batch=100)
    logits = np.concatenate([fp32.run(d)["logits"] for d in data])
    labels = [logits[:100].argmax(1), logits[100:].argmax(1)]  # fp32 is 100% right
    others = logits.argmax(1) != 0
    margins = np.sort(logits[others].max(1) - logits[others, 0])
    engines = {"fp32": fp32}
    for k in (1, 3):
        assert margins[k] - margins[k - 1] > 1e-3  # a clear gap: exactly k samples flip to class 0
        model = _mlp_biased(float(margins[k - 1] + margins[k]) / 2)
        engines[f"miss{k}"] = trtlab.Session(model, workspace=tmp_path / f"m{k}").build(batch=100)
    f = evaluate(engines, data, labels).set_index("precision")
    assert list(f["value"]) == pytest.approx([100.0, 99.5, 98.5])
    assert list(f["drop_vs_fp32"]) == pytest.approx([0.0, 0.5, 1.5])
    assert list(f["flag"]) == [False, False, True]
    assert "FAQ 14" in f.loc["miss3", "note"] and f.loc["miss1", "note"] == ""


def test_background_compare_reports_progress_and_cancels(tmp_path):
    s = trtlab.Session(conv_model(), workspace=tmp_path)
    holder: dict = {}
    seen = []

    def on_event(kind, payload):
        if kind == "progress" and payload.task == "compare" and payload.done >= 1:
            seen.append(payload)
            if "job" in holder:
                holder["job"].cancel()
    s.events.subscribe(on_event)
    holder["job"] = job = s.compare(data=10_000, batch=1, background=True)
    with pytest.raises(trtlab.errors.CancelledError):
        job.result(timeout=60)
    assert seen and seen[0].total == 10_000
    assert s.results("compare").empty  # nothing half-written


def test_bad_input_is_refused_and_nothing_written(tmp_path):
    s = trtlab.Session(conv_model(), workspace=tmp_path)
    results = s.workspace.path / "results"
    with pytest.raises(InputError, match="'image' is not an input"):
        s.compare(data=[{"image": np.zeros((1, 3, 16, 16), np.float32)}])
    with pytest.raises(InputError, match="shape"):
        s.compare(data=[{"input": np.zeros((1, 3, 8, 8), np.float32)}])
    with pytest.raises(InputError, match="dtype"):
        s.compare(data=[{"input": np.zeros((1, 3, 16, 16), np.complex64)}])
    with pytest.raises(InputError, match="nothing"):
        s.compare(data=[])
    with pytest.raises(ConfigError, match="no such tensor"):
        s.compare(outputs=["missing"])
    with pytest.raises(PrecisionNotSupportedError, match="FP8"):
        s.compare(candidate="fp8")
    with pytest.raises(ConfigError, match="no node named"):
        s.compare(candidate={"precision": "fp16", "fp32_layers": ["conv9"]})
    assert not list(results.iterdir())


def test_bert_compare_with_named_dims_keeps_index_tensors_exact(tmp_path):
    s = trtlab.Session(zoo.bert(size="small"), workspace=tmp_path)
    c = s.compare("fp32", "fp16", data=1, batch=1, dims={"sequence": 8}, max_segment_bytes="1MiB")
    f = c.to_frame().set_index("tensor")
    assert len(f) == len(s.model.activation_names())
    assert f.loc["embeddings.position_ids", "max_abs_err"] == 0 and f.loc["embeddings.position_ids", "ref_dtype"] == "int64"
    assert f.loc["last_hidden_state", "cand_dtype"] == "float32" and 0 < f.loc["last_hidden_state", "rel_rms_err"] < 0.01


def _chain(ops: list[str]) -> onnx.ModelProto:
    nodes, prev = [], "x"
    for i, op in enumerate(ops):
        nodes.append(helper.make_node(op, [prev], [f"t{i}"], name=f"n{i}"))
        prev = f"t{i}"
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return onnx.shape_inference.infer_shapes(m)


def test_candidate_lacking_a_reference_tensor_is_a_named_error():
    """A candidate runner that never yields a tensor the reference has is refused by name (it raised StopIteration)."""
    from trtlab.analysis.compare import compare_streaming
    from trtlab.analysis.segments import SegmentedRunner, split
    from trtlab.precision.variant import Variant
    from trtlab.backends.onnxruntime import OnnxRuntimeBackend
    from trtlab.config import BuildConfig
    from trtlab.errors import CompareError
    from trtlab.events import Reporter
    from trtlab.model import Model

    def runner(proto: onnx.ModelProto, groups: list[list[str]]) -> SegmentedRunner:
        return SegmentedRunner(split(proto, groups), lambda m: OnnxRuntimeBackend().build(
            Model(m), Variant(model=m), BuildConfig(), Reporter("t", None, None)))
    ref = runner(_chain(["Relu", "Neg", "Abs"]), [["t0"], ["t1"]])
    cand = runner(_chain(["Relu"]), [["t0"], ["t1"]])  # has no t1
    feeds = {"x": np.array([[1.0, -2.0, 3.0, -4.0]], np.float32)}
    with pytest.raises(CompareError, match=r"the candidate produces no tensor 't1' that the reference has"):
        compare_streaming(ref, cand, ["t0", "t1"], [feeds], 1)


def test_find_fp32_layers_stopped_after_k_steps_resumes_without_building_them_again(tmp_path):
    def counted(session):
        builds = []
        real = session.backend.build

        def build(*args, **kwargs):  # the real build, counted
            builds.append(1)
            return real(*args, **kwargs)
        session.backend.build = build
        return builds
    args = dict(tolerance=1e-5, data=1, batch=4)
    full_s = trtlab.Session(zoo.mlp(), workspace=tmp_path / "other")
    full_builds = counted(full_s)
    full = full_s.find_fp32_layers("fp16", **args)  # uninterrupted, for reference
    n = len(full.steps)
    assert n > 5 and len(full_builds) == 1 + n + 2  # FP32 reference, one per step, the ranking comparison

    s = trtlab.Session(zoo.mlp(), workspace=tmp_path / "ws")
    k = 4

    started = {}

    def stop_after_k(kind, p):
        job = started.get("job")
        if kind == "progress" and job is not None and p.job == job.id and p.total == 24 and p.done == k:
            job.cancel()  # the 4th step was measured (and stored); stop here
    s.events.subscribe(stop_after_k)
    job = started["job"] = s.find_fp32_layers("fp16", background=True, **args)
    with pytest.raises(CancelledError):
        job.result(timeout=120)
    stored = (tmp_path / "ws").rglob("trials.jsonl")
    lines = [json.loads(line) for line in next(stored).read_text().splitlines()]
    assert [r["record"] for r in lines] == ["step", "ranking"] + ["step"] * (k - 1)

    s2 = trtlab.Session(zoo.mlp(), workspace=tmp_path / "ws")  # a new kernel
    builds = counted(s2)
    r = s2.find_fp32_layers("fp16", resume=True, **args)
    assert len(builds) == 1 + (n - k)  # the reference and the steps not stored; no comparison again
    assert r.steps["resumed"].tolist() == [True] * k + [False] * (n - k)
    assert r.pins == full.pins and r.met and r.ranking == full.ranking
    assert r.steps["rel_rms_err"].iloc[:k].tolist() == [x["rel_rms_err"] for x in lines if x["record"] == "step"]
    assert r.steps["pinned"].tolist() == full.steps["pinned"].tolist()
    np.testing.assert_allclose(r.steps["rel_rms_err"], full.steps["rel_rms_err"], rtol=1e-6, atol=0)
    # a finished search resumed again builds nothing; other settings start afresh
    s3 = trtlab.Session(zoo.mlp(), workspace=tmp_path / "ws")
    b3 = counted(s3)
    assert s3.find_fp32_layers("fp16", resume=True, **args).pins == full.pins and b3 == []
    b4 = counted(s3)
    s3.find_fp32_layers("fp16", resume=True, **{**args, "tolerance": 1e-4})
    assert len(b4) > 0
