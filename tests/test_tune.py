"""Tune: the search space from backend options, the greedy budgeted search, and a real run on the zoo MLP."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from trtlab import zoo
from trtlab.analysis.benchmark import BenchmarkResult
from trtlab.analysis.tune import build_args, run_tune, search_space
from trtlab.backends.onnxruntime import OnnxRuntimeBackend
from trtlab.errors import BuildError, CancelledError, ConfigError
from trtlab.events import Reporter
from trtlab.session import Session

ORT_OPTIONS = {"providers": ["cpu", "cuda"], "graph_optimization": ["disable", "basic", "extended", "layout", "all"],
               "threads": None, "io_binding": [True, False],
               "cuda_options": {"cudnn_conv_algo_search": ["EXHAUSTIVE", "HEURISTIC", "DEFAULT"],
                                "prefer_nhwc": ["0", "1"], "enable_cuda_graph": ["0", "1"]}}


def test_search_space_cpu_and_cuda():
    cpu = search_space(ORT_OPTIONS, OnnxRuntimeBackend.precisions, on_cuda=False, cpu_count=8)
    assert list(cpu) == ["precision", "graph_optimization", "threads"]
    assert cpu["precision"] == ["fp16", "bf16"]            # fp32 is the default; int8 needs calibration
    assert cpu["graph_optimization"] == ["disable", "basic", "extended", "layout"]  # "all" is the default
    assert cpu["threads"] == [1, 4, 8]
    gpu = search_space(ORT_OPTIONS, OnnxRuntimeBackend.precisions, on_cuda=True, batch=[8, 32])
    assert list(gpu)[:5] == ["precision", "batch", "cuda_options.prefer_nhwc", "cuda_options.enable_cuda_graph",
                             "cuda_options.cudnn_conv_algo_search"]
    assert gpu["cuda_options.cudnn_conv_algo_search"] == ["HEURISTIC", "DEFAULT"]
    assert gpu["cuda_options.enable_cuda_graph"] == ["1"] and "threads" not in gpu
    assert "providers" not in gpu and "io_binding" not in gpu
    only = search_space(ORT_OPTIONS, ("fp32", "fp16"), on_cuda=True, include=["precision", "cuda_options"],
                        exclude=["cuda_options.enable_cuda_graph"])
    assert list(only) == ["precision", "cuda_options.prefer_nhwc", "cuda_options.cudnn_conv_algo_search"]
    trt = search_space({"workspace": None, "opt_level": [0, 1, 2, 3, 4, 5], "timing_cache": [False, True],
                        "compute_capability": ["8.9", "12.0"]}, ("fp32", "fp16", "int8"), on_cuda=True)
    assert trt == {"precision": ["fp16"], "opt_level": [0, 1, 2, 4, 5], "timing_cache": [True]}


def test_build_args_nests_dotted_options():
    args = build_args({"precision": "fp16", "cuda_options.prefer_nhwc": "1", "cuda_options.enable_cuda_graph": None,
                       "graph_optimization": None}, {"batch": 32, "cuda_options": {"cudnn_conv_algo_search": "HEURISTIC"}})
    assert args == {"batch": 32, "precision": "fp16",
                    "cuda_options": {"cudnn_conv_algo_search": "HEURISTIC", "prefer_nhwc": "1"}}


def fake_result(samples_per_s: float, batch: int = 1, n: int = 10) -> BenchmarkResult:
    """A real BenchmarkResult whose throughput is exactly `samples_per_s` (n iterations of equal latency)."""
    wall = n * batch / samples_per_s
    lat = np.full(n, wall / n * 1e3)
    return BenchmarkResult("synthetic", batch, lat, np.arange(n) * wall / n, wall)


def scored(table):
    """A trial function scoring configurations by a table of factors (a known landscape), failing on 'broken'."""
    calls = []

    def trial(params, reporter):
        calls.append(dict(params))
        if params.get("precision") == "bf16":
            raise BuildError("bf16 lacks kernels here")
        score = 100.0
        for k, v in params.items():
            score *= table.get((k, v), 1.0)
        return fake_result(score)
    return trial, calls


def test_greedy_search_keeps_only_improvements():
    space = {"precision": ["fp16", "bf16"], "graph_optimization": ["basic", "disable"], "threads": [1, 2]}
    trial, calls = scored({("precision", "fp16"): 2.0, ("graph_optimization", "basic"): 0.5,
                           ("graph_optimization", "disable"): 1.1, ("threads", 2): 1.2})
    res = run_tune(space, trial, Reporter("tune"), budget_s=1e6, confirm=False)
    f = res.to_frame()
    assert len(f) == 1 + 6 and f.loc[0, "precision"] == "(default)"
    assert list(f["status"]) == ["ok", "ok", "error", "ok", "ok", "ok", "ok"]
    assert "bf16 lacks kernels" in f.loc[2, "error"]
    # each dimension is tried on top of the best so far
    assert calls[3] == {"precision": "fp16", "graph_optimization": "basic", "threads": None}
    assert res.best_params == {"precision": "fp16", "graph_optimization": "disable", "threads": 2}
    assert res.best["samples_per_s"] == pytest.approx(100 * 2 * 1.1 * 1.2)
    assert res.ratio == pytest.approx(2 * 1.1 * 1.2)
    assert "2.64x" in res.describe() and "1 failed" in res.describe()
    assert res.best_build_args({"batch": 4}) == {"batch": 4, "precision": "fp16", "graph_optimization": "disable",
                                                 "threads": 2}


def test_latency_objective_and_confirmation():
    space = {"precision": ["fp16"]}
    trial, _ = scored({("precision", "fp16"): 4.0})
    res = run_tune(space, trial, Reporter("tune"), objective="latency", budget_s=1e6, confirm=True)
    assert res.best_params == {"precision": "fp16"}
    assert [t["phase"] for t in res.trials] == ["search", "search", "confirm-default", "confirm-best"]
    assert res.confirmation["ratio"] == pytest.approx(4.0) and res.ratio == pytest.approx(4.0)
    assert res.confirmation["default"] == pytest.approx(4 * res.confirmation["best"])  # ms: lower is better


def test_budget_stops_the_search():
    space = {"threads": list(range(1, 40))}

    def slow(params, reporter):
        time.sleep(0.02)
        return fake_result(100.0)
    res = run_tune(space, slow, Reporter("tune"), budget_s=0.2, confirm=False)
    assert res.stopped and "budget" in res.stopped
    assert 1 <= len(res.trials) < 40
    assert "stopped early" in res.describe()


def test_cancel_and_argument_errors():
    rep = Reporter("tune")
    rep.cancel.cancel()
    with pytest.raises(CancelledError):
        run_tune({"threads": [1]}, lambda p, r: fake_result(1.0), rep)
    with pytest.raises(ConfigError, match="objective"):
        run_tune({}, lambda p, r: fake_result(1.0), Reporter("t"), objective="fast")
    with pytest.raises(ConfigError, match="budget_s"):
        run_tune({}, lambda p, r: fake_result(1.0), Reporter("t"), budget_s=0)


def test_session_tune_on_zoo_mlp(tmp_path):
    s = Session(zoo.mlp(), workspace=tmp_path / "ws")
    res = s.tune(budget_s=4, batch=[4, 16], trial_s=0.1, warmup=2, include=["precision", "batch",
                                                                           "graph_optimization"])
    f = res.to_frame()
    assert res.dimensions == ["precision", "batch", "graph_optimization"]
    assert f.loc[0, "status"] == "ok" and f.loc[0, "batch"] == 4 and f.loc[0, "precision"] == "(default)"
    assert set(f["status"]) <= {"ok", "error"} and f["seconds"].gt(0).all()
    ok = f[(f["status"] == "ok") & (f["phase"] == "search")]
    top = ok.loc[ok["samples_per_s"].idxmax()]
    assert res.best["samples_per_s"] == top["samples_per_s"]
    # the ratio: of the back-to-back confirmation runs when tune made them, else of the best and default trials
    confirm = f.set_index("phase")["samples_per_s"]
    if {"confirm-default", "confirm-best"} <= set(f["phase"]):
        want = confirm["confirm-best"] / confirm["confirm-default"]
    else:
        assert not res.confirmation
        want = top["samples_per_s"] / f.loc[0, "samples_per_s"]
    assert res.ratio == pytest.approx(want)
    # the best configuration builds with the best trial's settings ("(default)" batch = the first of batch=)
    best = s.build(**res.best_build_args())
    assert best.config.batch[0] == (4 if top["batch"] == "(default)" else top["batch"])
    assert best.config.precision == ("fp32" if top["precision"] == "(default)" else top["precision"])
    # each trial's samples/s is its inferences/s at its batch
    assert ok["samples_per_s"].to_numpy() == pytest.approx((ok["throughput_ips"] * ok["batch"].replace(
        "(default)", 4).astype(float)).to_numpy())
    stored = s.results("tune")
    assert len(stored) == 1 and not math.isnan(s.load_result(stored["id"].iloc[0])["ratio"])


def test_an_interrupted_search_resumes_from_its_store_without_running_those_trials_again(tmp_path):
    from trtlab.analysis.trials import TrialStore
    from trtlab.workspace import Workspace
    space = {"precision": ["fp16", "bf16"], "graph_optimization": ["basic", "disable"], "threads": [1, 2]}
    table = {("precision", "fp16"): 2.0, ("graph_optimization", "basic"): 0.5,
             ("graph_optimization", "disable"): 1.1, ("threads", 2): 1.2}
    full_trial, full_calls = scored(table)  # the uninterrupted search, for reference
    full = run_tune(space, full_trial, Reporter("tune"), budget_s=1e6, confirm=False)

    ws = Workspace(tmp_path, "model")
    store = TrialStore(ws, "tunes", "tune", {"space": space})
    assert store.start(resume=True) == []
    trial, calls = scored(table)
    k = 4  # the 5th trial is interrupted (a crash, a cancel)

    def stopping(params, reporter):
        if len(calls) == k:
            raise CancelledError("tune was cancelled")
        return trial(params, reporter)
    with pytest.raises(CancelledError):
        run_tune(space, stopping, Reporter("tune"), budget_s=1e6, confirm=False, on_trial=store.append)
    assert len(store.trials_path.read_text().splitlines()) == k  # each trial stored as it finished

    again = TrialStore(Workspace(tmp_path, "model"), "tunes", "tune", {"space": space})  # a new kernel
    stored = again.start(resume=True)
    assert len(stored) == k and stored[2]["status"] == "error" and stored[2]["score"] is None  # strict JSON
    trial2, calls2 = scored(table)
    res = run_tune(space, trial2, Reporter("tune"), budget_s=1e6, confirm=False, on_trial=again.append,
                   stored=stored)
    assert calls2 == full_calls[k:]  # the k stored trials were not run again
    f, ref = res.to_frame(), full.to_frame()
    assert f["resumed"].tolist() == [True] * k + [False] * (len(ref) - k)
    cols = ["trial", "phase", "precision", "graph_optimization", "threads", "status", "samples_per_s"]
    pd.testing.assert_frame_equal(f[cols], ref[cols])
    assert res.best_params == full.best_params == {"precision": "fp16", "graph_optimization": "disable",
                                                   "threads": 2}
    assert len(again.load()) == len(ref)  # the store now holds the whole search
    # other settings are another store: nothing to resume there
    assert TrialStore(ws, "tunes", "tune", {"space": {"threads": [1, 2]}}).start(resume=True) == []


def test_session_tune_stopped_after_k_trials_resumes_in_a_new_session(tmp_path):
    args = dict(budget_s=60, trial_s=0.05, warmup=1, confirm=False, include=["precision", "graph_optimization"],
                precisions=["fp32", "fp16"])  # ORT's CPU provider has no bf16 kernels: every trial benchmarks
    s = Session(zoo.mlp(), workspace=tmp_path / "ws")
    trials_run = []

    def watch(kind, p):  # run_benchmark reports "warming up" once per benchmark; "trial n:" starts trial n
        if kind == "progress" and p.message == "warming up":
            trials_run.append(p.task)
        if kind == "progress" and p.message.startswith("trial 3:"):
            started["job"].cancel()  # trials 0, 1, 2 have finished
    started = {}
    s.events.subscribe(watch)
    job = started["job"] = s.tune(background=True, **args)
    with pytest.raises(CancelledError):
        job.result(timeout=120)
    assert len(trials_run) == 3 and s.results("tune").empty
    first = [json.loads(line) for line in next((tmp_path / "ws").rglob("trials.jsonl")).read_text().splitlines()]
    assert [t["trial"] for t in first] == [0, 1, 2]

    s2 = Session(zoo.mlp(), workspace=tmp_path / "ws")
    trials_run.clear()
    s2.events.subscribe(lambda kind, p: trials_run.append(p.task)
                        if kind == "progress" and p.message == "warming up" else None)
    res = s2.tune(resume=True, **args)
    f = res.to_frame()
    assert len(f) == 1 + 1 + 4 and len(trials_run) == len(f) - 3  # only the trials not stored ran
    assert f["resumed"].tolist() == [True] * 3 + [False] * 3 and set(f["status"]) == {"ok"}
    # the stored trials are in the result as measured then (a re-run would time differently)
    assert f["samples_per_s"].iloc[:3].tolist() == [t["samples_per_s"] for t in first]
    assert s2.results("tune")["id"].size == 1


def test_a_link_planted_as_the_trial_store_is_neither_read_nor_written(tmp_path):
    from trtlab.analysis.trials import TrialStore
    from trtlab.workspace import Workspace
    ws = Workspace(tmp_path / "ws", "model")
    store = TrialStore(ws, "tunes", "tune", {"space": {}})
    store.folder.mkdir(parents=True)
    outside = tmp_path / "outside.jsonl"
    outside.write_text('{"trial": 0, "phase": "search", "status": "ok", "score": 1e9}\n')
    store.trials_path.symlink_to(outside)
    with pytest.warns(UserWarning, match="symbolic link"):
        assert store.start(resume=True) == []
    trial, calls = scored({})
    with pytest.warns(UserWarning, match="cannot be stored .* memory only"):
        res = run_tune({"threads": [1, 2]}, trial, Reporter("tune"), budget_s=1e6, confirm=False,
                       on_trial=store.append)
    assert len(calls) == 3 and len(res.trials) == 3 and store.unsaved == 3
    assert outside.read_text().count("\n") == 1  # nothing appended outside the workspace
