"""Benchmark: warm-up, then timed iterations or a duration, in one thread or several at once; latency statistics and
a trtexec-style summary."""
from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import pandas as pd

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..backends.base import Engine
    from ..events import Reporter
    from .launch import Launch

PERCENTILES = (90, 95, 99)
# A duration run keeps every latency (buffers grow as it goes: 25 s of 10 us runs is 2.5 M entries, 40 MB with their
# start times). It stops early only at MAX_ITERATIONS per thread, and the result and the log then say so.
MAX_ITERATIONS = 1 << 23
BUFFER_START = 1 << 14  # first size of the latency buffers, doubled whenever full


def latency_stats(latencies_ms: np.ndarray) -> dict[str, float]:
    """min, mean, median, p90, p95, p99, max and std of latencies in ms."""
    a = np.asarray(latencies_ms, dtype=np.float64)
    if a.size == 0:
        raise ConfigError("no latencies to summarise: run at least one iteration")
    out = {"min": float(a.min()), "mean": float(a.mean()), "median": float(np.median(a))}
    out.update({f"p{p}": float(np.percentile(a, p)) for p in PERCENTILES})
    out.update({"max": float(a.max()), "std": float(a.std())})
    return out


@dataclass
class BenchmarkResult:
    """Latencies of one benchmark run, with statistics, throughput and optional device times and utilization."""

    engine: str
    batch: int
    latencies_ms: np.ndarray
    starts_s: np.ndarray
    wall_s: float
    warmup: int = 0
    device_ms: np.ndarray | None = None
    config: dict[str, Any] = field(default_factory=dict)
    device: str = "CPU"
    utilization: dict[str, Any] | None = None
    samples: pd.DataFrame | None = None
    mode: str = "sync"
    stopped: str | None = None  # why a duration run ended before its duration (MAX_ITERATIONS), else None
    launch: dict[str, Any] | None = None  # TensorRT engines: launch.Launch.to_dict(), the rules that applied
    profile: Any = None  # the LayerProfile of the separate profiling run (profile=True), else None
    # when the engine does not mostly compute in its named precision (measured at build): what it computes in
    precision_note: str | None = None

    @property
    def iterations(self) -> int:
        """Number of timed iterations."""
        return int(self.latencies_ms.size)

    @property
    def stats(self) -> dict[str, float]:
        """Host latency statistics in ms."""
        return latency_stats(self.latencies_ms)

    @property
    def device_stats(self) -> dict[str, float] | None:
        """Device (GPU compute) time statistics in ms, when measured."""
        return None if self.device_ms is None or not len(self.device_ms) else latency_stats(self.device_ms)

    @property
    def throughput(self) -> float:
        """Inferences per second over the timed loop (trtexec's qps)."""
        return self.iterations / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def samples_per_s(self) -> float:
        """Samples (batch items) per second."""
        return self.throughput * self.batch

    def to_frame(self) -> pd.DataFrame:
        """One row per iteration: iteration, start_s (from the first), latency_ms, device_ms."""
        f = pd.DataFrame({"iteration": np.arange(self.iterations),
                          "start_s": self.starts_s - (self.starts_s[0] if self.iterations else 0.0),
                          "latency_ms": self.latencies_ms})
        if self.device_ms is not None:
            f["device_ms"] = self.device_ms
        return f

    def summary(self) -> dict[str, Any]:
        """Flat dict of the headline figures (what sweeps and reports tabulate)."""
        s = {"engine": self.engine, "device": self.device, "batch": self.batch, "iterations": self.iterations,
             "throughput_ips": self.throughput, "samples_per_s": self.samples_per_s,
             **{f"latency_{k}_ms": v for k, v in self.stats.items()}}
        if self.device_stats:
            s.update({f"device_{k}_ms": v for k, v in self.device_stats.items()})
        if self.utilization:
            s.update({(k if k.startswith("util_") else f"util_{k}"): v for k, v in self.utilization.items()
                      if isinstance(v, (int, float))})
        return s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the workspace stores)."""
        return {"kind": "benchmark", **self.summary(), "config": self.config, "wall_s": self.wall_s,
                "warmup": self.warmup, "mode": self.mode, "utilization": self.utilization,
                "latencies_ms": self.latencies_ms.tolist(), "starts_s": self.starts_s.tolist(),
                "device_ms": None if self.device_ms is None else self.device_ms.tolist(), "stopped": self.stopped,
                "launch": self.launch, "precision_note": self.precision_note}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BenchmarkResult":
        """Inverse of to_dict()."""
        dev = d.get("device_ms")
        return cls(d["engine"], d["batch"], np.asarray(d["latencies_ms"]), np.asarray(d["starts_s"]), d["wall_s"],
                   d.get("warmup", 0), None if dev is None else np.asarray(dev), d.get("config", {}),
                   d.get("device", "CPU"), d.get("utilization"), None, d.get("mode", "sync"), d.get("stopped"),
                   d.get("launch"), precision_note=d.get("precision_note"))

    def __str__(self) -> str:
        s = self.stats

        def line(label: str, st: dict[str, float]) -> str:
            return (f"[I] {label}: min = {st['min']:.5g} ms, max = {st['max']:.5g} ms, mean = {st['mean']:.5g} ms, "
                    f"median = {st['median']:.5g} ms, percentile(90%) = {st['p90']:.5g} ms, percentile(95%) = "
                    f"{st['p95']:.5g} ms, percentile(99%) = {st['p99']:.5g} ms")
        out = ["[I] === Performance summary ===", f"[I] Engine: {self.engine} on {self.device}",
               f"[I] Throughput: {self.throughput:.5g} qps ({self.samples_per_s:.5g} samples/s at batch {self.batch})",
               line("Latency", s)]
        if self.device_stats:
            out.append(line("GPU Compute Time", self.device_stats))
        out.append(f"[I] Total Host Walltime: {self.wall_s:.5g} s ({self.iterations} iterations after "
                   f"{self.warmup} warm-up)")
        cv = s["std"] / s["mean"] * 100 if s["mean"] else 0.0
        out.append(f"[I] Latency coefficient of variance: {cv:.3g} %")
        if self.launch:
            from .launch import Launch
            out += Launch.from_dict(self.launch).lines()
        if self.stopped:
            out.append(f"[W] {self.stopped}")
        if self.precision_note:
            out.append(f"[W] {self.precision_note}")
        if self.utilization:
            u = self.utilization
            out.append(f"[I] {str(u.get('device', '')).upper()} utilization: mean {u.get('util_mean_pct', float('nan')):.1f} %, "
                       f"peak {u.get('util_peak_pct', float('nan')):.1f} % over {u.get('samples', 0)} samples")
        return "\n".join(out)

    def __repr__(self) -> str:
        s = self.stats
        return (f"<BenchmarkResult {self.engine}: {self.throughput:.1f} qps, median {s['median']:.3f} ms, "
                f"p99 {s['p99']:.3f} ms over {self.iterations} iterations>")

    def _repr_html_(self) -> str:
        from ..markup import esc
        s = self.stats
        cells = [("throughput", f"{self.throughput:.1f} qps ({self.samples_per_s:.1f} samples/s)")]
        cells += [(k, f"{v:.4f} ms") for k, v in s.items()]
        if self.device_stats:
            cells.append(("GPU compute median", f"{self.device_stats['median']:.4f} ms"))
        rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in cells)
        return (f"<b>Benchmark</b> {esc(self.engine)} on {esc(self.device)}, batch {self.batch}, "
                f"{self.iterations} iterations<table>{rows}</table>")


def run_benchmark(engine: "Engine", feeds: Mapping[str, np.ndarray] | None = None, iterations: int | None = None,
                  duration: float | None = None, warmup: int = 10, seed: int = 0, reporter: "Reporter | None" = None,
                  monitor: Any = None, device_time: bool = True, mode: str | None = None,
                  cuda_graph: bool | None = None, transfers: bool | None = None, spin_wait: bool | None = None,
                  profile: bool = False) -> BenchmarkResult:
    """Time `engine` on `feeds` (seeded random when None) for `iterations` runs or `duration` seconds.

    mode="execute"|"enqueue", cuda_graph=, transfers= (host/device copies inside each timed run) and
    spin_wait= launch a TensorRT engine's runs that way (TensorRT FAQ 8) through its own runner, so benchmarks
    of one engine in other modes can run at the same time. What is not given comes from the engine's build
    options, then from trtexec's defaults for the engine's TensorRT major (trtlab.analysis.launch); the
    result's summary says which. Engines without launch modes refuse them. profile=True adds a per-layer
    profile (result.profile) taken in a run of its own after the timed loop, never inside it."""
    if iterations is None and duration is None:
        iterations = 100
    if iterations is not None and iterations <= 0:
        raise ConfigError(f"iterations must be positive, got {iterations}")
    if duration is not None and duration <= 0:
        raise ConfigError(f"duration must be positive seconds, got {duration}")
    if warmup < 0:
        raise ConfigError(f"warmup must be 0 or more iterations, got {warmup}")
    settings = _launch_settings(engine, mode, cuda_graph, transfers, spin_wait)
    if settings is not None:
        mode, cuda_graph = settings.mode, settings.cuda_graph
    launch = engine.launch_mode(mode, cuda_graph)  # ConfigError for modes the engine does not have
    feeds = engine.check_feeds(feeds) if feeds is not None else engine.random_feeds(seed)
    if settings is not None:
        run = engine.runner(feeds, mode=mode, cuda_graph=cuda_graph, transfers=settings.transfers,
                            spin_wait=settings.spin_wait)
    else:
        run = engine.runner(feeds)
    for i in range(warmup):
        run()
        if reporter and (i & 7) == 0:
            reporter.update(0, iterations, "warming up")
    timer = engine.device_timer(mode) if device_time else None
    limit = iterations if iterations is not None else MAX_ITERATIONS
    size = min(limit, BUFFER_START)  # grown as needed: a huge iterations= allocates as it runs
    lat = np.empty(size, dtype=np.float64)
    starts = np.empty(size, dtype=np.float64)
    dev = np.empty(size, dtype=np.float64) if timer else None
    pc = time.perf_counter
    n = 0
    t1 = t_begin = pc()
    # the deadline counts from t_begin, the start of wall_s, so a duration run's wall time is never short of it
    deadline = t_begin + duration if duration is not None else float("inf")
    next_report = t_begin + 0.25
    # the loop body is kept to perf_counter + run so the harness costs next to nothing
    while n < limit:
        if n == size:
            size = min(limit, size * 2)
            lat, starts = _grown(lat, size), _grown(starts, size)
            dev = _grown(dev, size) if dev is not None else None
        if timer:
            timer.start()
            t0 = pc()
            run()
            t1 = pc()
            dev[n] = timer.stop()
        else:
            t0 = pc()
            run()
            t1 = pc()
        lat[n] = t1 - t0
        starts[n] = t0
        n += 1
        if t1 >= next_report:
            next_report = t1 + 0.25
            if reporter:
                reporter.update(n if iterations else t1 - t_begin, iterations or duration, "benchmarking")
            if t1 >= deadline:
                break
        elif t1 >= deadline:
            break
    wall = pc() - t_begin
    stopped = _stopped(n, limit, iterations, duration, t1 - t_begin, reporter, engine.name)
    batch = next((int(a.shape[0]) for a in feeds.values() if a.ndim), 1)
    util = samples = None
    if monitor is not None:
        samples = monitor.window(float(starts[0]), float(starts[n - 1] + lat[n - 1]))
        util = monitor.summary(float(starts[0]), float(starts[n - 1] + lat[n - 1]))
        samples = pd.DataFrame(samples) if samples is not None else None
    layer_profile = None
    if profile:  # after the timed loop: the profiler never slows a timed run (trtexec 11's rule)
        layer_profile = engine.profile_layers(feeds, reporter=reporter)
    if settings is not None:
        settings = replace(settings, profile=layer_profile is not None)
    return BenchmarkResult(engine=engine.name, batch=batch, latencies_ms=lat[:n] * 1e3, starts_s=starts[:n],
                           wall_s=wall, warmup=warmup, device_ms=None if dev is None else dev[:n],
                           config=engine.config.to_dict(), device=engine.device, utilization=util,
                           samples=samples, stopped=stopped, mode=launch or "sync",
                           launch=None if settings is None else settings.to_dict(), profile=layer_profile,
                           precision_note=precision_note(engine))


def precision_note(engine: Any) -> str | None:
    """'this timing is not fp16 speed: ...' for an engine whose layers mostly do not compute in its named
    precision (as measured at build, e.g. fp16 on ONNX Runtime's CPU provider), else None."""
    mix = engine.measured_precision
    if mix is None or mix.faithful:
        return None
    return f"this timing is not {mix.named} speed: {mix.summary}"


def _launch_settings(engine: "Engine", mode: str | None, cuda_graph: bool | None, transfers: bool | None,
                     spin_wait: bool | None) -> "Launch | None":
    """The launch of a TensorRT engine's benchmark (caller, then build options, then the major's defaults);
    None for engines with one way to run, which refuse transfers=/spin_wait= like mode=/cuda_graph=."""
    from .launch import launch_defaults, resolve_launch
    library = engine.launch_library
    if library is None:
        if transfers is not None or spin_wait is not None:
            raise ConfigError(f"transfers=/spin_wait= apply to TensorRT engines; {engine.name} runs on "
                              f"{engine.backend_name}, whose runs always include their copies")
        return None
    options = dict(engine.config.options)
    chosen = mode is not None or "mode" in options
    plain = engine.launch_mode(mode, False)  # the mode alone: "enqueue" or "execute" (ConfigError otherwise)
    return resolve_launch(launch_defaults(*library), plain, chosen, cuda_graph, transfers, spin_wait, options)


def _grown(a: np.ndarray, size: int) -> np.ndarray:
    out = np.empty(size, dtype=a.dtype)
    out[:a.size] = a
    return out


def _stopped(n: int, limit: int, iterations: int | None, duration: float | None, elapsed: float,
             reporter: "Reporter | None", engine: str) -> str | None:
    """The note (also logged as a warning) for a duration run that reached MAX_ITERATIONS first, else None."""
    if iterations is not None or n < limit or duration is None or elapsed >= duration:
        return None
    note = (f"{engine}: stopped after {n} iterations per thread (trtlab.analysis.benchmark.MAX_ITERATIONS), "
            f"{elapsed:.3g} s into the {duration:g} s asked; pass iterations= for a longer run")
    if reporter is not None:
        reporter.write("warning", note, "benchmark")
    else:
        import warnings
        warnings.warn(note, RuntimeWarning, stacklevel=3)
    return note


def load_benchmark(path: str) -> BenchmarkResult:
    """Read a benchmark JSON written by the workspace."""
    with open(path) as fh:
        return BenchmarkResult.from_dict(json.load(fh))


# ---- CUDA graphs: fixed device buffers --------------------------------------------------------------
def uses_cuda_graph(engine: "Engine") -> bool:
    """True for an ONNX Runtime CUDA engine built with cuda_options={"enable_cuda_graph": "1"}."""
    return bool(engine.uses_cuda_graph)


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
    settings = _launch_settings(engine, None, None, None, None)
    cancel = reporter.cancel if reporter is not None else None
    barrier = threading.Barrier(concurrency + 1)
    stop = threading.Event()
    lat: list[np.ndarray] = [np.empty(0)] * concurrency
    starts: list[np.ndarray] = [np.empty(0)] * concurrency
    errors: list[BaseException] = []
    box: dict[str, float] = {}

    def worker(k: int) -> None:
        try:
            # per-thread context: created in the thread that uses it; TensorRT engines launch by their major's rules
            run = engine.runner(feeds) if settings is None else engine.runner(
                feeds, mode=settings.mode, cuda_graph=settings.cuda_graph, transfers=settings.transfers,
                spin_wait=settings.spin_wait)
            for _ in range(warmup):
                run()
        except BaseException as exc:
            errors.append(exc)
            stop.set()
        barrier.wait()
        if stop.is_set():
            return
        pc = time.perf_counter
        limit = iterations if iterations is not None else MAX_ITERATIONS
        size = min(limit, BUFFER_START)  # grown as needed: a huge iterations= allocates as it runs
        la = np.empty(size)
        st = np.empty(size)
        deadline = box["t0"] + duration if duration is not None else math.inf
        n = 0
        try:
            while n < limit and not stop.is_set():
                if n == size:
                    size = min(limit, size * 2)
                    la, st = _grown(la, size), _grown(st, size)
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
        if iterations is None and n >= limit:
            box["capped"] = n

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
    stopped = None
    if "capped" in box:
        stopped = _stopped(MAX_ITERATIONS, MAX_ITERATIONS, iterations, duration, t_last - t_first, reporter,
                           engine.name)
    return BenchmarkResult(engine=engine.name, batch=batch, latencies_ms=all_lat * 1e3, starts_s=all_st,
                           wall_s=t_last - t_first, warmup=warmup, config=engine.config.to_dict(),
                           device=engine.device, utilization=util, samples=samples,
                           mode=f"concurrent x{concurrency}", stopped=stopped, precision_note=precision_note(engine),
                           launch=None if settings is None else settings.to_dict())
