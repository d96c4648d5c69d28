"""Scalar (0-d) and selector inputs on the real silero-vad model: its `sr` is a 0-d int64 that an `If` tests
for 16000. Feeds keep it 0-d, random inputs take a value the graph tests it for, and a run that fails on
inputs trtlab generated is a named error that says so and points to data= / --data."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

import trtlab
from corpus import get
from trtlab.errors import RunError

pytestmark = pytest.mark.corpus


@pytest.fixture(scope="module")
def silero():
    m = get("silero_vad")
    m.fetch()
    return m


def plain_ort(path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def test_scalar_sr_feeds_benchmark_profile_and_match_plain_onnxruntime(silero, tmp_path):
    feeds = silero.feeds()
    assert feeds[0]["sr"].shape == () and feeds[0]["sr"] == 16000
    s = trtlab.Session(str(silero.path), workspace=tmp_path)
    e = s.build("fp32", shapes=silero.shapes())
    assert e.check_feeds(feeds[0])["sr"].shape == ()
    r = s.benchmark(e, iterations=3, warmup=1, data=feeds[0])
    assert r.iterations == 3
    prof = s.profile_layers(e, runs=1, warmup=0, data=feeds[0])
    assert len(prof.frame) > 0
    ref = plain_ort(silero.path)
    names = [o.name for o in ref.get_outputs()]
    for f in feeds:
        got = e.run(f)
        for name, want in zip(names, ref.run(names, f)):
            np.testing.assert_array_equal(got[name], want)


def test_random_inputs_give_the_selector_a_value_the_graph_tests(silero, tmp_path):
    s = trtlab.Session(str(silero.path), workspace=tmp_path)
    e = s.build("fp32", shapes=silero.shapes())
    rand = e.random_feeds(0)
    assert rand["sr"].shape == () and rand["sr"].dtype == np.int64 and int(rand["sr"]) == 16000
    plain_ort(silero.path).run(None, rand)  # plain ONNX Runtime accepts them (8000 with 576 samples it does not)
    assert s.benchmark(e, iterations=2, warmup=0).iterations == 2


SHORT = {"input": (1, 64), "state": (2, 1, 128), "sr": ()}  # 64 samples: too short a chunk for silero at 16 kHz


def test_a_run_failing_on_generated_inputs_is_a_named_error_suggesting_data(silero, tmp_path):
    s = trtlab.Session(str(silero.path), workspace=tmp_path)
    e = s.build("fp32", shapes=SHORT)
    with pytest.raises(Exception) as plain:
        plain_ort(silero.path).run(None, e.random_feeds(0))
    assert "If_0" in str(plain.value)  # plain ONNX Runtime fails on these inputs too, in the If node
    for call in (lambda: s.benchmark(e, iterations=2, warmup=0), lambda: s.profile_layers(e, runs=1, warmup=0)):
        with pytest.raises(RunError) as err:
            call()
        msg = str(err.value)
        assert e.name in msg and "'If_0'" in msg and "Pad node" in msg and "post-pad" in msg
        assert "trtlab generated" in msg and "data=" in msg and "--data" in msg and "sr int64 [] = 16000" in msg
    with pytest.raises(RunError) as err:  # the user's own data: named, without the hint about generated inputs
        s.benchmark(e, iterations=1, warmup=0, data=e.random_feeds(0))
    assert "'If_0'" in str(err.value) and "trtlab generated" not in str(err.value)


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "trtlab", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_bench_takes_data_and_scalar_shapes(silero, tmp_path):
    np.savez(tmp_path / "chunk.npz", **silero.feeds()[0])
    ok = run_cli("bench", str(silero.path), "--data", "chunk.npz", "--iterations", "3", "--warmup", "1",
                 "--workspace", "ws", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "Traceback" not in ok.stderr
    bad = run_cli("bench", str(silero.path), "--shapes", "input:1x64", "state:2x1x128", "sr:scalar",
                  "--iterations", "2", "--workspace", "ws", cwd=tmp_path)
    assert bad.returncode == 2, bad.stderr
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in bad.stderr, bad.stderr
    assert lines[0].startswith("trtlab: error:") and "'If_0'" in lines[0] and "--data" in lines[0]
    help_text = run_cli("bench", "--help", cwd=tmp_path).stdout
    assert "--data" in help_text and "sr:scalar" in help_text


def test_compare_and_find_fp32_layers_take_scalar_feeds(silero, tmp_path):
    s = trtlab.Session(str(silero.path), workspace=tmp_path)
    feeds = silero.feeds()[:1] * 2
    comp = s.compare("fp32", "fp32", outputs=[], data=feeds, shapes=silero.shapes())
    assert comp.batches == 2
    found = s.find_fp32_layers("fp16", data=feeds[:1], tolerance=1.0, max_steps=1)
    assert found.pins == []  # fp16 is within tolerance 1.0 of fp32 on a real chunk: nothing to pin


def test_compare_on_generated_inputs_that_fail_names_them(silero, tmp_path):
    s = trtlab.Session(str(silero.path), workspace=tmp_path)
    with pytest.raises(RunError) as err:
        s.compare("fp32", "fp16", outputs=[], shapes=SHORT)
    msg = str(err.value)
    assert "'If_0'" in msg and "trtlab generated" in msg and "data=" in msg
