"""Running a sweep: each point one benchmark on an engine from the caller's build function, stored as it finishes."""
from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from ...errors import CancelledError, TrtlabError
from ..benchmark import BenchmarkResult, run_concurrent
from .result import SweepResult
from .spec import POINT_KEYS, SweepSpec, canonical, describe_point, point_key
from .store import SweepStore, latest_records

if TYPE_CHECKING:
    from ...backends.base import Engine
    from ...events import Reporter

BuildFn = Callable[[str, int, Mapping[str, Any]], "Engine"]


def point_record(point: Mapping[str, Any], result: BenchmarkResult, build_s: float) -> dict[str, Any]:
    """The stored form of one finished point: its identity and the benchmark's headline figures."""
    s = result.summary()
    util = result.utilization or {}
    rec = {**{k: canonical(point[k]) for k in POINT_KEYS}, "status": "ok", "error": None,
           "engine": result.engine, "device": result.device, "iterations": result.iterations,
           "warmup": result.warmup, "wall_s": result.wall_s, "throughput_ips": result.throughput,
           "samples_per_s": result.samples_per_s, "build_s": build_s,  # samples: the batch fed (axis 0)
           "mode": result.mode, "finished": time.time(),
           # perf_counter bounds of the timed iterations: the window the utilization summarises
           "t_start": float(result.starts_s[0]),
           "t_end": float(np.max(result.starts_s + result.latencies_ms / 1e3))}
    rec.update({k: v for k, v in s.items() if k.startswith(("latency_", "device_")) and k.endswith("_ms")})
    rec["util_source"] = util.get("device")
    rec["util_samples"] = util.get("samples", 0)
    rec["util_mean_pct"] = util.get("util_mean_pct", math.nan)
    rec["util_peak_pct"] = util.get("util_peak_pct", math.nan)
    rec["memory_used_peak_mib"] = util.get("memory_used_peak_mib", math.nan)
    return rec


class EngineReuse:
    """Engines for consecutive points: one build serves every point that shares (precision, batch, options),
    and `release(engine)` is called once the points are done with it (or at close())."""

    def __init__(self, build: BuildFn, release: Callable[["Engine"], None] | None = None) -> None:
        self._build, self._release = build, release
        self._engine: "Engine | None" = None
        self._id: tuple | None = None

    def __call__(self, point: Mapping[str, Any]) -> "Engine":
        eid = (point["precision"], point["batch"], json.dumps(point["options"], sort_keys=True, default=str))
        if eid != self._id:
            self.close()
            self._engine = self._build(point["precision"], point["batch"], point["options"])
            self._id = eid
        return self._engine

    def close(self) -> None:
        """Release the engine held (if any)."""
        if self._engine is not None and self._release is not None:
            self._release(self._engine)
        self._engine, self._id = None, None


def error_record(point: Mapping[str, Any], exc: BaseException | str) -> dict[str, Any]:
    """The stored form of a point that failed deterministically (resume skips it unless retry_failed)."""
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return {**{k: canonical(point[k]) for k in POINT_KEYS}, "status": "error", "error": text,
            "finished": time.time()}


def measure_point(point: Mapping[str, Any], spec: SweepSpec, engine_for: Callable[[Mapping[str, Any]], "Engine"],
                  reporter: "Reporter", monitor: Any = None) -> dict[str, Any]:
    """Build (through `engine_for`) and benchmark one point: its record, or its error record when the build or
    run raises a TrtlabError. The one per-point function, whichever executor runs it (in this process, or in a
    Ray worker that built its own session); the record says where it ran (host, device type, driver, versions)."""
    from ...devices import host_identity
    from ...version import __version__
    t0 = time.perf_counter()
    try:
        engine = engine_for(point)
        build_s = time.perf_counter() - t0
        sub = reporter.child(f"{reporter.task}: {describe_point(point)}")
        res = run_concurrent(engine, None, point["concurrency"], spec.iterations, spec.duration,
                             spec.warmup, spec.seed, sub, monitor)
        rec = point_record(point, res, build_s)
        rec["engine_key"] = engine.config.key
        mix = engine.measured_precision  # what its layers compute in, where the backend measured it
        rec["effective_precision"] = mix.summary if mix is not None else None
        rec["named_precision_share"] = mix.share if mix is not None else None
        rec.update(host_identity(engine.device))
        rec["versions"] = {"trtlab": __version__, **dict(engine.metadata.get("versions") or {})}
    except CancelledError:
        raise
    except TrtlabError as exc:
        rec = error_record(point, exc)
        reporter.write("warning", f"sweep point {describe_point(point)} failed: {exc}", "sweep")
    return rec


def run_sweep(spec: SweepSpec, build: BuildFn | None, store: SweepStore, reporter: "Reporter", resume: bool = False,
              monitor: Any = None, budget_s: float | None = None, release: Callable[["Engine"], None] | None = None,
              on_point: Callable[[dict[str, Any]], None] | None = None, executor: Any = None,
              measure: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
              resources: Callable[[dict[str, Any]], Mapping[str, int]] | None = None,
              retry_failed: bool = False) -> "SweepResult":
    """Run the points of `spec` not yet in `store` (when resuming), appending each as it finishes.

    In this process (no `executor`, or the inline one) `build(precision, batch, options)` returns the engine
    (cached by the caller) and each point is `measure_point` on it. With another executor (Ray), `measure(point)`
    is the picklable per-point function that runs `measure_point` where it is placed, and `resources(point)` what
    it reserves there. Either way the records come back here and are appended by this process alone.

    A point whose build or run raises a TrtlabError is recorded with status "error"; resume skips it unless
    `retry_failed`. A point whose worker died is not recorded (resume runs it). Cancel (reporter) stops before
    the next point; `budget_s` stops starting new points after that many seconds; `release(engine)` is called
    when the sweep has finished with an engine.
    """
    from ..executors import InlineExecutor, Lost
    executor = executor if executor is not None else InlineExecutor()
    store.start(spec, resume)
    kept = ("ok",) if retry_failed else ("ok", "error")
    done = {point_key(r) for r in store.load() if r.get("status") in kept} if resume else set()
    points = spec.points()
    todo = [p for p in points if point_key(p) not in done]
    t_start = time.perf_counter()
    reporter.write("info", f"sweep {spec.id}: {len(points)} points, {len(points) - len(todo)} already done, "
                           f"{len(todo)} to run" + ("" if executor.name == "inline" else f" on {executor.name}"),
                   "sweep")
    ran = 0
    lost: list[str] = []
    stopped = None
    engines = EngineReuse(build, release) if build is not None else None
    if measure is None:
        if engines is None:
            raise TypeError("run_sweep needs build= (in this process) or measure= (another executor)")

        def measure(point: dict[str, Any]) -> dict[str, Any]:
            return measure_point(point, spec, engines, reporter, monitor)

    def feed():
        nonlocal stopped
        for i, point in enumerate(todo):
            reporter.update(i, len(todo), f"point {i + 1}/{len(todo)}: {describe_point(point)}")
            if budget_s is not None and time.perf_counter() - t_start > budget_s:
                stopped = f"time budget of {budget_s:g} s spent with {len(todo) - i} points left"
                reporter.write("warning", f"sweep {spec.id}: {stopped}; resume=True runs the rest", "sweep")
                return
            yield point
    try:
        for point, rec in executor.map(measure, feed(), resources, lambda: reporter.cancel.check(reporter.task)):
            if isinstance(rec, Lost):
                lost.append(describe_point(point))
                reporter.write("warning", f"sweep point {describe_point(point)} was lost with its worker "
                                          f"({rec.error}); resume=True runs it again", "sweep")
                continue
            store.append(rec)
            ran += 1
            if on_point is not None:
                on_point(rec)
        if stopped is None:
            reporter.update(len(todo), len(todo), "sweep finished")
    finally:
        if engines is not None:
            engines.close()
    if lost:
        note = f"{len(lost)} point(s) lost with their worker ({', '.join(lost[:3])})"
        stopped = f"{stopped}; {note}" if stopped else note
    records = latest_records(store.load(), points)
    result = SweepResult(records, spec, store.folder, ran=ran, stopped=stopped)
    reporter.write("info", f"sweep {spec.id}: ran {ran} points; {result.describe()}", "sweep")
    return result
