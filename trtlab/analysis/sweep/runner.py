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


def run_sweep(spec: SweepSpec, build: BuildFn, store: SweepStore, reporter: "Reporter", resume: bool = False,
              monitor: Any = None, budget_s: float | None = None, release: Callable[["Engine"], None] | None = None,
              on_point: Callable[[dict[str, Any]], None] | None = None) -> "SweepResult":
    """Run the points of `spec` not yet in `store` (when resuming), appending each as it finishes.

    `build(precision, batch, options)` returns the engine (cached by the caller). A point whose build or run
    raises a TrtlabError is recorded with status "error" and the sweep goes on (resume retries it). Cancel
    (reporter) stops before the next point; `budget_s` stops starting new points after that many seconds;
    `release(engine)` is called when the sweep has finished with an engine.
    """
    store.start(spec, resume)
    done = {point_key(r) for r in store.load() if r.get("status") == "ok"} if resume else set()
    points = spec.points()
    todo = [p for p in points if point_key(p) not in done]
    t_start = time.perf_counter()
    reporter.write("info", f"sweep {spec.id}: {len(points)} points, {len(points) - len(todo)} already done, "
                           f"{len(todo)} to run", "sweep")
    ran = 0
    stopped = None
    engine = None
    engine_id: tuple | None = None
    try:
        for i, point in enumerate(todo):
            reporter.update(i, len(todo), f"point {i + 1}/{len(todo)}: {describe_point(point)}")
            if budget_s is not None and time.perf_counter() - t_start > budget_s:
                stopped = f"time budget of {budget_s:g} s spent with {len(todo) - i} points left"
                reporter.write("warning", f"sweep {spec.id}: {stopped}; resume=True runs the rest", "sweep")
                break
            eid = (point["precision"], point["batch"], json.dumps(point["options"], sort_keys=True, default=str))
            if eid != engine_id and engine is not None and release is not None:
                release(engine)
            t0 = time.perf_counter()
            try:
                if eid != engine_id:
                    engine, engine_id = None, None
                    engine = build(point["precision"], point["batch"], point["options"])
                    engine_id = eid
                build_s = time.perf_counter() - t0
                sub = reporter.child(f"{reporter.task}: {describe_point(point)}")
                res = run_concurrent(engine, None, point["concurrency"], spec.iterations, spec.duration,
                                     spec.warmup, spec.seed, sub, monitor)
                rec = point_record(point, res, build_s)
                rec["engine_key"] = engine.config.key
                mix = engine.measured_precision  # what its layers compute in, where the backend measured it
                rec["effective_precision"] = mix.summary if mix is not None else None
                rec["named_precision_share"] = mix.share if mix is not None else None
            except CancelledError:
                raise
            except TrtlabError as exc:
                rec = {**{k: canonical(point[k]) for k in POINT_KEYS}, "status": "error",
                       "error": f"{type(exc).__name__}: {exc}", "finished": time.time()}
                reporter.write("warning", f"sweep point {describe_point(point)} failed: {exc}", "sweep")
            store.append(rec)
            ran += 1
            if on_point is not None:
                on_point(rec)
        else:
            reporter.update(len(todo), len(todo), "sweep finished")
    finally:
        if engine is not None and release is not None:
            release(engine)
    records = latest_records(store.load(), points)
    result = SweepResult(records, spec, store.folder, ran=ran, stopped=stopped)
    reporter.write("info", f"sweep {spec.id}: ran {ran} points; {result.describe()}", "sweep")
    return result
