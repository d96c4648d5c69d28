"""silero-vad keeps all its work (STFT Conv, encoder Convs, LSTM, decoder) inside the branches of an `If` on the
sample rate. Reduced precision must reach in there: fp16 and int8 change what the model computes (checked against
plain ONNX Runtime of the fp32 model on the real speech clip) and still hear speech and silence."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import trtlab
from corpus.inspect_graphs import walk
from corpus import CorpusError, get
from corpus import feeds as F

pytestmark = pytest.mark.corpus
SR = np.array(16000, np.int64)


@pytest.fixture(scope="module")
def silero():
    m = get("silero_vad")
    try:
        m.fetch()
    except CorpusError as e:
        pytest.fail(f"the real-model corpus could not be fetched: {e}")
    return m


def plain(model) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def stream(sess) -> np.ndarray:
    """Speech probability per 32 ms chunk of the real clip, the LSTM state carried from run to run."""
    state, probs = np.zeros((2, 1, 128), np.float32), []
    for x in F.silero_stream():
        p, state = sess.run(["output", "stateN"], {"input": x, "state": state, "sr": SR})
        assert np.isfinite(p).all() and np.isfinite(state).all()
        probs.append(float(p[0, 0]))
    return np.array(probs)


def hears_speech_and_silence(probs: np.ndarray) -> None:
    """The same judgement test_corpus.test_silero_vad_hears_speech_and_silence makes on plain fp32 ORT."""
    assert max(probs[:10]) < 0.1
    assert max(probs[20:60]) > 0.9
    assert max(probs[-10:]) < 0.1


def branch_weights(model: onnx.ModelProto) -> dict[int, int]:
    """{elem type: float weight elements} of the Constants inside the If branches (and their bodies)."""
    out: dict[int, int] = {}
    for n, depth in walk(model.graph):
        if depth > 0 and n.op_type == "Constant" and n.attribute[0].t.data_type in (1, 10):
            t = n.attribute[0].t
            out[t.data_type] = out.get(t.data_type, 0) + int(np.prod(t.dims))
    return out


def test_silero_fp16_converts_the_work_inside_the_if_branches(silero, tmp_path):
    s = trtlab.Session(str(silero.path), workspace=tmp_path)
    engine = s.build("fp16", shapes=silero.shapes())
    low = engine.variant.model
    onnx.checker.check_model(low, full_check=True)
    weights = branch_weights(low)
    assert weights.get(10, 0) > 0.95 * sum(weights.values())  # float weights in the branches are fp16
    fraction = engine.variant.converted_fraction
    assert fraction is not None and fraction > 0.9
    assert any("float ops converted" in n and "inside If/Loop/Scan bodies" in n for n in engine.variant.notes)
    ref, got = stream(plain(silero.path)), stream(plain(low))  # the fp16 model runs in plain ONNX Runtime
    err = np.abs(got - ref).max()
    assert 0 < err < 0.02, err  # not bit-equal: fp16 happened; the speech probability moves by < 0.02
    hears_speech_and_silence(got)
    np.testing.assert_allclose(engine.run(silero.feeds()[0])["output"], plain(low).run(["output"],
                                                                                      silero.feeds()[0])[0])


def calibration_chunks(path, every: int = 8) -> list[dict[str, np.ndarray]]:
    """Every `every`-th chunk of the clip with the LSTM state plain fp32 ORT carries into it."""
    sess, state, out = plain(path), np.zeros((2, 1, 128), np.float32), []
    for i, x in enumerate(F.silero_stream()):
        feed = {"input": x, "state": state, "sr": SR}
        if i % every == 0:
            out.append(feed)
        _, state = sess.run(["output", "stateN"], feed)
    return out


def test_silero_int8_calibrates_and_quantizes_inside_the_if_branches(silero, tmp_path):
    s = trtlab.Session(str(silero.path), workspace=tmp_path)
    table = s.calibrate(calibration_chunks(silero.path), method="minmax")
    assert len(table) > 0 and all(t.startswith("If_0_then_branch") for t in table)  # 16 kHz: the then branch
    with pytest.warns(RuntimeWarning, match="8 of the 16 tensors quantized have no scale"):  # the 8 kHz branch
        engine = s.build("int8", calibration=table, shapes=silero.shapes())
    q = engine.variant.model
    onnx.checker.check_model(q, full_check=True)
    then_branch = next(a.g for a in q.graph.node[[n.op_type for n in q.graph.node].index("If")].attribute
                       if a.name == "then_branch")
    inner = [n for n, _ in walk(then_branch)]
    assert sum(n.op_type == "QuantizeLinear" for n in inner) == len(table)
    assert sum(n.op_type == "DequantizeLinear" and n.input[0].endswith("__quantized") for n in inner) == 6  # Conv w
    # the 8 kHz branch was never computed on 16 kHz data: it gets no made-up range, stays float, and the notes say so
    assert any("no scale in the calibration and stay float" in n for n in engine.variant.notes)
    assert engine.variant.converted_fraction == 0.5
    ref, got = stream(plain(silero.path)), stream(plain(q))
    assert not np.array_equal(got, ref)  # int8 is no longer fp32 bit for bit
    hears_speech_and_silence(got)


def test_find_fp32_layers_ranks_and_pins_nodes_inside_the_branches(silero, tmp_path):
    s = trtlab.Session(str(silero.path), workspace=tmp_path)
    comp = s.compare("fp32", "fp16", outputs="all", data=silero.feeds(), shapes=silero.shapes())
    rows = comp.frame.set_index("tensor")
    lstm = "If_0_then_branch__Inline_0__/decoder/rnn/LSTM_output_0"
    assert rows.loc[lstm, "rel_rms_err"] > 0  # an inner tensor, compared on the engines themselves
    found = s.find_fp32_layers("fp16", data=silero.feeds(), tolerance=1e-6, max_steps=4)
    inner = {n.name for n, depth in walk(s.model.proto.graph) if depth > 0}
    assert found.ranking and set(found.ranking[:10]) <= inner
    assert found.pins and set(found.pins[:10]) <= inner  # (before: the two top-level Identity nodes)
    pinned = s.build("fp16", shapes=silero.shapes(), fp32_layers=found.pins)
    full = s.build("fp16", shapes=silero.shapes())
    assert found.converted_fraction == pinned.variant.converted_fraction < full.variant.converted_fraction
    assert f"{found.converted_fraction:.0%} of float ops still converted" in repr(found)
