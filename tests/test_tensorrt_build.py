"""TensorRT-RTX build path for real on the CPU: parser report, builds for explicit compute capabilities, profiles,
workspace, opt level, timing cache, logger, progress and cancel, plans with metadata and refusal of mismatches."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import onnx
import pytest
from onnx import TensorProto, helper

import trtlab
from trtlab.config import BuildConfig
from trtlab.errors import (BackendUnavailableError, CancelledError, ConfigError, ParserError, PlanError,
                           PlanMismatchError)
from trtlab.events import CancelToken, EventBus, Reporter, SessionLog

from conftest import tensorrt_rtx_bindings  # noqa: E402

rtx = tensorrt_rtx_bindings(module_level=True)  # skips here without it; fails under CI=true

from trtlab.backends.tensorrt import TensorRTRTXBackend, load_engine  # noqa: E402
from trtlab.backends.tensorrt.plan import metadata_path  # noqa: E402

CC = "8.9"


def bad_model() -> onnx.ModelProto:
    """Relu -> FancyOp (no importer, no plugin) -> Abs."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["a"], name="ok_relu"),
                           helper.make_node("FancyOp", ["a"], ["b"], name="weird", domain="custom.x"),
                           helper.make_node("Abs", ["b"], ["y"], name="abs1")], "bad", [x], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom.x", 1)])


@pytest.fixture()
def session(tmp_path):
    s = trtlab.Session(trtlab.zoo.mlp(), backend="tensorrt-rtx", workspace=tmp_path / "ws")
    s.backend.cache_dir = tmp_path / "ws" / "timing-cache"
    return s


def test_available_and_options():
    ok, detail = TensorRTRTXBackend.available()
    assert ok and rtx.__version__ in detail
    opts = TensorRTRTXBackend().options()
    assert "8.9" in opts["compute_capability"] and opts["mode"] == ["enqueue", "execute"]


def test_parser_report_flags_the_unsupported_node(tmp_path):
    s = trtlab.Session(bad_model(), backend="tensorrt-rtx", workspace=tmp_path)
    rep = s.parser_report()
    assert rep["name"].tolist() == ["ok_relu", "weird", "abs1"]
    assert rep["supported"].tolist() == [True, False, True]
    weird = rep.set_index("name").loc["weird"]
    assert weird["op_type"] == "FancyOp" and weird["code"] == "INVALID_NODE" and "Plugin not found" in weird["reason"]


def test_parser_errors_raise_a_table(tmp_path):
    s = trtlab.Session(bad_model(), backend="tensorrt-rtx", workspace=tmp_path)
    with pytest.raises(ParserError, match=r"node 1 'weird' \(FancyOp\): INVALID_NODE") as info:
        s.build(compute_capability=CC)
    table = info.value.table
    assert list(table[["node", "name", "op_type", "code"]].iloc[0]) == [1, "weird", "FancyOp", "INVALID_NODE"]
    assert "Plugin not found" in table["message"].iloc[0]


def test_build_profile_workspace_opt_level_and_log(session):
    eng = session.build(batch=(1, 8, 32), workspace="64MiB", opt_level=0, compute_capability=CC)
    m = eng.metadata
    assert m["profile"] == {"input": [[1, 64], [8, 64], [32, 64]]}
    assert m["compute_capability"] == [CC] and m["module"] == "tensorrt_rtx_bindings"
    # the builder config reports back what was set
    assert m["settings"]["workspace_bytes"] == 64 << 20 and m["settings"]["opt_level"] == 0
    assert eng.size_bytes == m["size_bytes"] > 10_000
    log = session.log.records("verbose")
    tensorrt_msgs = [r for r in log if r.source == "tensorrt"]
    assert {r.severity for r in tensorrt_msgs} >= {"verbose", "info"}
    # TensorRT's own log shows the optimization level reaching the builder
    assert any("at optimization level 0" in r.message for r in tensorrt_msgs)
    assert m["build_figures"]["weights_bytes"] > 0 and "engine_generation_s" in m["build_figures"]
    assert [t.name for t in eng.inputs] == ["input"] and eng.inputs[0].shape == (None, 64)
    assert eng.input_shapes == {"input": (8, 64)}


def test_two_targets_and_bad_target(session):
    eng = session.build(batch=2, compute_capability=["8.6", "sm120"])
    assert eng.metadata["compute_capability"] == ["8.6", "12.0"]
    with pytest.raises(ConfigError, match=r"compute_capability=.9\.0. is not valid: choose from .*8\.9"):
        session.build(batch=2, compute_capability="9.0")
    with pytest.raises(ConfigError, match=r"opt_level=9 is not valid: choose from 0, 1, 2, 3, 4, 5"):
        session.build(batch=2, compute_capability=CC, opt_level=9)


def test_profile_shapes_and_errors(session):
    eng = session.build(shapes={"input": ((2, 64), (4, 64), (16, 64))}, compute_capability=CC)
    assert eng.metadata["profile"] == {"input": [[2, 64], [4, 64], [16, 64]]}
    with pytest.raises(ConfigError, match=r"not inputs of mlp"):
        session.build(shapes={"nope": (1, 64)}, compute_capability=CC)
    with pytest.raises(ConfigError, match=r"keep fixed dimensions"):
        session.build(shapes={"input": (1, 32)}, compute_capability=CC)


def test_timing_cache_round_trip(session, tmp_path):
    first = session.build(batch=4, compute_capability=CC, timing_cache=True)
    tc = first.metadata["settings"]["timing_cache"]
    path = tmp_path / "ws" / "timing-cache" / f"tensorrt_rtx_bindings-{rtx.__version__}-sm89.cache"
    assert tc["path"] == str(path) and tc["loaded_bytes"] == 0
    assert path.stat().st_size == tc["saved_bytes"] > 0
    second = session.build(batch=4, compute_capability=CC, timing_cache=True, opt_level=1)
    assert second.metadata["settings"]["timing_cache"]["loaded_bytes"] == tc["saved_bytes"]
    # keyed by device: another target gets its own file
    third = session.build(batch=4, compute_capability="8.6", timing_cache=True)
    assert third.metadata["settings"]["timing_cache"]["path"].endswith("-sm86.cache")


def test_progress_events_and_cancel(session):
    events = []
    session.events.subscribe(lambda kind, p: events.append(p) if kind == "progress" else None)
    session.build(batch=2, compute_capability=CC)
    phases = {p.message for p in events}
    assert len(events) > 20 and "Building engine" in phases

    bus, token = EventBus(), CancelToken()
    seen = []

    def cancel_after_five(kind, payload):
        if kind == "progress":
            seen.append(payload)
            if len(seen) == 5:
                token.cancel()
    bus.subscribe(cancel_after_five)
    reporter = Reporter("build", bus, SessionLog(bus), token)
    config = BuildConfig.make("tensorrt-rtx", batch=3, compute_capability=CC)
    from trtlab.precision import make_variant
    with pytest.raises(CancelledError, match="was cancelled"):
        session.backend.build(session.model, make_variant(session.model, config), config, reporter)
    assert 5 <= len(seen) < len(events)


def test_plan_save_load_and_refusals(session, tmp_path):
    eng = session.build(batch=(1, 4, 8), compute_capability=CC)
    path = eng.save(tmp_path / "mlp.plan")
    meta = json.loads(metadata_path(path).read_text())
    assert meta["library_version"] == rtx.__version__ and meta["compute_capability"] == [CC]
    assert meta["config"]["batch"] == [1, 4, 8] and meta["size_bytes"] == path.stat().st_size

    loaded = load_engine(path)
    assert loaded.plan == eng.plan and [t.name for t in loaded.outputs] == ["logits"]
    with pytest.raises(BackendUnavailableError, match="need an NVIDIA GPU"):
        loaded.run(loaded.random_feeds())

    other = dict(meta, library_version="1.0.0.1")
    metadata_path(path).write_text(json.dumps(other))
    with pytest.raises(PlanMismatchError, match=rf"built by tensorrt_rtx_bindings 1\.0\.0\.1 .* runs "
                                                rf"tensorrt_rtx_bindings {rtx.__version__}"):
        load_engine(path)
    metadata_path(path).write_text(json.dumps(meta))
    path.write_bytes(eng.plan[:1000])
    with pytest.raises(PlanError, match="truncated"):
        load_engine(path)
    metadata_path(path).unlink()
    with pytest.raises(PlanError, match="no metadata file"):
        load_engine(path)


def test_workspace_cache_reloads_plan(session, tmp_path):
    eng = session.build(batch=2, compute_capability=CC)
    files = sorted(p.name for p in session.workspace.engine_dir(eng.config).iterdir())
    assert "engine.plan" in files and "metadata.json" in files
    again = trtlab.Session(trtlab.zoo.mlp(), backend="tensorrt-rtx", workspace=tmp_path / "ws")
    e2 = again.build(batch=2, compute_capability=CC)
    assert e2.metadata["cache"] == "disk" and e2.plan == eng.plan


def test_zoo_model_fp16_builds_and_shows_its_layers(tmp_path):
    s = trtlab.Session(trtlab.zoo.resnet18(), backend="tensorrt-rtx", workspace=tmp_path)
    eng = s.build(precision="fp16", batch=1, compute_capability=CC, opt_level=0)
    assert eng.size_bytes > 1_000_000 and eng.metadata["config"]["precision"] == "fp16"
    # no GPU here: the layer table comes from the layer dump TensorRT logged while building (detailed verbosity)
    f = eng.layers()
    assert len(f) == len(eng.metadata["build_layers"]) == eng.build_log.count("\nName: ")
    compute = f[f["fused_from"].map(len) > 0]
    assert set(compute["precision"]) <= {"fp16", "fp32"} and (compute["precision"] == "fp16").sum() > 10
    covered = {n for nodes in f["fused_from"] for n in nodes}
    assert set(s.model.node_names) - covered <= {"flatten"}  # every ONNX node is in some engine layer
    assert (f["type"] == "runtime_fusion").sum() > 10 and "conv1" in f["fused_from"].iloc[1]
    loaded = load_engine(eng.save(tmp_path / "r18.plan"))
    assert loaded.layers()["name"].tolist() == f["name"].tolist()


def test_oneline_layer_parser():
    from trtlab.backends.tensorrt.inspector import layers_from_log
    log = ("Layers:\nName: __myl_Move_0, LayerType: kgen, Inputs: [ { Name: x, Dimensions: [1,3,8,8], Strides: "
           "[192,64,8,1], StrideOrder: [3,2,1,0], Datatype: Float, Format: (Linear) Row major linear format }], "
           "Constants: [], Outputs: [ { Name: y, Dimensions: [1,3,8,8], Strides: [192,1,24,3], StrideOrder: "
           "[3,0,2,1], Datatype: Half, Format: (NHWC) Channel major format }], TacticName: t1, StreamId: 0, "
           "Metadata: \nName: conv_fused, LayerType: runtime_fusion, Inputs: [], Constants: [], Outputs: [], "
           "TacticName: , StreamId: 1, EventId: 2, Metadata: [ONNX Layer: conv][ONNX Layer: relu]\nother line")
    f = layers_from_log(log)
    assert f["name"].tolist() == ["__myl_Move_0", "conv_fused"]
    assert f["is_reformat"].tolist() == [True, False] and f["fused_from"].tolist() == [[], ["conv", "relu"]]
    assert f["input_formats"][0] == ["LINEAR"] and f["output_formats"][0] == ["HWC"] and f["precision"][0] == "fp32"
    assert f["output_shapes"][0] == [[1, 3, 8, 8]] and f["tactic"][0] == "t1" and pd.isna(f["tactic"][1])


def test_each_build_logs_to_its_own_session(tmp_path):
    # TensorRT keeps the first ILogger of the process; trtlab routes its messages to the build in progress
    first = trtlab.Session(trtlab.zoo.mlp(), backend="tensorrt-rtx", workspace=tmp_path / "a")
    second = trtlab.Session(trtlab.zoo.mlp(hidden=(32,)), backend="tensorrt-rtx", workspace=tmp_path / "b")
    builder = rtx.Builder(__import__("trtlab.backends.tensorrt.logger", fromlist=["x"]).shared_logger(
        first.backend.api))  # a builder left alive, as a notebook would
    first.build(batch=2, compute_capability=CC, opt_level=0)
    n_first = len(first.log.records("verbose"))
    second.build(batch=2, compute_capability=CC, opt_level=1)
    assert len(first.log.records("verbose")) == n_first  # nothing of the second build leaked into the first
    msgs = [r.message for r in second.log.records("verbose") if r.source == "tensorrt"]
    assert any("at optimization level 1" in m for m in msgs) and not any("level 0" in m for m in msgs)
    assert not any("differs from one already registered" in m for m in msgs)
    del builder
