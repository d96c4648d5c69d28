"""The workspace writer: confined to its root, never through a symbolic link, atomic, strict JSON; results kept
when they cannot be saved; damaged records skipped with a warning; unique ids; quoted CSV formulas."""
from __future__ import annotations
import math

import csv
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import trtlab
from trtlab.errors import ModelError, WorkspaceError
from trtlab.workspace import Workspace

from conftest import conv_model

SECRET = "outside the workspace: must never change\n"


def _strict_loads(text: str):
    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def outside(tmp_path):
    """A file and a folder outside the workspace, with known content."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret.txt").write_text(SECRET)
    return d


def _untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == SECRET


def small_session(tmp_path, **kw):
    return trtlab.Session(conv_model(channels=4, size=8), workspace=tmp_path / "ws", **kw)


# ---- the writer itself -------------------------------------------------------------------------------
def test_writer_refuses_links_and_paths_leaving_the_root(tmp_path, outside):
    from trtlab.workspace import append_line, atomic_write
    ws = Workspace(tmp_path / "ws", "0123456789abcdef")
    (ws.path / "results" / "r.json").symlink_to(outside / "secret.txt")
    with pytest.raises(WorkspaceError, match=r"r\.json is a symbolic link"):
        ws.write_json("results/r.json", {"a": 1})
    (ws.path / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(WorkspaceError, match="linked is a symbolic link"):
        ws.write("linked/new.txt", "x")
    with pytest.raises(WorkspaceError, match="linked is a symbolic link"):
        ws.append_line("linked/points.jsonl", "{}")
    with pytest.raises(WorkspaceError, match=r"'\.\.'"):
        ws.write("results/../../../outside/new.txt", "x")
    with pytest.raises(WorkspaceError, match="outside the workspace root"):
        atomic_write(outside / "new.txt", "x", root=ws.root)
    (ws.path / "results" / "hard.jsonl").unlink(missing_ok=True)
    os.link(outside / "secret.txt", ws.path / "results" / "hard.jsonl")
    with pytest.raises(WorkspaceError, match="hard links"):
        append_line(ws.path / "results" / "hard.jsonl", "{}", root=ws.root)
    _untouched(outside)
    # what is allowed still works, atomically (no temp files left behind)
    ws.write("results/ok.txt", "one")
    ws.append_line("sweeps/s/points.jsonl", '{"a": 1}')
    assert (ws.path / "results" / "ok.txt").read_text() == "one"
    assert [p.name for p in (ws.path / "results").iterdir() if p.name.endswith(".tmp")] == []


def test_a_received_workspace_with_linked_folders_is_refused(tmp_path, outside):
    first = small_session(tmp_path)
    folder = first.workspace.path
    for name in ("results", "engines"):
        (folder / name).rename(folder / f"{name}.real")
        (folder / name).symlink_to(outside, target_is_directory=True)
        with pytest.raises(WorkspaceError, match=f"{name} is a symbolic link"):
            small_session(tmp_path)
        (folder / name).unlink()
        (folder / f"{name}.real").rename(folder / name)
    _untouched(outside)


def test_monitor_csv_and_points_are_never_written_through_links(tmp_path, outside):
    s = small_session(tmp_path)
    sw = s.sweep(batch=[1], iterations=3, warmup=1, monitor=0.05)
    folder = sw.path
    assert (folder / "monitor.csv").is_file()
    (folder / "monitor.csv").unlink()
    (folder / "monitor.csv").symlink_to(outside / "secret.txt")
    (folder / "points.jsonl").unlink()
    (folder / "points.jsonl").symlink_to(outside / "secret.txt")
    # a new run moves the planted link aside and writes fresh files; a monitor.csv link is refused with a warning
    with pytest.warns(UserWarning, match=r"monitor trace could not be saved .*monitor\.csv is a symbolic link"):
        again = s.sweep(batch=[1], iterations=3, warmup=1, monitor=0.05)
    assert again.complete
    _untouched(outside)
    # resuming would append to points.jsonl: through a link that is refused, naming the file
    (folder / "points.jsonl").unlink()
    (folder / "points.jsonl").symlink_to(outside / "secret.txt")
    s2 = small_session(tmp_path)
    with pytest.raises(WorkspaceError, match=r"points\.jsonl is a symbolic link"), \
            pytest.warns(UserWarning, match=r"skipping .*points\.jsonl: it is a symbolic link"):
        s2.sweep(batch=[1], iterations=3, warmup=1, monitor=False, resume=True)
    _untouched(outside)


def test_a_linked_sweep_folder_is_refused(tmp_path, outside):
    s = small_session(tmp_path)
    sw = s.sweep(batch=[1], iterations=3, warmup=1, monitor=False)
    real = sw.path.with_name("elsewhere")
    sw.path.rename(real)
    sw.path.symlink_to(outside, target_is_directory=True)
    with pytest.raises(WorkspaceError, match=f"{sw.path.name} is a symbolic link"):
        s.sweep(batch=[1], iterations=3, warmup=1, monitor=False)
    _untouched(outside)


def test_results_are_never_written_through_links(tmp_path, outside):
    s = small_session(tmp_path)
    results = s.workspace.path / "results"
    results.rename(results.with_name("results.real"))
    results.symlink_to(outside, target_is_directory=True)
    with pytest.warns(UserWarning, match="results is a symbolic link"):
        b = s.benchmark(iterations=5)
        p = s.profile_layers(runs=2)
    assert b.iterations == 5 and len(p.frame)
    _untouched(outside)


def test_engine_entries_are_never_written_through_links(tmp_path, outside):
    s = small_session(tmp_path)
    config = s.make_config(batch=2)
    entry = s.workspace.engine_dir(config)
    entry.symlink_to(outside, target_is_directory=True)
    with pytest.raises(WorkspaceError, match=f"{entry.name} is a symbolic link"):
        s.build(batch=2)
    _untouched(outside)


def test_sweep_ids_cannot_steer_paths(tmp_path):
    s = small_session(tmp_path)
    with pytest.raises(trtlab.errors.ConfigError, match="not a sweep id"):
        s.sweep(resume="../../../tmp/x")
    with pytest.raises(trtlab.errors.ConfigError, match="not a sweep id"):
        s.load_sweep("../results")


def test_an_engine_that_cannot_be_stored_is_kept_in_memory(tmp_path):
    import onnxruntime as ort
    s = small_session(tmp_path)
    engines = s.workspace.path / "engines"
    engines.rmdir()  # a fresh workspace: nothing stored yet
    engines.write_text("not a folder")  # no entry can be staged or stored
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eng = s.build(batch=2)
    assert any("could not be stored" in str(w.message) for w in caught)
    assert "kept in memory" in eng.metadata["save_error"]
    feeds = eng.random_feeds()
    plain = ort.InferenceSession(s.model.proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(eng.run(feeds)["logits"], plain.run(None, feeds)[0], rtol=1e-5, atol=1e-6)
    assert s.build(batch=2) is eng  # the cache still serves it


# ---- results kept, ids unique, JSON strict, CSV quoted ------------------------------------------------
@pytest.mark.parametrize("how", ["replaced_by_a_file", "disk_full"])
def test_a_result_that_cannot_be_saved_is_kept(tmp_path, how):
    s = small_session(tmp_path)
    s.build()  # the engine is in the cache before the disk fills
    results = s.workspace.path / "results"
    if how == "replaced_by_a_file":
        results.rmdir()
        results.write_text("not a folder")
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if how == "disk_full":  # no file may grow past one byte: every write fails as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, old_limit[1]))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            b = s.benchmark(iterations=7)
            # ONNX Runtime's profiler itself writes a temp file, so on a full disk only the folder case runs it
            p = s.profile_layers(runs=2) if how == "replaced_by_a_file" else None
            c = s.compare("fp32", "fp32", outputs=[])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert b.iterations == 7 and len(b.latencies_ms) == 7
    assert len(c.frame) == 1
    messages = [str(x.message) for x in caught]
    if p is not None:
        assert len(p.frame) > 0 and p.runs == 2 and "kept in memory" in p.save_error
        assert sum("profile result could not be saved" in m for m in messages) == 1
    assert sum("benchmark result could not be saved" in m for m in messages) == 1
    assert sum("compare result could not be saved" in m for m in messages) == 1
    assert str(results) in b.save_error and "kept in memory" in b.save_error
    assert any("compare result could not be saved" in n for n in c.notes)
    assert [p for p in s.workspace.path.rglob("*.tmp")] == []


def test_result_ids_are_unique_across_threads_and_workspaces(tmp_path):
    a = Workspace(tmp_path / "ws", "0123456789abcdef")
    b = Workspace(tmp_path / "ws", "0123456789abcdef")  # a second session on the same model
    barrier = threading.Barrier(8)
    paths: list[Path] = []

    def save(ws: Workspace) -> None:
        barrier.wait()
        for i in range(25):
            paths.append(ws.save_result("benchmark", {"i": i}))
    threads = [threading.Thread(target=save, args=(a if k % 2 else b,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 200
    assert len(list((a.path / "results").glob("*.json"))) == 200
    assert len({r["id"] for r in a.results()}) == 200


def test_result_json_is_strict_when_stats_are_not_finite(tmp_path):
    two = numpy_helper.from_array(np.full((1,), 2, np.float32), "two")
    g = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"], name="mul"),
                           helper.make_node("Relu", ["y"], ["r"], name="relu")], "nan",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("r", TensorProto.FLOAT, [2, 4])], [two])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    s = trtlab.Session(m, workspace=tmp_path / "ws")
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    x[0, 0] = np.nan  # one NaN in the data: the error statistics are not finite
    c = s.compare("fp32", "fp16", data={"x": x})
    assert c.summary["worst_rel_rms_err"] is None or math.isfinite(c.summary["worst_rel_rms_err"])
    sw = s.sweep(batch=[2], iterations=3, warmup=1, monitor=False)  # no monitor: utilization is NaN
    assert np.isnan(sw.to_frame()["util_mean_pct"]).all()
    texts = [p.read_text() for p in (s.workspace.path / "results").glob("*.json")]
    texts += (sw.path / "points.jsonl").read_text().splitlines()
    assert len(texts) == 3
    for text in texts:
        _strict_loads(text)
    rec = s.workspace.results("compare")[0]
    assert rec["summary"]["worst_rel_rms_err"] == 0.0 and rec["first_divergence"] is None  # NaN in both
    # read back, a figure that was NaN is NaN again where a number is expected
    assert np.isnan(s.load_sweep(sw.spec.id).to_frame()["util_mean_pct"]).all()


def _hostile_model() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32) * 0.5, "@weights")
    nodes = [helper.make_node("MatMul", ["=input", "@weights"], ["=HYPERLINK(\"http://x\")"], name="=cmd|' /C calc'!A0"),
             helper.make_node("Relu", ["=HYPERLINK(\"http://x\")"], ["+relu"], name="+relu_node"),
             helper.make_node("Neg", ["+relu"], ["-neg"], name="-neg_node"),
             helper.make_node("Abs", ["-neg"], ["\tabs"], name="@abs_node"),
             helper.make_node("Identity", ["\tabs"], ["\rout"], name="\rid_node")]
    g = helper.make_graph(nodes, "hostile", [helper.make_tensor_value_info("=input", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("\rout", TensorProto.FLOAT, [2, 4])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_csv_cells_that_spreadsheets_would_run_are_quoted(tmp_path):
    s = trtlab.Session(_hostile_model(), workspace=tmp_path / "ws")
    s.compare("fp32", "fp16", outputs="all")
    s.profile_layers(runs=2)
    compare_csv = next((s.workspace.path / "results").glob("*-compare.csv"))
    rows = _read_csv(compare_csv)
    tensors = [r["tensor"] for r in rows]
    assert tensors == ["'=HYPERLINK(\"http://x\")", "'+relu", "'-neg", "'\tabs", "'\rout"]
    assert all(not t.startswith(("=", "+", "-", "@", "\t", "\r")) for t in tensors)
    for r in rows:  # numbers stay numbers
        float(r["max_abs_err"]), int(r["total_elements"])
    assert [int(r["total_elements"]) for r in rows] == [8] * 5
    profile_csv = next((s.workspace.path / "results").glob("*-profile.csv"))
    assert [r["name"] for r in _read_csv(profile_csv)] == ["'=cmd|' /C calc'!A0", "'+relu_node", "'-neg_node",
                                                            "'@abs_node"]  # Identity is fused into Abs
    for r in _read_csv(profile_csv):
        for cell in r.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
        assert float(r["median_ms"]) >= 0
    # the JSON keeps the names as they are
    rec = s.workspace.results("compare")[0]
    assert rec["summary"]["worst_tensor"] in [t[1:] for t in tensors]


# ---- damaged records ------------------------------------------------------------------------------------
def _plant_damaged(results: Path) -> list[Path]:
    bad = [results / "00-not-utf8.json", results / "01-list.json", results / "02-no-kind.json",
           results / "03-bad-benchmark-benchmark.json"]
    bad[0].write_bytes(b'{"id": "x", "kind": "benchmark", "engine": "\xff\xfe"}')
    bad[1].write_text("[1, 2, 3]")
    bad[2].write_text('{"id": "y"}')
    bad[3].write_text('{"id": "z", "kind": "benchmark", "engine": "e"}')  # missing latencies
    return bad


def test_damaged_result_records_are_skipped_with_a_warning(tmp_path):
    s = small_session(tmp_path)
    good = s.benchmark(iterations=5)
    bad = _plant_damaged(s.workspace.path / "results")
    with pytest.warns(UserWarning) as caught:
        frame = s.results()
    messages = " ".join(str(w.message) for w in caught)
    for p in bad[:3]:
        assert str(p) in messages
    good_id = [i for i in frame["id"] if i != "z"][0]
    assert sorted(frame["id"]) == sorted(["z", good_id]) and good_id.endswith("-benchmark")
    with pytest.warns(UserWarning):
        again = s.load_result(good_id)
    np.testing.assert_array_equal(again.latencies_ms, good.latencies_ms)
    with pytest.warns(UserWarning), pytest.raises(WorkspaceError, match="03-bad-benchmark"):
        s.load_result("z")
    with pytest.warns(UserWarning) as caught:
        out = s.report(tmp_path / "report.html")
    assert str(bad[3]) in " ".join(str(w.message) for w in caught)
    assert good_id in out.read_text(encoding="utf-8")


def test_damaged_engine_entries_are_skipped_with_a_warning(tmp_path):
    s = small_session(tmp_path)
    s.build(batch=1)
    s.build(batch=2)
    entries = sorted(p for p in (s.workspace.path / "engines").iterdir() if not p.name.startswith("."))
    (entries[0] / "metadata.json").write_bytes(b'{"device": "\xff"}')
    with pytest.warns(UserWarning, match=str(entries[0].name)):
        frame = s.engines()
    assert list(frame["key"]) == [entries[1].name]
    (entries[0] / "metadata.json").write_text("[]")
    with pytest.warns(UserWarning, match=str(entries[0].name)):
        assert list(s.engines()["key"]) == [entries[1].name]


def test_damaged_sweep_points_are_skipped_with_a_warning(tmp_path):
    s = small_session(tmp_path)
    sw = s.sweep(batch=[1, 2], iterations=3, warmup=1, monitor=False)
    path = sw.path / "points.jsonl"
    lines = path.read_bytes().splitlines()
    path.write_bytes(lines[0] + b"\n" + b'{"batch": "\xff"}\n' + b"[1, 2]\n" + b'{"precision": "fp32"}\n')
    with pytest.warns(UserWarning, match="points.jsonl") as caught:
        loaded = s.load_sweep(sw.spec.id)
    assert [str(w.message).split(" of ")[0] for w in caught][:1] == ["skipping damaged line 2"]
    assert [r["batch"] for r in loaded.records] == [1]
    with pytest.warns(UserWarning, match="points.jsonl"):
        again = s.sweep(batch=[1, 2], iterations=3, warmup=1, monitor=False, resume=True)
    assert again.ran == 1 and again.complete


# ---- the report -------------------------------------------------------------------------------------------
def test_a_failed_report_write_leaves_the_previous_report(tmp_path):
    s = small_session(tmp_path)
    s.benchmark(iterations=5)
    out = tmp_path / "report.html"
    s.report(out)
    good = out.read_bytes()
    assert len(good) > 100_000  # plotly.js is inlined
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, old_limit[1]))  # a disk that fills up mid-write
    try:
        with pytest.raises(WorkspaceError, match="previous report there is unchanged"):
            s.report(out)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert out.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_report_whose_page_fails_leaves_the_previous_report(tmp_path, monkeypatch):
    s = small_session(tmp_path)
    out = tmp_path / "report.html"
    s.report(out)
    good = out.read_bytes()
    import plotly.offline

    def broken():
        raise RuntimeError("plotly.js missing")
    monkeypatch.setattr(plotly.offline, "get_plotlyjs", broken)
    with pytest.raises(RuntimeError):
        s.report(out)
    assert out.read_bytes() == good


# ---- trtlab lab -------------------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root gets --allow-root")
def test_lab_says_why_it_adds_allow_root(tmp_path):
    # --version makes JupyterLab (when installed) print its version and exit instead of serving
    p = subprocess.run([sys.executable, "-m", "trtlab", "lab", "--", "--version"], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    lines = [ln for ln in p.stderr.splitlines() if "--allow-root" in ln]
    assert len(lines) == 1 and "root" in lines[0] and lines[0].startswith("trtlab:")


# ---- external data ----------------------------------------------------------------------------------------
def _external_model(folder: Path, location: str) -> Path:
    m = conv_model(channels=4, size=8)
    onnx.save_model(m, folder / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    proto = onnx.load(folder / "model.onnx", load_external_data=False)
    for t in proto.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    onnx.save_model(proto, folder / "model.onnx")
    return folder / "model.onnx"


@pytest.mark.parametrize("kind", ["symlink", "dotdot", "absolute", "linked_folder"])
def test_external_data_must_stay_in_the_model_folder(tmp_path, kind):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    victim = tmp_path / "victim.bin"
    if kind == "symlink":
        path = _external_model(model_dir, "weights.bin")
        (model_dir / "weights.bin").rename(victim)
        (model_dir / "weights.bin").symlink_to(victim)
        want = "symbolic link"
    elif kind == "dotdot":
        path = _external_model(model_dir, "../victim.bin")
        (model_dir / "weights.bin").rename(victim)
        want = "'..'"
    elif kind == "absolute":
        path = _external_model(model_dir, str(victim))
        (model_dir / "weights.bin").rename(victim)
        want = "absolute path"
    else:
        path = _external_model(model_dir, "data/weights.bin")
        (tmp_path / "elsewhere").mkdir()
        (model_dir / "weights.bin").rename(tmp_path / "elsewhere" / "weights.bin")
        (model_dir / "data").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
        want = "symbolic link"
    with pytest.raises(ModelError, match=want) as err:
        trtlab.Model.load(path)
    assert "'w0'" in str(err.value) and str(path) in str(err.value)


def test_plain_external_data_still_loads(tmp_path):
    path = _external_model(tmp_path, "weights.bin")
    m = trtlab.Model.load(path)
    ref = conv_model(channels=4, size=8)
    np.testing.assert_array_equal(numpy_helper.to_array(m.proto.graph.initializer[0]),
                                  numpy_helper.to_array(ref.graph.initializer[0]))


def test_the_onnx_floor_refuses_symlinked_external_data(tmp_path):
    import re
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    floor = tuple(int(x) for x in re.search(r'"onnx>=([0-9.]+)"', text).group(1).split("."))
    assert floor >= (1, 21)
    path = _external_model(tmp_path, "weights.bin")
    (tmp_path / "weights.bin").rename(tmp_path / "victim.bin")
    (tmp_path / "weights.bin").symlink_to(tmp_path / "victim.bin")
    with pytest.raises(Exception, match="(?i)symlink|symbolic"):
        onnx.load(str(path))
