"""Sweeps: benchmarks over the cartesian product of batch, precision, concurrency and backend options.

Each point is one benchmark (engines come from the caller's build function, i.e. the session cache). Every
finished point is appended to `points.jsonl` in the sweep's folder at once, so an interrupted sweep keeps
its points and a resumed one runs only the rest. The knee (where throughput stops growing with batch) is
found per curve and said in words (TensorRT FAQ 6: batching pays only while the device is not saturated).

Units: `throughput_ips` is inferences (batches) per second over all threads; `samples_per_s` is that times
the batch and is what "throughput" means for sweep objectives and knees.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..model import output_shapes  # noqa: F401  (re-exported for callers of this module)
from ..errors import CancelledError, ConfigError, TrtlabError
from .benchmark import BenchmarkResult, run_benchmark

if TYPE_CHECKING:
    from ..backends.base import Engine
    from ..events import Reporter

KNEE_FRACTION = 0.9
POINT_KEYS = ("precision", "batch", "concurrency", "options")
BuildFn = Callable[[str, int, Mapping[str, Any]], "Engine"]


# ---- CUDA graphs: fixed device buffers --------------------------------------------------------------
def uses_cuda_graph(engine: "Engine") -> bool:
    """True for an ONNX Runtime CUDA engine built with cuda_options={"enable_cuda_graph": "1"}."""
    return bool(getattr(engine, "uses_cuda_graph", False))


def cuda_graph_runner(engine: "Engine", feeds: Mapping[str, np.ndarray], device: str = "cuda") -> Callable[[], Any]:
    """The engine's fixed-device-buffer runner (what ONNX Runtime's CUDA graphs require)."""
    return engine.fixed_buffer_runner(feeds, device)  # type: ignore[attr-defined]


def timing_engine(engine: "Engine", concurrency: int = 1) -> "Engine":
    """The engine to time; a CUDA-graph ORT engine (whose runner binds fixed buffers) must run in one thread."""
    if not uses_cuda_graph(engine):
        return engine
    if concurrency > 1:
        raise ConfigError(f"{engine.name}: an ONNX Runtime session replays one captured CUDA graph, so it cannot "
                          f"run from {concurrency} threads at once; use concurrency 1 with enable_cuda_graph")
    return engine


# ---- concurrent benchmark ------------------------------------------------------------------------
def run_concurrent(engine: "Engine", feeds: Mapping[str, np.ndarray] | None = None, concurrency: int = 1,
                   iterations: int | None = None, duration: float | None = None, warmup: int = 10, seed: int = 0,
                   reporter: "Reporter | None" = None, monitor: Any = None) -> BenchmarkResult:
    """Benchmark with `concurrency` threads, each with its own runner; `iterations` is per thread.

    One thread is exactly run_benchmark(). With c threads each thread calls engine.runner(feeds) itself (the
    per-thread execution context / I/O binding hook), all start together after their warm-up, and
    throughput = all inferences / wall time from the first start to the last end.
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1 thread, got {concurrency}")
    engine = timing_engine(engine, concurrency)
    if concurrency == 1:
        return run_benchmark(engine, feeds, iterations=iterations, duration=duration, warmup=warmup, seed=seed,
                             reporter=reporter, monitor=monitor)
    if iterations is None and duration is None:
        iterations = 100
    if (iterations is not None and iterations <= 0) or (duration is not None and duration <= 0):
        raise ConfigError(f"iterations ({iterations}) and duration ({duration}) must be positive")
    feeds = engine.check_feeds(feeds) if feeds is not None else engine.random_feeds(seed)
    cancel = reporter.cancel if reporter is not None else None
    barrier = threading.Barrier(concurrency + 1)
    stop = threading.Event()
    lat: list[np.ndarray] = [np.empty(0)] * concurrency
    starts: list[np.ndarray] = [np.empty(0)] * concurrency
    errors: list[BaseException] = []
    box: dict[str, float] = {}

    def worker(k: int) -> None:
        try:
            run = engine.runner(feeds)  # per-thread context: created in the thread that uses it
            for _ in range(warmup):
                run()
        except BaseException as exc:
            errors.append(exc)
            stop.set()
        barrier.wait()
        if stop.is_set():
            return
        pc = time.perf_counter
        cap = iterations if iterations is not None else 1 << 20
        la = np.empty(cap)
        st = np.empty(cap)
        deadline = box["t0"] + duration if duration is not None else math.inf
        n = 0
        try:
            while n < cap and not stop.is_set():
                t0 = pc()
                run()
                t1 = pc()
                la[n], st[n] = t1 - t0, t0
                n += 1
                if t1 >= deadline:
                    break
        except BaseException as exc:
            errors.append(exc)
            stop.set()
        lat[k], starts[k] = la[:n], st[:n]

    threads = [threading.Thread(target=worker, args=(k,), name=f"trtlab-bench-{k}", daemon=True)
               for k in range(concurrency)]
    for t in threads:
        t.start()
    if reporter:
        reporter.update(0, iterations or duration, f"warming up {concurrency} threads")
    box["t0"] = time.perf_counter()
    barrier.wait()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(0.25)
        if cancel is not None and cancel.cancelled:
            stop.set()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    if reporter:
        reporter.update(iterations or duration, iterations or duration, "benchmarked")  # raises if cancelled
    all_lat = np.concatenate(lat)
    all_st = np.concatenate(starts)
    order = np.argsort(all_st, kind="stable")
    all_lat, all_st = all_lat[order], all_st[order]
    if not all_lat.size:
        raise ConfigError(f"{engine.name}: no iteration finished in the concurrent benchmark")
    t_first = float(all_st[0])
    t_last = float(np.max(all_st + all_lat))
    util = samples = None
    if monitor is not None:
        util = monitor.summary(t_first, t_last)
        w = monitor.window(t_first, t_last)
        samples = pd.DataFrame(w) if w is not None else None
    batch = next((int(a.shape[0]) for a in feeds.values() if a.ndim), 1)
    return BenchmarkResult(engine=engine.name, batch=batch, latencies_ms=all_lat * 1e3, starts_s=all_st,
                           wall_s=t_last - t_first, warmup=warmup, config=engine.config.to_dict(),
                           device=engine.device, utilization=util, samples=samples,
                           mode=f"concurrent x{concurrency}")


# ---- the sweep specification and its storage ------------------------------------------------------
def _canon(value: Any) -> Any:
    """JSON-stable form of an option value (dicts sorted, tuples as lists)."""
    if isinstance(value, Mapping):
        return {str(k): _canon(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, (list, tuple)) and len(v) == 2 and isinstance(v[0], str) for v in value):
            return {k: _canon(v) for k, v in value}  # a frozen dict from BuildConfig
        return [_canon(v) for v in value]
    return value


def point_key(point: Mapping[str, Any]) -> str:
    """The identity of a sweep point: precision, batch, concurrency and options as canonical JSON."""
    return json.dumps({k: _canon(point[k]) for k in POINT_KEYS}, sort_keys=True)


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep runs: the axes, the per-point benchmark settings and the fixed build arguments."""

    batch: tuple[int, ...] = (1,)
    precision: tuple[str, ...] = ("fp32",)
    concurrency: tuple[int, ...] = (1,)
    options: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    iterations: int | None = None
    duration: float | None = None
    warmup: int = 10
    seed: int = 0
    build: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def make(cls, batch: Iterable[int] | int = (1,), precision: Iterable[str] | str = ("fp32",),
             concurrency: Iterable[int] | int = (1,), options: Mapping[str, Iterable[Any]] | None = None,
             iterations: int | None = None, duration: float | None = None, warmup: int = 10, seed: int = 0,
             build: Mapping[str, Any] | None = None) -> "SweepSpec":
        """Normalise user arguments (scalars become one-element axes) and check them."""
        def axis(v: Any) -> tuple:
            return (v,) if isinstance(v, (int, str)) else tuple(v)
        b, p, c = axis(batch), axis(precision), axis(concurrency)
        if not b or not p or not c:
            raise ConfigError("sweep axes batch, precision and concurrency need at least one value each")
        if any((not isinstance(x, (int, np.integer))) or x < 1 for x in b + c):
            raise ConfigError(f"sweep batch {list(b)} and concurrency {list(c)} must be positive integers")
        opts = []
        for name, values in (options or {}).items():
            vals = tuple(_canon(v) for v in (values if isinstance(values, (list, tuple)) else [values]))
            if not vals:
                raise ConfigError(f"sweep option {name!r} has no values: give a list, e.g. {name}=[...]")
            opts.append((str(name), tuple(_freeze(v) for v in vals)))
        if iterations is None and duration is None:
            iterations = 50
        return cls(tuple(int(x) for x in b), p, tuple(int(x) for x in c), tuple(sorted(opts)), iterations,
                   duration, int(warmup), int(seed), tuple(sorted((k, _freeze(_canon(v))) for k, v in
                                                                  (build or {}).items() if v is not None)))

    def points(self) -> list[dict[str, Any]]:
        """Every point, grouped so points sharing an engine (options, precision, batch) run back to back."""
        names = [n for n, _ in self.options]
        out = []
        for combo in itertools.product(*[v for _, v in self.options]):
            opts = {n: _thaw(v) for n, v in zip(names, combo)}
            for p, b, c in itertools.product(self.precision, self.batch, self.concurrency):
                out.append({"precision": p, "batch": b, "concurrency": c, "options": opts})
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored as spec.json)."""
        return {"batch": list(self.batch), "precision": list(self.precision), "concurrency": list(self.concurrency),
                "options": {n: [_thaw(v) for v in vals] for n, vals in self.options},
                "iterations": self.iterations, "duration": self.duration, "warmup": self.warmup, "seed": self.seed,
                "build": {k: _thaw(v) for k, v in self.build}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SweepSpec":
        """Inverse of to_dict()."""
        return cls.make(d["batch"], d["precision"], d["concurrency"], d.get("options") or {}, d.get("iterations"),
                        d.get("duration"), d.get("warmup", 10), d.get("seed", 0), d.get("build") or {})

    @property
    def id(self) -> str:
        """Stable id: the same spec on the same model resumes into the same folder."""
        return "sweep-" + hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def _freeze(v: Any) -> Any:
    if isinstance(v, Mapping):
        return ("__dict__", tuple(sorted((k, _freeze(x)) for k, x in v.items())))
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def _thaw(v: Any) -> Any:
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "__dict__":
        return {k: _thaw(x) for k, x in v[1]}
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


class SweepStore:
    """A sweep's folder: spec.json and points.jsonl (one JSON line per finished point, appended and fsynced)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @property
    def points_path(self) -> Path:
        """The JSONL file of finished points."""
        return self.folder / "points.jsonl"

    def start(self, spec: SweepSpec, resume: bool) -> None:
        """Write spec.json; without resume, move earlier points aside (kept, never deleted)."""
        from ..workspace import write_json
        self.folder.mkdir(parents=True, exist_ok=True)
        if not resume and self.points_path.exists():
            self.points_path.rename(self.folder / f"points-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.jsonl")
        write_json(self.folder / "spec.json", spec.to_dict())

    def spec(self) -> SweepSpec:
        """The stored spec."""
        try:
            return SweepSpec.from_dict(json.loads((self.folder / "spec.json").read_text()))
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise ConfigError(f"no readable sweep spec in {self.folder} ({exc}): start the sweep again") from None

    def load(self) -> list[dict[str, Any]]:
        """Finished point records in order; a torn last line (crash while writing) is ignored."""
        if not self.points_path.exists():
            return []
        out = []
        for line in self.points_path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and all(k in rec for k in POINT_KEYS):
                out.append(rec)
        return out

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one point record durably."""
        from ..workspace import _default
        line = json.dumps(record, default=_default, allow_nan=True)
        torn = False
        if self.points_path.exists() and self.points_path.stat().st_size:
            with open(self.points_path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                torn = fh.read(1) != b"\n"  # a crash mid-line: start a fresh line so this one stays whole
        with open(self.points_path, "a", encoding="utf-8") as fh:
            fh.write(("\n" if torn else "") + line + "\n")
            fh.flush()
            os.fsync(fh.fileno())


# ---- running ----------------------------------------------------------------------------------------
def point_record(point: Mapping[str, Any], result: BenchmarkResult, build_s: float) -> dict[str, Any]:
    """The stored form of one finished point: its identity and the benchmark's headline figures."""
    s = result.summary()
    util = result.utilization or {}
    rec = {**{k: _canon(point[k]) for k in POINT_KEYS}, "status": "ok", "error": None,
           "engine": result.engine, "device": result.device, "iterations": result.iterations,
           "warmup": result.warmup, "wall_s": result.wall_s, "throughput_ips": result.throughput,
           "samples_per_s": result.throughput * int(point["batch"]), "build_s": build_s,
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
                from ..events import Reporter
                sub = Reporter(f"{reporter.task}: {describe_point(point)}", reporter.bus, None, reporter.cancel)
                res = run_concurrent(engine, None, point["concurrency"], spec.iterations, spec.duration,
                                     spec.warmup, spec.seed, sub, monitor)
                rec = point_record(point, res, build_s)
                rec["engine_key"] = engine.config.key
            except CancelledError:
                raise
            except TrtlabError as exc:
                rec = {**{k: _canon(point[k]) for k in POINT_KEYS}, "status": "error",
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
    records = _latest(store.load(), points)
    result = SweepResult(records, spec, store.folder, ran=ran, stopped=stopped)
    reporter.write("info", f"sweep {spec.id}: ran {ran} points; {result.describe()}", "sweep")
    return result


def _latest(records: Sequence[dict[str, Any]], points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per point of the spec (the last written, preferring ok), in the spec's order."""
    by_key: dict[str, dict[str, Any]] = {}
    for r in records:
        k = point_key(r)
        if r.get("status") == "ok" or by_key.get(k, {}).get("status") != "ok":
            by_key[k] = r
    return [by_key[point_key(p)] for p in points if point_key(p) in by_key]


def describe_point(point: Mapping[str, Any]) -> str:
    """'fp16 batch 8 x2 threads graph_optimization=basic'."""
    opts = " ".join(f"{k}={v}" for k, v in (point.get("options") or {}).items())
    c = int(point["concurrency"])
    return f"{point['precision']} batch {point['batch']}" + (f" x{c} threads" if c > 1 else "") + (
        f" {opts}" if opts else "")


# ---- knee ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Knee:
    """Where a throughput-vs-batch curve stops growing.

    Definition: the smallest batch whose throughput reaches `fraction` (0.9) of the curve's best. When that is
    the largest batch swept, throughput was still growing (`saturated` False): the device was not full yet.
    `last_gain` is the relative gain of the last step to the largest batch (0.05 = +5%).
    """

    batch: int | None
    throughput: float
    best_batch: int | None
    best_throughput: float
    max_batch: int | None
    saturated: bool
    last_gain: float
    fraction: float = KNEE_FRACTION


def find_knee(batch: Sequence[float], throughput: Sequence[float], fraction: float = KNEE_FRACTION) -> Knee:
    """The knee of one curve (NaN points ignored); see Knee for the definition."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"knee fraction must be in (0, 1], got {fraction}")
    b = np.asarray(batch, dtype=float)
    t = np.asarray(throughput, dtype=float)
    ok = ~np.isnan(t) & ~np.isnan(b)
    b, t = b[ok], t[ok]
    if not b.size:
        return Knee(None, math.nan, None, math.nan, None, False, math.nan, fraction)
    order = np.argsort(b, kind="stable")
    b, t = b[order], t[order]
    ib = int(np.argmax(t))
    k = int(np.argmax(t >= fraction * t[ib]))
    gain = float(t[-1] / t[-2] - 1) if b.size > 1 and t[-2] > 0 else math.nan
    saturated = bool(b.size > 1 and k < b.size - 1)
    return Knee(int(b[k]), float(t[k]), int(b[ib]), float(t[ib]), int(b[-1]), saturated, gain, fraction)


def knee_sentence(knee: Knee, label: str = "", util_pct: float = math.nan, util_source: str | None = None) -> str:
    """The knee in words, citing TensorRT FAQ 6 (batching) and 4 (utilization)."""
    who = f"{label}: " if label else ""
    if knee.batch is None:
        return f"{who}no successful points, so no knee"
    if math.isnan(knee.last_gain):
        return f"{who}only batch {knee.batch} was swept: sweep several batch sizes to find the knee"
    if not knee.saturated:
        s = (f"{who}throughput is still growing at the largest batch {knee.max_batch} "
             f"({knee.throughput:,.0f} samples/s, +{knee.last_gain * 100:.0f}% over the previous batch): the device "
             f"is not saturated yet, so larger batches would still pay (TensorRT FAQ 6)")
    else:
        s = (f"{who}throughput stops growing after batch {knee.batch} ({knee.throughput:,.0f} samples/s, "
             f"{knee.throughput / knee.best_throughput * 100:.0f}% of the best {knee.best_throughput:,.0f} at batch "
             f"{knee.best_batch}): the device is saturated, so larger batches add latency, not throughput "
             f"(TensorRT FAQ 6)")
    if not math.isnan(util_pct):
        what = "GPU" if util_source == "gpu" else "CPU"
        s += f"; mean {what} utilization at the knee {util_pct:.0f}%"
        if util_source == "gpu" and util_pct < 60:
            s += " — low: the GPU is starved by small batches or host-side work (TensorRT FAQ 4)"
    return s


# ---- the result -------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """The points of a sweep (one record each), with tables, the best point, knees and a plot."""

    records: list[dict[str, Any]]
    spec: SweepSpec
    path: Path | None = None
    ran: int = 0
    stopped: str | None = None
    _frame: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        """The sweep id (folder name in the workspace)."""
        return self.spec.id

    @property
    def complete(self) -> bool:
        """True when every point of the spec has a successful record."""
        ok = {point_key(r) for r in self.records if r.get("status") == "ok"}
        return all(point_key(p) in ok for p in self.spec.points())

    @property
    def missing(self) -> list[dict[str, Any]]:
        """Points of the spec without a successful record (what resume would run)."""
        ok = {point_key(r) for r in self.records if r.get("status") == "ok"}
        return [p for p in self.spec.points() if point_key(p) not in ok]

    @property
    def option_names(self) -> list[str]:
        """Names of the swept backend options (one column each in to_frame())."""
        return [n for n, _ in self.spec.options]

    def to_frame(self, errors: bool = True) -> pd.DataFrame:
        """One row per point: the axes, throughput, latency percentiles, utilization, status."""
        rows = []
        for r in self.records:
            if not errors and r.get("status") != "ok":
                continue
            row = {k: v for k, v in r.items() if k != "options"}
            for n in self.option_names:
                v = (r.get("options") or {}).get(n)
                row[n] = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
            rows.append(row)
        front = ["precision", "batch", "concurrency", *self.option_names, "status", "throughput_ips",
                 "samples_per_s", "latency_median_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
                 "latency_mean_ms", "latency_min_ms", "latency_max_ms", "util_mean_pct", "util_peak_pct",
                 "util_samples", "util_source", "iterations", "wall_s", "build_s", "device", "engine", "error"]
        f = pd.DataFrame(rows)
        for c in front:
            if c not in f:
                f[c] = np.nan if c not in ("status", "error", "device", "engine", "util_source") else None
        rest = [c for c in f.columns if c not in front]
        f = f[front + rest]
        f.insert(3 + len(self.option_names), "curve", [self._curve_label(r) for r in f.to_dict("records")])
        return f.reset_index(drop=True)

    def _curve_label(self, row: Mapping[str, Any]) -> str:
        parts = [str(row["precision"])]
        if len(self.spec.concurrency) > 1 or int(row["concurrency"]) > 1:
            parts.append(f"x{int(row['concurrency'])}")
        parts += [f"{n}={row[n]}" for n in self.option_names if len(dict(self.spec.options)[n]) > 1]
        return " ".join(parts)

    def best(self, objective: str = "throughput", latency_budget_ms: float | None = None,
             percentile: str = "p99") -> pd.Series:
        """The best point: max samples/s (objective "throughput") or min median latency ("latency"),
        among points whose `percentile` latency is within `latency_budget_ms` when given."""
        if objective not in ("throughput", "latency"):
            raise ConfigError(f"objective must be 'throughput' or 'latency', got {objective!r}")
        f = self.to_frame(errors=False)
        if f.empty:
            raise ConfigError(f"sweep {self.id} has no successful points: see to_frame()['error']")
        col = f"latency_{percentile}_ms" if percentile != "median" else "latency_median_ms"
        if col not in f:
            raise ConfigError(f"unknown latency percentile {percentile!r}: use median, p90, p95 or p99")
        if latency_budget_ms is not None:
            within = f[f[col] <= latency_budget_ms]
            if within.empty:
                raise ConfigError(f"no sweep point has {percentile} latency within {latency_budget_ms} ms (the "
                                  f"fastest has {f[col].min():.3f} ms): raise the budget or sweep smaller batches")
            f = within
        i = f["samples_per_s"].idxmax() if objective == "throughput" else f["latency_median_ms"].idxmin()
        return f.loc[i]

    def knees(self, fraction: float = KNEE_FRACTION) -> pd.DataFrame:
        """One row per curve (precision, concurrency, options): the knee batch, its throughput, the best,
        whether the device saturated, utilization at the knee, and the sentence."""
        f = self.to_frame(errors=False)
        rows = []
        keys = ["precision", "concurrency", *self.option_names]
        if f.empty:
            return pd.DataFrame(columns=[*keys, "curve", "knee_batch", "sentence"])
        for _, part in f.groupby(keys, sort=False, dropna=False):
            k = find_knee(part["batch"], part["samples_per_s"], fraction)
            at = part[part["batch"] == k.batch]
            util = float(at["util_mean_pct"].iloc[0]) if len(at) else math.nan
            src = at["util_source"].iloc[0] if len(at) else None
            label = part["curve"].iloc[0]
            rows.append({**{c: part[c].iloc[0] for c in keys}, "curve": label, "knee_batch": k.batch,
                         "knee_samples_per_s": k.throughput, "best_batch": k.best_batch,
                         "best_samples_per_s": k.best_throughput, "max_batch": k.max_batch, "saturated": k.saturated,
                         "last_gain": k.last_gain, "knee_util_mean_pct": util,
                         "sentence": knee_sentence(k, label, util, src)})
        return pd.DataFrame(rows)

    def knee(self, precision: str | None = None, concurrency: int | None = None) -> Knee:
        """The knee of one curve (the first curve when there is only one)."""
        f = self.to_frame(errors=False)
        if precision is not None:
            f = f[f["precision"] == precision]
        if concurrency is not None:
            f = f[f["concurrency"] == concurrency]
        curves = f["curve"].unique()
        if len(curves) != 1:
            raise ConfigError(f"{len(curves)} curves match ({list(curves)}): pass precision= and concurrency= "
                              f"(and see knees() for every curve)")
        return find_knee(f["batch"], f["samples_per_s"])

    def describe(self) -> str:
        """The result in words: one sentence per curve, then what is missing."""
        lines = list(self.knees()["sentence"]) if self.records else []
        errs = [r for r in self.records if r.get("status") != "ok"]
        if errs:
            lines.append(f"{len(errs)} point(s) failed, e.g. {describe_point(errs[0])}: {errs[0].get('error')}")
        notrun = len(self.missing) - len(errs)
        if notrun > 0:
            lines.append(f"{notrun} of {len(self.spec.points())} points not run yet"
                         + (f" ({self.stopped})" if self.stopped else "") + ": call sweep again with resume=True")
        return "\n".join(lines) if lines else "empty sweep"

    def plot(self, y: str = "samples_per_s", latency: str | None = "latency_p99_ms"):
        """Throughput and latency against batch, one line per curve, the knee marked (plotly Figure)."""
        from ..plots import throughput_vs_batch
        f = self.to_frame(errors=False)
        return throughput_vs_batch(f, x="batch", y=y, color="curve", latency=latency,
                                   title=f"Sweep {self.id}: throughput vs batch (knee = {KNEE_FRACTION:.0%} of best)")

    def to_markdown(self, columns: Sequence[str] | None = None) -> str:
        """A compact markdown table of the points (for reports)."""
        cols = list(columns or ["precision", "batch", "concurrency", *self.option_names, "samples_per_s",
                                "latency_median_ms", "latency_p99_ms", "util_mean_pct", "util_peak_pct", "status"])
        f = self.to_frame()[cols]
        return _markdown(f)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (stored as the workspace result "sweep")."""
        return {"kind": "sweep", "sweep_id": self.id, "spec": self.spec.to_dict(), "points": len(self.records),
                "complete": self.complete, "stopped": self.stopped, "ran": self.ran, "describe": self.describe(),
                "path": str(self.path) if self.path else None}

    def __repr__(self) -> str:
        return (f"<SweepResult {self.id}: {len(self.records)}/{len(self.spec.points())} points"
                f"{'' if self.complete else ' (incomplete)'}>")

    def _repr_html_(self) -> str:
        from html import escape
        return (f"<b>Sweep</b> {escape(self.id)}<pre>{escape(self.describe())}</pre>"
                + self.to_frame(errors=True).head(200).to_html(index=False, float_format=lambda v: f"{v:.4g}"))


def load_sweep(folder: str | Path) -> SweepResult:
    """Read a sweep back from its folder (finished points only; missing shows what resume would run)."""
    store = SweepStore(folder)
    spec = store.spec()
    return SweepResult(_latest(store.load(), spec.points()), spec, store.folder)


def _markdown(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table without needing `tabulate`."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.4g}"
        return "" if v is None else str(v).replace("|", "\\|")
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    sep = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, sep, *body])
