"""Jobs: a bounded per-session executor, a unique id on every event a job causes, cancel before start."""
from __future__ import annotations

import re
import threading
import time

import pytest

import trtlab
from trtlab.errors import CancelledError, ConfigError
from trtlab.events import Progress

from conftest import wait_for


def blocker(session):
    """A job that holds one worker until the returned event is set."""
    release = threading.Event()
    job = session.submit("blocker", lambda rep: release.wait(60))
    wait_for(lambda: job.status == "running", "the blocker to start")
    return job, release


def test_two_benchmarks_with_one_task_name_get_their_own_ids_progress_and_logs(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace, max_jobs=2)
    small, large = s.build(batch=1), s.build(batch=3)
    events = []
    s.events.subscribe(lambda kind, payload: events.append((kind, payload)))
    a = s.benchmark(small, iterations=30, warmup=9, background=True)
    b = s.benchmark(large, iterations=40, warmup=9, background=True)
    ra, rb = a.result(timeout=60), b.result(timeout=60)
    assert a.task == b.task == "benchmark"
    assert a.id != b.id and re.fullmatch(r"job-\d+", a.id) and re.fullmatch(r"job-\d+", b.id)
    progress = [p for k, p in events if k == "progress"]
    # every progress event names its job, and each job's events carry that job's own total (its iterations)
    assert {p.job for p in progress} == {a.id, b.id}
    assert {p.total for p in progress if p.job == a.id} == {30}
    assert {p.total for p in progress if p.job == b.id} == {40}
    logs = [r for k, r in events if k == "log" and r.source == "benchmark"]
    assert [r.job for r in logs if small.name + ":" in r.message] == [a.id]
    assert [r.job for r in logs if large.name + ":" in r.message] == [b.id]
    assert ra.batch == 1 and rb.batch == 3
    frame = s.log.to_frame()
    assert set(frame.loc[frame["source"] == "benchmark", "job"]) == {a.id, b.id}


def test_work_started_inside_a_job_belongs_to_it_and_stops_with_it(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace)
    events = []
    s.events.subscribe(lambda kind, payload: events.append((kind, payload)))
    job = s.submit("outer", lambda rep: s.build(batch=2))  # a foreground build inside a job (as tune does)
    job.result(timeout=60)
    inner = [p for k, p in events if k == "progress" and p.task.startswith("build")]
    assert inner and {p.job for p in inner} == {job.id}
    assert {r.job for k, r in events if k == "log" and r.source == "onnxruntime"} == {job.id}
    # a foreground call outside any job gets an id of its own
    events.clear()
    s.build(batch=4)
    ids = {p.job for k, p in events if k == "progress"}
    assert len(ids) == 1 and job.id not in ids and None not in ids

    started = threading.Event()

    def outer(rep):
        started.set()
        time.sleep(0.5)
        return s.benchmark(s.engine({"batch": 2}), duration=30.0)
    job = s.submit("outer", outer)
    started.wait(10)
    job.cancel()  # the benchmark the job starts shares its cancel token: it stops instead of running 30 s
    with pytest.raises(CancelledError):  # a benchmark that ignored the token would finish and return a result
        job.result(timeout=60)


def test_executor_never_runs_more_than_max_jobs(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace, max_jobs=2)
    eng = s.build(batch=1)
    feeds = eng.random_feeds(0)
    lock = threading.Lock()
    go = threading.Event()
    active, peak, ran = [0], [0], []

    def work(i):
        def fn(rep):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            try:
                go.wait(30)
                for _ in range(20):  # real inference work
                    eng.run(feeds)
                ran.append(i)
            finally:
                with lock:
                    active[0] -= 1
        return fn
    jobs = [s.submit("work", work(i)) for i in range(6)]
    wait_for(lambda: active[0] == 2, "two jobs to start")
    time.sleep(0.3)  # time for any further job to (wrongly) start
    assert [j.status for j in jobs].count("running") == 2 and [j.status for j in jobs].count("queued") == 4
    go.set()
    for j in jobs:
        j.result(timeout=60)
    assert peak[0] == 2 and sorted(ran) == list(range(6))
    assert [j.status for j in jobs] == ["done"] * 6
    with pytest.raises(ConfigError, match="max_jobs must be a positive number"):
        trtlab.Session(tiny_model, workspace=workspace, max_jobs=0)


def test_cancelling_a_queued_job_never_runs_it(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace, max_jobs=1)
    first, release = blocker(s)
    ran = []
    queued = s.submit("queued work", lambda rep: ran.append("queued"))
    after = s.submit("later work", lambda rep: ran.append("later"))
    seen = []
    queued.add_done_callback(lambda j: seen.append(j.status))
    assert queued.status == "queued" and not queued.started and not queued.done
    queued.cancel()
    assert queued.done and queued.status == "cancelled" and seen == ["cancelled"]
    with pytest.raises(CancelledError, match="queued work was cancelled before it started"):
        queued.result(timeout=1)
    release.set()
    first.result(timeout=10)
    after.result(timeout=10)
    time.sleep(0.1)
    assert ran == ["later"] and not queued.started


def test_cancel_all_drops_queued_background_builds(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace, max_jobs=1)
    first, release = blocker(s)
    builds = [s.build(batch=b, background=True) for b in (2, 3)]
    assert [j.status for j in builds] == ["queued", "queued"]
    s.cancel_all()
    release.set()
    for j in builds:
        with pytest.raises(CancelledError, match="before it started"):
            j.result(timeout=10)
    assert s.workspace.list_engines() == []  # neither build ran


def test_build_tab_follows_its_own_job_not_another_with_the_same_task(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace, max_jobs=1)
    first, release = blocker(s)
    panel = s.panel(monitor=False)
    try:
        tab = panel.build
        tab.batch.value = "2"
        tab.build_button.click()
        job = tab.job
        assert job.status == "queued" and "queued" in tab.status.value
        # another job with the same task name (the same build started from the notebook) reports progress
        s.events.emit("progress", Progress(job.task, 9, 10, "someone else's build", job="job-0"))
        assert tab.progress.value == 0 and "someone else" not in tab.status.value
        s.events.emit("progress", Progress(job.task, 1, 4, "this build", job=job.id))
        assert tab.progress.value == pytest.approx(0.25) and "this build" in tab.status.value
        release.set()
        wait_for(lambda: job.done and not tab.build_button.disabled, "the build to finish")
        assert job.status == "done" and tab.engine is job.result()
    finally:
        release.set()
        panel.close()


def test_a_job_that_waits_for_a_job_it_started_finishes_with_one_worker(tiny_model, workspace):
    s = trtlab.Session(tiny_model, workspace=workspace, max_jobs=1)
    eng = s.build(batch=1)

    def outer(rep):  # e.g. a notebook callback that benchmarks in the background and waits for it
        inner = s.benchmark(eng, iterations=5, warmup=1, background=True)
        return inner.result(timeout=60)

    job = s.submit("outer", outer)
    r = job.result(timeout=90)
    assert len(r.latencies_ms) == 5
    assert s._executor.queued == 0
