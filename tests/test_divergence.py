"""First divergence from the error each node adds to its inputs' (per-layer sensitivity), against numpy."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import trtlab
from trtlab.analysis.divergence import first_divergence

N = 4096
U16 = 2.0**-11


def _cancel_model() -> onnx.ModelProto:
    """Zero-error rows (ConstantOfShape and an Add of it), then a Pow whose exponent fp16 rounds (a small error from
    exact inputs), then x + 100.03 - 100: fp16 stores 100.03 as 100.0, and the Sub of nearly equal values turns that
    0.03 into a large relative error."""
    zero = numpy_helper.from_array(np.array([0.0], np.float32))
    nodes = [helper.make_node("Shape", ["x"], ["shape"], name="shape"),
             helper.make_node("ConstantOfShape", ["shape"], ["zeros"], name="zeros", value=zero),
             helper.make_node("Add", ["zeros", "zeros"], ["zeros2"], name="zeros2"),
             helper.make_node("Pow", ["x", "e"], ["q"], name="pow"),
             helper.make_node("Add", ["x", "c1"], ["p"], name="shift"),
             helper.make_node("Sub", ["p", "c2"], ["d"], name="cancel"),
             helper.make_node("Add", ["d", "zeros2"], ["dz"], name="addz"),
             helper.make_node("Add", ["dz", "q"], ["y"], name="out")]
    g = helper.make_graph(nodes, "cancel", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, N])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, N])],
                          [numpy_helper.from_array(np.array(4.0015, np.float32), "e"),
                           numpy_helper.from_array(np.array(100.03, np.float32), "c1"),
                           numpy_helper.from_array(np.array(100.0, np.float32), "c2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _rel(ref: np.ndarray, cand: np.ndarray) -> float:
    r, c = np.asarray(ref, np.float64), np.asarray(cand, np.float64)
    e2, r2 = np.sum((r - c) ** 2), np.sum(r ** 2)
    return float(np.sqrt(e2 / r2)) if r2 > 0 else (0.0 if e2 == 0 else np.inf)


def test_zero_error_rows_no_longer_make_a_small_error_a_divergence(tmp_path):
    x = np.random.default_rng(0).uniform(2, 3, (1, N)).astype(np.float32)
    c = trtlab.Session(_cancel_model(), workspace=tmp_path).compare("fp32", "fp16", outputs="all", data=[{"x": x}])
    # numpy: fp32 reference, fp16 candidate with every tensor rounded to fp16 and the weights stored in fp16
    x64, h = x.astype(np.float64), (lambda a: np.asarray(a, np.float16).astype(np.float64))
    ref = {"zeros": np.zeros_like(x64), "zeros2": np.zeros_like(x64), "q": x64 ** np.float32(4.0015),
           "p": x64 + np.float32(100.03)}
    ref["d"] = ref["p"] - 100.0
    cand = {"zeros": np.zeros_like(x64), "zeros2": np.zeros_like(x64), "q": h(x64 ** h(4.0015)),
            "p": h(x64 + h(100.03))}
    cand["d"] = h(cand["p"] - 100.0)
    err = {t: _rel(ref[t], cand[t]) if np.any(ref[t]) else 0.0 for t in ref}
    inputs = {"zeros": [], "zeros2": ["zeros"], "q": [], "p": [], "d": ["p"]}  # float activations each node reads
    added = {t: err[t] - max((err[i] for i in inputs[t]), default=0.0) for t in ref}
    # the old rule: the first error above 1e-3 and above 10 x the median of the errors before it (0, 0: zero rows)
    old = next(t for k, t in enumerate(ref) if err[t] > 1e-3 and err[t] > 10 * np.median([err[s] for s in
                                                                                             list(ref)[:k]] or [0]))
    assert old == "q" and err["q"] < 10 * U16  # a Pow rounding its exponent: about 3 unit roundoffs, no divergence
    # the amplifier: d's error is > 20x p's and > 20 unit roundoffs
    assert added["d"] > 20 * err["p"] and added["d"] > 20 * U16

    div = c.first_divergence()
    assert div["tensor"] == "d" and div["node"] == "cancel" and div["op_type"] == "Sub" and div["inputs"] == ["p"]
    assert div["output_error"] == pytest.approx(err["d"], rel=0.05)
    assert div["input_error"] == pytest.approx(err["p"], rel=0.05)
    assert div["added_error"] == pytest.approx(div["output_error"] - div["input_error"])
    assert "Sub" in div["reason"] and "unit roundoff" in div["rule"]
    assert c.summary["first_divergence"] == "d" and "first divergence d" in repr(c)
    sens = c.sensitivity().set_index("tensor")
    assert sens.loc["zeros2", "added_error"] == 0.0 and sens.loc["q", "input_error"] == 0.0  # q reads only x
    assert sens.loc["dz", "inputs"] == ["d", "zeros2"] and "shape" not in sens.index  # integers have no row
    assert any("first divergence at d" in n for n in c.notes)


def test_a_frame_without_inputs_takes_the_largest_earlier_error():
    import pandas as pd
    base = {"ref_nan": 0, "cand_nan": 0, "ref_inf": 0, "cand_inf": 0}
    # zero-error rows, then 1.2e-3 (below 10 x 2^-11 above anything earlier), then 9e-3 over a largest-earlier 1.2e-3
    frame = pd.DataFrame([{"tensor": t, "rel_rms_err": e, **base}
                          for t, e in [("z0", 0.0), ("z1", 0.0), ("small", 1.2e-3), ("big", 9e-3)]])
    div = first_divergence(frame)
    assert div["tensor"] == "big" and div["input_error"] == pytest.approx(1.2e-3)
    assert "before it" in div["rule"] and div["node"] is None


@pytest.mark.corpus
def test_magika_first_divergence_is_the_node_numpy_says_starts_the_error(tmp_path):
    from corpus import get

    from trtlab.backends.ort_fp16 import store_every_fp16
    m = get("magika")
    m.fetch()
    s = trtlab.Session(str(m.path), workspace=tmp_path / "ws")
    feeds = m.feeds()
    c = s.compare("fp32", "fp16", outputs="all", data=feeds, shapes=m.shapes())
    div = c.first_divergence()

    # independent: plain ONNX Runtime on the original model and on the fp16 engine's model (trtlab's fp16 variant
    # with every fp16 tensor stored in fp16, as compare runs it on the CPU), every node output marked; per-tensor
    # errors, what each node reads and the rule in numpy here
    graph = onnx.load(str(m.path)).graph
    names = [o for n in graph.node for o in n.output if o]

    def run(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
        p = onnx.ModelProto()
        p.CopyFrom(proto)
        made = {o for n in p.graph.node for o in n.output}
        stored = [t + "/fp16" if t + "/fp16" in made else t for t in names]  # the fp16 store of each tensor
        del p.graph.output[:]
        p.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in stored)
        so = ort.SessionOptions()
        so.log_severity_level = 4
        sess = ort.InferenceSession(p.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return dict(zip(names, sess.run(stored, feeds[0])))

    ref = run(onnx.load(str(m.path)))
    cand = run(store_every_fp16(s._engine_cache.make_variant(s.make_config("fp16", shapes=m.shapes())).model)[0])
    err, bad = {}, set()
    for t, r in ref.items():
        if r.dtype.kind == "f":  # magika has no weights in Constant nodes: its float tensors are activations
            k = cand[t].astype(np.float64)
            fin = np.isfinite(k)
            bad |= {t} if not fin.all() else set()
            err[t] = _rel(r[fin], k[fin])
    added, inp, order = {}, {}, []
    for n in graph.node:
        outs = [o for o in n.output if o in err]
        if outs:
            inp[n.name] = max((err[i] for i in n.input if i in err), default=0.0)
            added[n.name] = max(err[o] for o in outs) - inp[n.name]
            order.append(n.name)
            if any(o in bad for o in outs):
                break  # the overflow in the GELU comes later; stop at the first non-finite tensor
    expected = next(n for n in order if added[n] > 4 * inp[n] and added[n] > 10 * U16)
    assert div is not None and div["node"] == expected
    assert div["input_error"] == pytest.approx(inp[expected], rel=0.05)
    assert div["added_error"] == pytest.approx(added[expected], rel=0.05)
    f = c.to_frame().set_index("tensor")
    assert f.loc[div["tensor"], "kind"] == "activation"
    # the node the error starts at is not where it is largest: a later one amplifies what it passes on
    assert max(order, key=added.get) != expected and order.index(max(order, key=added.get)) > order.index(expected)
