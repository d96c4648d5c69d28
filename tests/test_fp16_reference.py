"""FP16 that means the same thing everywhere, on real corpus models.

ONNX Runtime's CPU provider runs most nodes of an fp16 model as fp32 kernels and removes the roundings between
them, so its "fp16" engine is mostly fp32. These tests hold: (1) each engine says per layer what it computes and
stores in (ONNX Runtime's own profiler records and numpy are the references); (2) fp16_mode="faithful" stores
every tensor in fp16, node by node as numpy computes it (onnx.reference on the engine's own fp16 inputs) and end to
end close to onnx.reference running the fp16 model; (3) compare, find_fp32_layers and evaluate run that engine, so
one candidate has one error in all three, and sweeps say that CPU fp16 timing is not fp16 speed."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun
from onnx.reference.ops.op_batch_normalization import _batchnorm_test_mode

import trtlab
from corpus import get

pytestmark = pytest.mark.corpus


class BatchNormalization(OpRun):
    """Inference-mode BatchNormalization for onnx.reference: its opset-9 kernel (onnx 1.23) treats a `momentum`
    attribute, which PaddlePaddle exports always set, as training mode and normalises with the batch's own
    statistics. The formula is the library's own test-mode one."""

    op_domain = ""

    def _run(self, x, scale, bias, mean, var, epsilon=None, momentum=None, training_mode=None, spatial=None):
        return (_batchnorm_test_mode(x, scale, bias, mean, var, epsilon=epsilon).astype(x.dtype),)


def _session(model_id, tmp_path):
    m = get(model_id)
    m.fetch()
    return m, trtlab.Session(str(m.path), workspace=tmp_path / "ws")


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b ** 2)))


def _node_mismatches(engine, feeds):
    """For every fp16 node output of the engine's variant (all tensors marked): whether it differs from numpy
    computing that node in fp32 (onnx.reference) on the engine's own stored fp16 inputs, rounded to fp16, by more
    than summation order explains (more than 1% of its elements off by more than 2 ulp)."""
    variant = engine.variant.model
    out = engine.run(feeds)
    values = {**out, **feeds}
    for node in variant.graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    checked, bad = 0, []
    for node in variant.graph.node:
        if node.op_type == "Constant" or not node.output or node.output[0] not in out:
            continue
        got = out[node.output[0]]
        if got.dtype != np.float16 or not all(not i or i in values for i in node.input):
            continue
        ins = [values[i].astype(np.float32) if values[i].dtype == np.float16 else values[i] for i in node.input if i]
        one = onnx.NodeProto()
        one.CopyFrom(node)
        names = [f"in{k}" for k in range(len(ins))]
        del one.input[:], one.output[:]
        one.input.extend(names)
        one.output.extend(["y"] + [f"extra{k}" for k in range(1, len(node.output))])
        graph = helper.make_graph([one], "one", [helper.make_tensor_value_info(
            n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in zip(names, ins)],
            [helper.make_tensor_value_info("y", onnx.TensorProto.UNDEFINED, None)])
        want = ReferenceEvaluator(helper.make_model(graph, opset_imports=variant.opset_import),
                                 new_ops=[BatchNormalization]).run(None, dict(zip(names, ins)))[0]
        want = np.asarray(want).astype(np.float16)
        checked += 1
        a, b = want.astype(np.float64), got.astype(np.float64)
        ulp = np.spacing(np.maximum(np.abs(want), np.abs(got))).astype(np.float64)
        off = ~((np.abs(a - b) <= 2 * ulp) | (np.isnan(a) & np.isnan(b)) | (a == b))
        if off.mean() > 0.01:
            bad.append(node.name)
    return checked, bad


def test_faithful_fp16_stores_every_tensor_as_numpy_computes_it(tmp_path):
    m, s = _session("ppocr_cls", tmp_path)
    feeds = m.feeds()[0]
    faithful = s.build("fp16", shapes=m.shapes(), outputs="all", fp16_mode="faithful")
    checked, bad = _node_mismatches(faithful, feeds)
    assert checked > 200 and bad == []
    # the native engine's tensors are not what their nodes compute from the stored inputs: its consumers read
    # fp32 values that were never rounded
    native = s.build("fp16", shapes=m.shapes(), outputs="all", fp16_mode="native")
    checked, bad = _node_mismatches(native, feeds)
    assert len(bad) > checked // 3


def test_faithful_fp16_is_close_to_numpy_running_the_fp16_model(tmp_path):
    m, s = _session("ppocr_cls", tmp_path)
    feeds = m.feeds()[0]
    out = s.model.outputs[0].name
    fp32 = s.build("fp32", shapes=m.shapes()).run(feeds)[out]
    variant = s.build("fp16", shapes=m.shapes()).variant.model  # native (s.build keeps what it is told)
    numpy16 = ReferenceEvaluator(variant, new_ops=[BatchNormalization]).run([out], feeds)[0]
    faithful = s.build("fp16", shapes=m.shapes(), fp16_mode="faithful").run(feeds)[out]
    native = s.build("fp16", shapes=m.shapes()).run(feeds)[out]
    marked = s.build("fp16", shapes=m.shapes(), outputs="all").run(feeds, [out])[out]
    # faithful is far nearer numpy's fp16 run than the native engine is, and its error is of numpy's order
    assert _rel(faithful, numpy16) < 0.5 * _rel(native, numpy16)
    assert 0.5 < _rel(faithful, fp32) / _rel(numpy16, fp32) < 2
    # the native engine shows less error than fp16 arithmetic gives; the marked engine sits between
    assert _rel(native, fp32) < 0.7 * _rel(faithful, fp32)
    assert _rel(faithful, fp32) > 0.5 * _rel(marked, fp32)


def test_compare_find_fp32_and_evaluate_measure_one_candidate(tmp_path):
    m, s = _session("ppocr_cls", tmp_path)
    feeds, shapes = m.feeds(), m.shapes()
    out = s.model.outputs[0].name
    fp32 = [s.build("fp32", shapes=shapes).run(f)[out] for f in feeds]
    faithful = s.build("fp16", shapes=shapes, fp16_mode="faithful")
    expected = _rel(np.concatenate([faithful.run(f)[out] for f in feeds]), np.concatenate(fp32))

    comp = s.compare("fp32", "fp16", outputs="all", data=feeds, shapes=shapes)
    compared = float(comp.frame.set_index("tensor").loc[out, "rel_rms_err"])
    found = s.find_fp32_layers("fp16", data=feeds, tolerance=1.0, max_steps=1)
    reference = np.concatenate(fp32)

    def output_error(outputs, labels):
        return _rel(outputs, reference)
    labels = [np.zeros(2, dtype=np.int64) for _ in feeds]
    evaluated = s.evaluate(feeds, labels, metric=output_error, precisions=["fp16"], shapes=shapes)
    assert compared == pytest.approx(expected, rel=1e-3)
    assert found.baseline == pytest.approx(expected, rel=1e-3)
    assert float(evaluated["value"].iloc[0]) == pytest.approx(expected, rel=1e-3)
    # each says how it computed fp16
    assert any("fp16_mode='faithful'" in n for n in comp.notes) and "faithful" in repr(comp)
    assert "faithful" in repr(found)
    assert "fp16_mode='faithful'" in evaluated["computed_as"].iloc[0]
    # and the error is that of fp16 storage: of the order of the every-tensor-marked engine's, not below the
    # native engine's
    marked = s.build("fp16", shapes=shapes, outputs="all")
    marked_err = _rel(np.concatenate([marked.run(f, [out])[out] for f in feeds]), reference)
    native = s.build("fp16", shapes=shapes)
    native_err = _rel(np.concatenate([native.run(f)[out] for f in feeds]), reference)
    assert compared > 0.5 * marked_err and compared > 1.4 * native_err
    # asked for the native engine, the comparison says plainly it is not fp16
    native_comp = s.compare("fp32", {"precision": "fp16", "fp16_mode": "native"}, outputs=[out], data=feeds,
                            shapes=shapes)
    assert float(native_comp.frame.set_index("tensor").loc[out, "rel_rms_err"]) == pytest.approx(native_err, rel=1e-3)
    assert any("NOT computed in fp16" in n for n in native_comp.notes) and "NOT computed" in repr(native_comp)


def _profiled_kernel_types(engine, feeds, folder):
    """(op, first input dtype) of every node in plain ONNX Runtime's own profile of the engine's session model."""
    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(folder / "ort")  # not the working directory
    so.log_severity_level = 3
    sess = ort.InferenceSession(engine.session_model, so, providers=["CPUExecutionProvider"])
    sess.run(None, feeds)
    events = json.loads(open(sess.end_profiling()).read())
    return {e["name"][:-len("_kernel_time")]: (e["args"]["op_name"], next(iter(e["args"]["input_type_shape"][0])))
            for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
            and e["args"].get("input_type_shape")}


def test_each_engine_says_what_its_layers_compute_and_store_in(tmp_path):
    m, s = _session("ppocr_cls", tmp_path)
    feeds = m.feeds()[0]
    native = s.build("fp16", shapes=m.shapes())
    mix = native.measured_precision  # measured at build on the CPU provider
    assert mix is not None and mix.share < 0.1 and not mix.faithful
    assert "NOT computed in fp16" in mix.summary and "CPUExecutionProvider" in mix.summary
    assert s.log.records(level="warning", search="NOT computed in fp16")  # said in the build log
    prof = s.profile_layers(native, runs=1, data=feeds).to_frame()
    assert {"effective_precision", "stored_as"} <= set(prof.columns)
    kernels = _profiled_kernel_types(native, feeds, tmp_path)
    convs = prof[prof["op_type"].astype(str).str.contains("Conv")]
    assert len(convs) > 20
    for row in convs.itertuples():  # ONNX Runtime's own record of each Conv kernel's input type
        assert row.effective_precision == {"float": "fp32", "float16": "fp16"}[kernels[row.name][1]]
    assert set(convs["stored_as"]) == {"fp32"}
    assert (prof["effective_precision"] == "cast").sum() < 10

    faithful = s.build("fp16", shapes=m.shapes(), fp16_mode="faithful")
    fmix = faithful.effective_precision(feeds)
    assert fmix.share > 0.95 and fmix.faithful and "fp16 storage" in fmix.summary
    fprof = s.profile_layers(faithful, runs=1, data=feeds).to_frame()
    fconvs = fprof[fprof["op_type"].astype(str).str.contains("Conv")]
    assert set(fconvs["effective_precision"]) == {"fp32"} and set(fconvs["stored_as"]) == {"fp16"}
    assert (fprof["effective_precision"] == "cast").sum() > 200


def test_sweep_says_cpu_fp16_timing_is_not_fp16_speed(tmp_path):
    m, s = _session("ppocr_cls", tmp_path)
    sw = s.sweep(batch=[1], precision=["fp32", "fp16"], iterations=3, warmup=1, monitor=False,
                 shapes={"x": (1, 3, 48, 192)})
    f = sw.to_frame().set_index("precision")
    assert f.loc["fp16", "named_precision_share"] < 0.1
    assert "NOT computed in fp16" in f.loc["fp16", "effective_precision"]
    assert "not fp16 speed" in sw.describe()
    bench = s.benchmark(s.build("fp16", shapes={"x": (1, 3, 48, 192)}), iterations=3, warmup=1)
    assert "this timing is not fp16 speed" in str(bench) and bench.to_dict()["precision_note"]
    assert s.benchmark(s.build("fp32", shapes={"x": (1, 3, 48, 192)}), iterations=3, warmup=1).precision_note is None


def test_layers_tab_and_report_show_effective_precision_with_a_legend(tmp_path):
    from trtlab import plots
    from trtlab.widgets.layers_tab import LayerTimings
    m, s = _session("ppocr_cls", tmp_path)
    prof = s.profile_layers(s.build("fp16", shapes=m.shapes()), runs=1, data=m.feeds()[0])
    tab = LayerTimings(prof)
    assert "effective_precision" in tab.color_by.options
    assert "NOT computed in fp16" in tab.mix.value and "trtlab-precision-warning" in tab.mix.value
    fig = plots.layer_timings(prof.frame, color_by="effective_precision")
    assert fig.layout.showlegend and {"fp32", "cast"} <= {t.name for t in fig.data}
    faithful = s.profile_layers(s.build("fp16", shapes=m.shapes(), fp16_mode="faithful"), runs=1,
                                data=m.feeds()[0])
    names = {t.name for t in plots.layer_timings(faithful.frame, color_by="effective_precision").data}
    assert "fp32, stored fp16" in names
    html = s.report(tmp_path / "report.html").read_text()
    assert "NOT computed in fp16" in html and "fp16 storage" in html
