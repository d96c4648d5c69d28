"""trtexec import against the real exports vendored in tests/data/trtexec (TREx's test engines)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trtlab.analysis.benchmark import BenchmarkResult
from trtlab.tables import COLUMNS, LayerProfile, parse_format, parse_layer_info
from trtlab.errors import TrtexecFormatError
from trtlab.trtexec import load_trtexec

DATA = Path(__file__).resolve().parent / "data" / "trtexec"
FOLDERS = ["resnet18-a100-fp32", "resnet18-a100-fp16", "resnet18-a100-qat", "mobilenet-qat-titanrtx"]


def _json(folder: str, name: str):
    return json.loads((DATA / folder / name).read_text())


@pytest.fixture(scope="module", params=FOLDERS)
def report(request):
    return request.param, load_trtexec(DATA / request.param)


def test_layers_match_file(report):
    folder, rep = report
    raw = _json(folder, "engine.graph.json")["Layers"]
    f = rep.layers()
    assert len(f) == len(raw)
    assert f["name"].tolist() == [r["Name"] for r in raw]
    assert f["type"].tolist() == [r["LayerType"] for r in raw]
    for row, r in zip(f.itertuples(), raw):
        assert [t["dims"] for t in row.outputs] == [o["Dimensions"] for o in r["Outputs"]]
        assert row.tactic == r.get("TacticName", r["TacticValue"])
        assert row.is_reformat == (r["LayerType"] == "Reformat" and r.get("Origin") != "QDQ")


def test_profile_matches_file(report):
    folder, rep = report
    raw = _json(folder, "engine.profile.json")
    p = rep.profile()
    assert isinstance(p, LayerProfile) and p.source == "trtexec"
    f = p.to_frame()
    assert list(f.columns) == COLUMNS
    assert len(f) == len(raw) - 1 and p.runs == raw[0]["count"]
    assert np.allclose(f["median_ms"], [r["medianMs"] for r in raw[1:]])
    assert np.allclose(f["mean_ms"], [r["averageMs"] for r in raw[1:]])
    assert f["share"].sum() == pytest.approx(1.0)
    # every profiled layer is a layer of the engine, so op types come from the layer info
    assert f["op_type"].notna().all()


def test_benchmark_matches_trtexec_summary(report):
    folder, rep = report
    times = _json(folder, "engine.timing.json")
    perf = _json(folder, "engine.profile.metadata.json")["performance_summary"]
    b = rep.benchmark()
    assert isinstance(b, BenchmarkResult)
    # warm-up (first 200 ms) dropped: then trtexec's own min/max/median are reproduced (mean to within the few
    # records at the warm-up boundary)
    lat, gpu = perf["Latency"], perf["GPU Compute Time"]
    assert b.stats["min"] == pytest.approx(lat[0]) and b.stats["max"] == pytest.approx(lat[1])
    assert b.stats["mean"] == pytest.approx(lat[2], abs=5e-5) and b.stats["median"] == pytest.approx(lat[3])
    assert b.device_stats["median"] == pytest.approx(gpu[3])
    assert b.iterations + b.warmup == len(times)
    kept = times[b.warmup:]
    assert np.array_equal(b.latencies_ms, [t["latencyMs"] for t in kept])
    assert np.array_equal(b.device_ms, [t["computeMs"] for t in kept])
    assert b.throughput == pytest.approx(perf["Throughput"], rel=0.01)
    everything = rep.benchmark(warmup_ms=0)
    assert everything.iterations == len(times)


EXPECTED = {  # counted by hand from each engine.graph.json
    "resnet18-a100-fp32": dict(precisions={"fp32": 32}, reformats=[("LINEAR fp32", "HWC fp32")],
                               top_format=("HWC", "fp32", 15)),
    "resnet18-a100-fp16": dict(precisions={"fp16": 35, "fp32": 1},
                               reformats=[("LINEAR fp32", "HWC4 fp16"), ("LINEAR fp16", "LINEAR fp32")],
                               top_format=("HWC8", "fp16", 17)),
    "resnet18-a100-qat": dict(precisions={"int8": 32, "fp16": 3, "fp32": 2},
                              reformats=[("LINEAR fp32", "CHW32 fp16"), ("CHW32 fp16", "CHW2 fp16")],
                              top_format=("CHW32", "int8", 17)),
    "mobilenet-qat-titanrtx": dict(precisions={"int8": 70, "fp16": 2, "fp32": 1},
                                   reformats=[("CHW32 fp16", "CHW2 fp16")], top_format=("CHW32", "int8", 51)),
}


def test_breakdowns(report):
    folder, rep = report
    want = EXPECTED[folder]
    pb = rep.precision_breakdown()
    assert dict(zip(pb["precision"], pb["layers"])) == want["precisions"]
    assert pb["total_ms"].sum() == pytest.approx(rep.profile().total_ms)
    fb = rep.format_breakdown()
    n_outputs = sum(len(r["Outputs"]) for r in _json(folder, "engine.graph.json")["Layers"])
    assert fb["count"].sum() == n_outputs
    assert tuple(fb.iloc[0][["format", "dtype", "count"]]) == want["top_format"]
    rl = rep.reformat_layers()
    assert list(zip(rl["from"], rl["to"])) == want["reformats"]
    assert all(n.startswith("Reformatting CopyNode") for n in rl["name"])


def test_qdq_reformats_are_not_inserted_layers():
    rep = load_trtexec(DATA / "mobilenet-qat-titanrtx")
    f = rep.layers()
    qdq = f[f["origin"] == "QDQ"]
    assert len(qdq) == 17 and not qdq["is_reformat"].any()
    assert (f["type"] == "Reformat").sum() == 18


def test_device_batch_and_name():
    rep = load_trtexec(DATA / "resnet18-a100-fp16")
    assert rep.device == "NVIDIA A100 80GB PCIe" and rep.batch == 32 and rep.name == "resnet"
    mob = load_trtexec(layer_info=DATA / "mobilenet-qat-titanrtx" / "engine.graph.json")
    assert mob.batch == 1 and mob.device == "unknown"
    with pytest.raises(TrtexecFormatError, match="no profile"):
        mob.profile()


def test_parse_format():
    assert parse_format("Row major linear FP32") == ("LINEAR", "fp32")
    assert parse_format("Channel major FP16 format where channel % 8 == 0") == ("HWC8", "fp16")
    assert parse_format("Channel major FP32 format") == ("HWC", "fp32")
    assert parse_format("Thirty-two wide channel vectorized row major Int8 format") == ("CHW32", "int8")
    assert parse_format("Two wide channel vectorized row major FP16 format") == ("CHW2", "fp16")


def test_layer_names_only_verbosity():
    f = parse_layer_info({"Layers": ["conv1 + relu1", "pool"], "Bindings": ["x", "y"]})
    assert f["name"].tolist() == ["conv1 + relu1", "pool"]
    assert f["type"].isna().all() and not f["is_reformat"].any()


def test_bad_files(tmp_path):
    bad = tmp_path / "broken.graph.json"
    bad.write_text("{not json")
    with pytest.raises(TrtexecFormatError, match=r"broken\.graph\.json.*not valid JSON"):
        load_trtexec(layer_info=bad)
    wrong = tmp_path / "wrong.graph.json"
    wrong.write_text(json.dumps({"layers": []}))
    with pytest.raises(TrtexecFormatError, match=r"wrong\.graph\.json: the top level: missing 'Layers'"):
        load_trtexec(layer_info=wrong)
    prof = tmp_path / "x.profile.json"
    prof.write_text(json.dumps([{"count": 1}, {"layer": "a"}]))
    with pytest.raises(TrtexecFormatError, match=r"x\.profile\.json: \[1\]: missing 'name'"):
        load_trtexec(profile=prof)
    times = tmp_path / "x.timing.json"
    times.write_text(json.dumps([{"startH2dMs": 1.0}]))
    with pytest.raises(TrtexecFormatError, match=r"x\.timing\.json: \[0\]: missing 'endD2hMs'"):
        load_trtexec(times=times)
    with pytest.raises(TrtexecFormatError, match="cannot read"):
        load_trtexec(times=tmp_path / "missing.json")
    with pytest.raises(TrtexecFormatError, match="no trtexec export"):
        load_trtexec()
    with pytest.raises(TrtexecFormatError, match="not a folder"):
        load_trtexec(tmp_path / "nothing_here")
