"""Sweeps and tune on a local Ray cluster (two CPU workers): the same points as in-process, in the same
points.jsonl; a worker killed mid-sweep loses only its point and resume completes the sweep with no loss and no
duplicate; a failed point is recorded once and not retried; tune persists its trials."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import trtlab
import trtlab.zoo as zoo
from trtlab.analysis.sweep import SweepSpec, SweepStore, point_key, run_sweep
from trtlab.events import job_reporter
from trtlab.tuning import PointTask, WorkerModel

from conftest import installed

pytestmark = pytest.mark.ray
AXES = dict(batch=[1, 2], precision=["fp32", "fp16"], iterations=20, warmup=2, monitor=False, threads=1)


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster of 2 CPUs for the module, started the way executor='ray' starts it."""
    ray = installed("ray", "Ray", 'pip install -e ".[ray]"')
    from trtlab.analysis.executors import RayExecutor
    if ray.is_initialized():
        ray.shutdown()
    runner = RayExecutor(address="local", num_cpus=2)  # a new local cluster, whatever else runs on the machine
    yield runner
    ray.shutdown()


def lines(path: Path) -> list[dict]:
    """points.jsonl read independently of trtlab: one JSON object per line."""
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_import_trtlab_and_an_inline_sweep_never_load_ray(tmp_path):
    code = ("import sys, trtlab, trtlab.zoo as zoo\n"
            f"s = trtlab.Session(zoo.mlp(), workspace={str(tmp_path)!r})\n"
            "s.sweep(batch=[1], iterations=3, warmup=1, monitor=False)\n"
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_ray_sweep_gives_the_points_of_the_in_process_sweep(cluster, tmp_path):
    inline = trtlab.Session(zoo.mlp(), workspace=tmp_path / "inline").sweep(**AXES)
    onray = trtlab.Session(zoo.mlp(), workspace=tmp_path / "ray").sweep(**AXES, executor="ray")
    assert onray.id == inline.id and onray.complete and onray.ran == 4
    a, b = lines(inline.path / "points.jsonl"), lines(onray.path / "points.jsonl")
    assert len(a) == len(b) == 4
    by_key = {point_key(r): r for r in a}
    assert set(by_key) == {point_key(r) for r in b}
    for r in b:  # the same configuration per point (timings differ within noise: not compared)
        q = by_key[point_key(r)]
        for k in ("status", "engine_key", "engine", "iterations", "warmup", "device", "device_type",
                  "effective_precision"):
            assert r[k] == q[k], k
        assert r["samples_per_s"] > 0 and r["host"] and r["versions"]["onnxruntime"] and r["driver"] is None
    # each Ray point was measured in a worker process, each in-process point here
    assert all(r["pid"] != os.getpid() for r in b) and all(r["pid"] == os.getpid() for r in a)
    assert onray.mixed_devices_note() is None


def test_a_worker_killed_mid_sweep_loses_only_its_point_and_resume_completes(cluster, tmp_path):
    s = trtlab.Session(zoo.mlp(), workspace=tmp_path / "ws")
    axes = dict(batch=[1, 2, 3, 4], iterations=20, warmup=2)
    spec = SweepSpec.make(axes["batch"], ["fp32"], [1], None, 20, None, 2, 0, {"threads": 1})
    store = SweepStore(s.workspace.sweep_dir(spec.id), root=s.workspace.root)
    task = PointTask(WorkerModel.of(s), spec.to_dict(), {"threads": 1})
    pid_file = tmp_path / "worker.pid"

    def blocking(point):  # batch 3 tells which worker runs it, then waits to be killed
        if point["batch"] == 3:
            Path(pid_file).write_text(str(os.getpid()))
            time.sleep(600)
        return task(point)

    def kill_when_written():
        for _ in range(6000):
            if pid_file.exists() and pid_file.read_text():
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
                return
            time.sleep(0.05)
    killer = threading.Thread(target=kill_when_written, daemon=True)
    killer.start()
    rep = job_reporter("sweep", s.events, s.log)
    first = run_sweep(spec, None, store, rep, executor=cluster, measure=blocking,
                      resources=lambda p: {"num_cpus": 1})
    killer.join(5)
    assert pid_file.read_text() and int(pid_file.read_text()) != os.getpid()
    assert first.ran == 3 and "lost with their worker" in first.stopped
    assert sorted(r["batch"] for r in lines(store.points_path)) == [1, 2, 4]
    assert [p["batch"] for p in first.missing] == [3]

    done = s.sweep(**axes, monitor=False, threads=1, executor="ray", resume=True)
    assert done.id == spec.id and done.ran == 1 and done.complete
    got = lines(store.points_path)
    assert sorted(r["batch"] for r in got) == [1, 2, 3, 4]  # no loss, no duplicate
    assert len({point_key(r) for r in got}) == len(got) == 4
    whole = trtlab.Session(zoo.mlp(), workspace=tmp_path / "whole").sweep(**axes, monitor=False, threads=1)
    want = {point_key(r): r["engine_key"] for r in lines(whole.path / "points.jsonl")}
    assert {point_key(r): r["engine_key"] for r in got} == want


def test_a_failing_point_is_recorded_once_and_not_retried(cluster, tmp_path):
    s = trtlab.Session(zoo.mlp(), workspace=tmp_path / "ws")
    axes = dict(batch=[1], precision=["fp32", "fp8"], iterations=10, warmup=1, monitor=False, threads=1,
                executor="ray")
    sw = s.sweep(**axes)
    assert sorted((r["precision"], r["status"]) for r in lines(sw.path / "points.jsonl")) == [("fp32", "ok"),
                                                                                              ("fp8", "error")]
    assert "FP8" in next(r["error"] for r in lines(sw.path / "points.jsonl") if r["status"] == "error")
    again = s.sweep(**axes, resume=True)
    assert again.ran == 0 and len(lines(sw.path / "points.jsonl")) == 2 and again.missing == []
    retried = s.sweep(**axes, resume=True, retry_failed=True)
    assert retried.ran == 1 and len(lines(sw.path / "points.jsonl")) == 3


def test_tune_on_ray_runs_and_persists_its_trials(cluster, tmp_path):
    s = trtlab.Session(zoo.mlp(), workspace=tmp_path / "ws")
    res = s.tune(budget_s=30, include=["precision"], trial_s=0.05, warmup=1, confirm=False, executor="ray",
                 threads=1)
    stored = [json.loads(x) for x in next((s.workspace.path / "tunes").glob("tune-*/trials.jsonl"))
              .read_text().splitlines()]
    assert len(stored) == len(res.trials) >= 2
    assert [t["precision"] for t in stored] == [t["precision"] for t in res.trials]
    assert stored[0]["status"] == "ok" and stored[0]["samples_per_s"] > 0 and res.default is res.trials[0]
