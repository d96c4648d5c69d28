"""silero-vad keeps all its work (STFT Conv, encoder Convs, LSTM, decoder) inside the branches of an `If` on the
sample rate. Reduced precision must reach in there: fp16 and int8 change what the model computes (checked against
plain ONNX Runtime of the fp32 model on the real speech clip) and still hear speech and silence."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import trtlab
from corpus import CorpusError, get
from corpus import feeds as F
from trtlab.model import all_nodes, subgraphs

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
    for node in model.graph.node:
        for body in subgraphs(node):
            for n in all_nodes(body):
                if n.op_type == "Constant" and n.attribute[0].t.data_type in (1, 10):
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
