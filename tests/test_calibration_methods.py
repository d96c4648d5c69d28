"""Calibration methods read one set of histograms: the vectorised entropy search against the loop it replaced, the
clipping report against numpy on the raw values, the warnings, and the default on a real model against plain
ONNX Runtime."""
from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import trtlab
from trtlab.errors import CalibrationError, CalibrationWarning
from trtlab.precision.calibration import DEFAULT_METHOD, CalibrationTable, calibrate
from trtlab.precision.calibration.calibrators import HistogramCalibrator
from trtlab.precision.calibration.clipping import HEAVY_CLIP_RMS, MIN_SAMPLES
from trtlab.precision.calibration.thresholds import SMOOTHING_EPS, entropy_kl_curve, entropy_threshold_bins


def loop_kl_curve(counts, levels=128, start=128, eps=SMOOTHING_EPS):
    """The entropy search as trtlab ran it before it was vectorised, one candidate at a time (kept here as the
    reference): KL(P||Q) of every candidate i in [start, len(counts)]."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.size

    def smooth(d):
        empty = d == 0
        n_empty = int(empty.sum())
        n_full = d.size - n_empty
        return None if n_full == 0 else d + np.where(empty, eps, -eps * n_empty / n_full)

    outliers = np.concatenate([np.cumsum(counts[::-1])[::-1], [0.0]])
    kls = []
    for i in range(start, n + 1):
        kept = counts[:i]
        p = kept.copy()
        p[-1] += outliers[i]
        level = np.arange(i) * levels // i
        nonzero = p > 0
        level_mass = np.bincount(level, weights=kept, minlength=levels)
        level_nonzero = np.bincount(level, weights=nonzero, minlength=levels)
        q = np.where(nonzero, level_mass[level] / np.maximum(level_nonzero[level], 1.0), 0.0)
        ps, qs = smooth(p), smooth(q)
        if ps is None or qs is None:
            kls.append(math.inf)
            continue
        ps, qs = ps / ps.sum(), qs / qs.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            kls.append(float(np.sum(ps * np.log(ps / qs))))
    return np.arange(start, n + 1), np.array(kls)


def loop_choice(kls):
    """The loop's pick: the first strict minimum; NaN never wins; no finite value keeps every bin."""
    best, best_kl = None, math.inf
    for k, kl in enumerate(kls):
        if kl < best_kl:
            best, best_kl = k, kl
    return best


def random_histograms():
    rng = np.random.default_rng(11)
    hists = []
    for k in range(10):
        n = int(rng.integers(50, 300_000))
        kind = k % 5
        if kind == 0:
            x = rng.standard_normal(n) * rng.lognormal()
        elif kind == 1:
            x = np.maximum(rng.standard_normal(n), 0) * rng.lognormal(0, 1)      # ReLU: a spike of zeros
        elif kind == 2:
            x = rng.laplace(size=n)
            x[:3] = 60.0                                                         # far outliers
        elif kind == 3:
            x = rng.exponential(size=int(rng.integers(20, 400)))                 # a sparse histogram
        else:
            x = rng.choice([0.0, 0.5, 1.0, 7.0], size=n)                         # a few values only
        cal = HistogramCalibrator()
        cal.collect("t", x.astype(np.float32))
        hists.append(cal.histogram("t")[0])
    return hists


def assert_same_search(counts):
    cand, kl = entropy_kl_curve(counts)
    ref_cand, ref = loop_kl_curve(counts)
    np.testing.assert_array_equal(cand, ref_cand)
    # the same divergence for every candidate, to rounding (the sums are taken in another order)
    np.testing.assert_array_equal(np.isfinite(kl), np.isfinite(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(kl[finite], ref[finite], rtol=1e-9, atol=1e-12)
    # and the same chosen threshold, bit-equal: no two candidates' divergences are within rounding of each other
    best = loop_choice(ref)
    expected = counts.size if best is None else int(ref_cand[best])
    assert entropy_threshold_bins(counts) == expected


@pytest.mark.parametrize("index", range(10))
def test_vectorised_entropy_equals_the_loop_on_random_histograms(index):
    assert_same_search(random_histograms()[index])


def test_vectorised_entropy_on_float_counts_and_edge_cases():
    rng = np.random.default_rng(5)
    # non-integer counts (a weighted histogram)
    assert_same_search((1.0 + rng.random(2048) * 40) * (rng.random(2048) < 0.5))
    # counts near the smoothing (0.3 against up to 0.2 taken from each bin): the series converges too slowly and
    # each candidate is summed bin by bin
    assert_same_search((0.3 + rng.random(2048)) * (rng.random(2048) < 0.02))
    # all the mass beyond bin 128 except one count: early candidates fold almost everything into one bin
    counts = np.zeros(2048)
    counts[5] = 1
    counts[1500:] = 3
    assert_same_search(counts)
    assert entropy_threshold_bins(np.zeros(2048)) == 2048


# --- clipping report -----------------------------------------------------------------------------


def conv_model() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal((256, 10)).astype(np.float32) * 0.1, "W2")]
    nodes = [helper.make_node("Conv", ["x", "W"], ["conv_out"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv_out"], ["relu_out"]),
             helper.make_node("Flatten", ["relu_out"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "W2"], ["y"])]
    graph = helper.make_graph(nodes, "conv_relu_matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def laplace_batches(n_batches=3, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    return [{"x": rng.laplace(size=(batch, 3, 8, 8)).astype(np.float32)} for _ in range(n_batches)]


def captured(model, batches, name):
    """Every value tensor `name` took over the batches, from plain ONNX Runtime."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([(b[name] if name in b else sess.run([name], b)[0]).ravel() for b in batches])


def test_clipping_report_matches_numpy_on_the_raw_values():
    model, batches = conv_model(), laplace_batches()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        table = calibrate(model, batches, method="percentile", percentile=99.0)
    report = table.clipping()
    frame = report.frame
    assert set(frame["method"]) == {"minmax", "percentile", "entropy", "mse", "auto"}
    assert set(frame["tensor"]) == set(table)
    for name in table:
        values = np.abs(captured(model, batches, name)).astype(np.float64)
        rows = frame[frame["tensor"] == name].set_index("method")
        width = table.statistics.histograms[name].width   # range / 2048 (the range may have grown past absmax)
        assert values.max() / 2048 <= width <= 4 * values.max() / 2048
        assert rows.loc["minmax", "amax"] == pytest.approx(values.max(), rel=1e-6)
        assert rows.loc["minmax", "clipped_fraction"] == 0.0 and rows.loc["minmax", "clipped_energy"] == 0.0
        for method, row in rows.iterrows():
            amax = row["amax"]
            assert row["absmax"] == pytest.approx(values.max(), rel=1e-6)
            assert row["step"] == pytest.approx(amax / 127)
            # values within a bin of amax may fall either side: the estimate is good to one bin's share
            lo, hi = values > amax + width, values > amax - width
            assert lo.mean() - 1e-9 <= row["clipped_fraction"] <= hi.mean() + 1e-9, (name, method)
            e_lo, e_hi = (values[lo] ** 2).sum(), (values[hi] ** 2).sum()
            total = (values ** 2).sum()
            assert e_lo / total * 0.99 - 1e-9 <= row["clipped_energy"] <= e_hi / total * 1.01 + 1e-9, (name, method)
            lost = np.sqrt(((values[values > amax] - amax) ** 2).sum() / total)
            assert row["clip_rel_rms"] == pytest.approx(lost, rel=0.05, abs=width / np.sqrt(np.mean(values ** 2))), \
                (name, method)
        # the percentile row is the table's, and clips about 1% of the values
        assert rows.loc["percentile", "in_table"]
        amax = rows.loc["percentile", "amax"]
        near = np.mean(np.abs(values - amax) <= width)
        assert abs(np.mean(values > amax) - 0.01) <= near + 1 / values.size
    text = repr(report)
    assert "percentile (this table)" in text and "clips most" in text
    wide = report.side_by_side("amax")
    assert list(wide.columns) == ["minmax", "percentile", "entropy", "mse", "auto"] and list(wide.index) == list(table)


def test_with_method_reads_the_same_histograms_without_running_the_model():
    model, batches = conv_model(), laplace_batches()
    runs = []

    def counting_runner(names):
        from trtlab.precision.calibration import onnxruntime_runner
        from trtlab.precision.graph import infer_types
        inner = onnxruntime_runner(infer_types(model))(names)

        class Ctx:
            def __enter__(self):
                run = inner.__enter__()
                return lambda feed: (runs.append(1), run(feed))[1]

            def __exit__(self, *exc):
                return inner.__exit__(*exc)
        return Ctx()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        table = calibrate(model, batches, method="minmax", runner=counting_runner)
        assert len(runs) == 3
        for method in ("entropy", "percentile"):
            other = table.with_method(method)
            fresh = calibrate(model, batches, method=method)      # an independent second pass over the data
            assert dict(other) == dict(fresh) and other.header == fresh.header and other.method == method
    assert len(runs) == 3
    loaded = CalibrationTable.from_text(table.to_text())
    with pytest.raises(CalibrationError, match="calibrate again"):
        loaded.clipping()


# --- warnings ------------------------------------------------------------------------------------


def test_too_few_samples_warns_for_histogram_methods_only():
    model = conv_model()
    few = laplace_batches(2, 4)
    with pytest.warns(CalibrationWarning, match=r"saw 8 sample\(s\) in 2 batch\(es\)") as record:
        table = calibrate(model, few, method="entropy")
    assert any("saw 8 sample" in w for w in table.warnings)
    assert all(issubclass(r.category, CalibrationWarning) for r in record)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        mm = calibrate(model, few, method="minmax")
    assert not any("sample(s)" in str(w.message) for w in seen) and not any("sample(s)" in w for w in mm.warnings)
    # enough samples: 5 batches of 100
    many = laplace_batches(5, MIN_SAMPLES // 5, seed=3)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        enough = calibrate(model, many, method="percentile")
    assert not any("sample(s)" in w for w in enough.warnings)
    assert not any("sample(s)" in str(w.message) for w in seen)


def test_heavy_clipping_warns_naming_the_tensor():
    model = conv_model()
    batches = laplace_batches(5, MIN_SAMPLES // 5, seed=4)
    with pytest.warns(CalibrationWarning, match="clips .* heavily") as record:
        table = calibrate(model, batches, method="percentile", percentile=90.0)
    message = next(str(r.message) for r in record if "heavily" in str(r.message))
    # by hand: the input x, 10% of its Laplace values clipped, loses far more than HEAVY_CLIP_RMS to clipping
    x = np.abs(captured(model, batches, "x")).astype(np.float64)
    amax = np.percentile(x, 90.0)
    assert np.sqrt(((x[x > amax] - amax) ** 2).sum() / (x ** 2).sum()) > 2 * HEAVY_CLIP_RMS
    assert "'x'" in message
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        calm = calibrate(model, batches, method="minmax")
    assert not calm.warnings and not seen


def test_session_logs_calibration_warnings(tmp_path):
    s = trtlab.Session(conv_model(), workspace=tmp_path)
    with pytest.warns(CalibrationWarning):
        table = s.calibrate(laplace_batches(2, 2), method="entropy")
    logged = [r for r in s.log.records("warning") if r.severity == "warning" and "sample(s)" in r.message]
    assert logged and table.warnings


def test_the_session_default_is_the_driver_default():
    assert inspect.signature(trtlab.Session.calibrate).parameters["method"].default == DEFAULT_METHOD
    assert inspect.signature(calibrate).parameters["method"].default == DEFAULT_METHOD


# --- on real models ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ddddocr():
    from corpus import CorpusError, get
    m = get("ddddocr")
    try:
        m.fetch()
    except CorpusError as e:
        pytest.fail(f"the real-model corpus could not be fetched: {e}")
    return m


def rel_rms(a, b):
    b = b.astype(np.float64)
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b ** 2)))


@pytest.mark.corpus
def test_default_calibration_holds_up_on_ddddocr(ddddocr, tmp_path):
    feeds = ddddocr.feeds()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    reference = ort.InferenceSession(str(ddddocr.path), so, providers=["CPUExecutionProvider"]).run(None, feeds[0])[0]
    s = trtlab.Session(str(ddddocr.path), workspace=tmp_path)
    with pytest.warns(CalibrationWarning):  # one image: too few samples for the histogram methods
        table = s.calibrate(feeds, shapes=ddddocr.shapes())
        entropy = table.with_method("entropy")
    errors = {}
    for name, t in (("default", table), ("entropy", entropy)):
        out = s.build("int8", calibration=t, shapes=ddddocr.shapes()).run(feeds[0])
        errors[name] = rel_rms(next(iter(out.values())), reference)
    # measured: the default (auto) 0.041, minmax 0.043, entropy 0.155 (docs/calibration.md)
    assert errors["default"] < 0.08, errors
    assert errors["entropy"] > 0.12, errors
    assert errors["default"] < errors["entropy"] / 2, errors
    # the report names entropy's clipping on the same histograms
    report = table.clipping(["minmax", "entropy"])
    assert report.worst("entropy", 1)["clipped_energy"].iloc[0] > 0.0


@pytest.mark.corpus
def test_vectorised_entropy_equals_the_loop_on_real_histograms(ddddocr):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        table = calibrate(str(ddddocr.path), ddddocr.feeds(), method="entropy")
    hists = list(table.statistics.histograms.values())
    assert len(hists) == 30
    for hist in hists[::3]:   # ten of them: the loop takes ~0.1 s each
        assert_same_search(hist.counts)
