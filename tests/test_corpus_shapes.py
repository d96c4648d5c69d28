"""Shapes on real corpus models: batch= against shapes=, evaluate's build args, and dynamic-shape errors that
name every unresolved axis with a fix that works (Python in the API, flags in the CLI)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import trtlab
from corpus import get
from trtlab.errors import ConfigError, DynamicShapeError

pytestmark = pytest.mark.corpus


def model(mid: str):
    m = get(mid)
    m.fetch()  # a no-op on a warm cache
    return m


def session(mid: str, tmp_path) -> trtlab.Session:
    return trtlab.Session(str(model(mid).path), workspace=tmp_path / "ws")


def dynamic_axes(mid: str) -> dict[str, list[int]]:
    """Independent of trtlab: per graph input, the axes the ONNX file leaves without a size, read from the proto."""
    g = onnx.load(str(model(mid).path), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    return {i.name: [a for a, d in enumerate(i.type.tensor_type.shape.dim) if not d.dim_value > 0]
            for i in g.input if i.name not in inits}


# ---- batch= and shapes= -------------------------------------------------------------------------------------

def test_a_batch_contradicting_axis_0_of_shapes_is_refused_naming_both(tmp_path):
    s = session("ppocr_cls", tmp_path)
    with pytest.raises(ConfigError, match=r"batch=8 contradicts shapes=\{'x': \(2, 3, 48, 192\)\}"):
        s.build("fp32", batch=8, shapes={"x": (2, 3, 48, 192)})
    # agreeing values, or the shapes alone, are what they say
    assert s.build("fp32", batch=2, shapes={"x": (2, 3, 48, 192)}).input_shapes == {"x": (2, 3, 48, 192)}


def test_a_sweep_reports_samples_per_s_as_the_batch_fed_times_qps(tmp_path):
    m = model("ppocr_cls")
    s = session("ppocr_cls", tmp_path)
    res = s.sweep(batch=[2, 8], shapes={"x": (2, 3, 48, 192)}, iterations=3, warmup=1, monitor=False)
    rows = {r["batch"]: r for r in res.records}
    ok = rows[2]
    assert ok["status"] == "ok", ok
    # the engine fed x of axis 0 = 2 (what the engine's own run takes), and samples/s is 2 x qps
    engine = s.build("fp32", batch=2, shapes={"x": (2, 3, 48, 192)})
    assert engine.input_shapes["x"][0] == 2 == m.feeds()[0]["x"].shape[0]
    assert ok["samples_per_s"] == pytest.approx(2 * ok["throughput_ips"], rel=1e-12)
    # batch 8 cannot be fed with x fixed at 2: the point is refused, not reported at 8 x the qps of batch 2
    assert rows[8]["status"] == "error" and "batch=8 contradicts" in rows[8]["error"], rows[8]


def test_a_sweep_without_batch_runs_the_batch_its_shapes_fix(tmp_path):
    s = session("ppocr_cls", tmp_path)
    res = s.sweep(concurrency=[1], shapes={"x": (2, 3, 48, 192)}, iterations=3, warmup=1, monitor=False)
    (row,) = res.records
    assert row["status"] == "ok" and row["batch"] == 2, row
    assert row["samples_per_s"] == pytest.approx(2 * row["throughput_ips"], rel=1e-12)


# ---- evaluate with dict precision specs ---------------------------------------------------------------------

def _upright_prob(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Mean probability the classifier gives each crop's true direction (0 upright, 1 turned 180 degrees)."""
    return float(np.mean(outputs[np.arange(len(labels)), labels]))


def test_evaluate_dict_specs_keep_shapes_and_the_shared_build_args(tmp_path):
    m = model("ppocr_cls")
    s = session("ppocr_cls", tmp_path)
    feeds, labels = m.feeds(), [np.array([0, 1])]  # the real sticker crop upright and turned
    plain = ort.InferenceSession(str(m.path), providers=["CPUExecutionProvider"])
    ref = _upright_prob(plain.run(None, feeds[0])[0], labels[0])

    own = s.evaluate(feeds, labels, metric=_upright_prob,
                     precisions=[{"precision": "fp32", "shapes": m.shapes()},
                                 {"precision": "fp16", "shapes": m.shapes()}])
    assert list(own["precision"]) == ["fp32", "fp16"]
    assert own["value"].iloc[0] == pytest.approx(ref, abs=1e-6)
    assert own["value"].iloc[1] == pytest.approx(ref, abs=2e-2)

    table = s.calibrate(feeds * 2, method="minmax")
    shared = s.evaluate(feeds, labels, metric=_upright_prob, shapes=m.shapes(),
                        precisions=["fp32", {"precision": "fp16"}, {"precision": "int8", "calibration": table}])
    assert list(shared["precision"]) == ["fp32", "fp16", "int8"]
    assert shared["value"].iloc[0] == pytest.approx(ref, abs=1e-6)
    assert all(0.0 <= v <= 1.0 for v in shared["value"]) and shared["samples"].tolist() == [2, 2, 2]


# ---- dynamic-shape errors -----------------------------------------------------------------------------------

CASES = {
    "ppocr_cls": ("shapes={'x': (1, 3, <axis 2>, <axis 3>)}", "--shapes x:1x3x<axis2>x<axis3>"),
    "ppocr_rec": ("shapes={'x': (1, 3, <axis 2>, <axis 3>)}", "--shapes x:1x3x<axis2>x<axis3>"),
    "silero_vad": ("shapes={'input': (1, <axis 1>), 'state': (2, <axis 1>, 128)}",
                   "--shapes input:1x<axis1> state:2x<axis1>x128"),
}


@pytest.mark.parametrize("mid", sorted(CASES))
def test_a_dynamic_shape_error_names_every_unresolved_axis_and_suggests_shapes(mid, tmp_path):
    s = session(mid, tmp_path)
    with pytest.raises(DynamicShapeError) as info:
        s.build("fp32")
    msg = str(info.value)
    # every dynamic axis but the batch (batch=1 by default) of every input, each in its input's part
    for part, (name, axes) in zip(msg.split("; input "), [(k, v) for k, v in dynamic_axes(mid).items() if v[1:]]):
        assert repr(name) in part
        for a in axes[1:]:
            assert f"at axis {a}" in part, (a, part)
    assert CASES[mid][0] in msg
    assert "dims=" not in msg and "--shapes" not in msg
    # the suggestion with the sizes filled in builds
    fixed = {k: tuple(v.shape) for k, v in model(mid).feeds()[0].items()}
    assert s.build("fp32", shapes=fixed).input_shapes == fixed


@pytest.mark.parametrize("mid", sorted(CASES))
def test_the_cli_prints_one_line_with_the_fix_in_cli_flags(mid, tmp_path):
    p = subprocess.run([sys.executable, "-m", "trtlab", "bench", str(model(mid).path), "--iterations", "1",
                        "--workspace", str(tmp_path / "ws")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trtlab: error: "), p.stderr
    assert CASES[mid][1] in lines[0]
    assert "Traceback" not in p.stderr and "shapes={" not in p.stderr and "dims=" not in p.stderr


def test_find_fp32_layers_and_the_range_report_take_shapes_like_compare(tmp_path):
    # ppocr_cls's '?' stands for two axes (48 and 192), so dims= cannot say its shape: shapes= must work everywhere
    m = get("ppocr_cls")
    m.fetch()
    s = trtlab.Session(str(m.path), workspace=tmp_path)
    shapes = {"x": (1, 3, 48, 192)}
    r = s.fp16_range_report(data=1, shapes=shapes)  # one random batch of exactly that shape
    assert len(r.frame) > 0 and set(r.frame["kind"]) <= {"activation", "weight", "integer"}
    f = s.find_fp32_layers("fp16", data=2, shapes=shapes, tolerance=1.0, max_steps=2)
    assert f.pins == []  # tolerance 1.0 holds with nothing pinned
    ref = s.compare("fp32", "fp16", outputs=None, data=2, shapes=shapes)
    assert ref.frame.shape[0] >= 1
