"""Thread-safety check (TensorRT FAQ 2): N threads run one engine at once; outputs must equal the 1-thread run.

TensorRT is thread-safe when each thread has its own execution context; ONNX Runtime allows concurrent
`run` calls on one shared InferenceSession. The check runs `engine.run` (the public, documented thread-safe
call) from `threads` threads released together, compares every output exactly (NaNs equal) with the
single-thread reference, and then times per-thread runners (`engine.runner`, one execution context or I/O
binding per thread) with 1 and with N threads to report throughput scaling.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..backends.base import Engine
    from ..events import Reporter


@dataclass
class ThreadSafetyReport:
    """Result of check_thread_safety: equality per output, mismatching runs, and throughput scaling."""

    engine: str
    threads: int
    iterations: int
    runs: int
    mismatches: int
    outputs: pd.DataFrame
    throughput_1: float = math.nan
    throughput_n: float = math.nan
    distinct_inputs: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """True when every threaded run returned outputs exactly equal to the single-thread run."""
        return self.mismatches == 0 and not self.errors

    passed = identical

    @property
    def max_abs_diff(self) -> float:
        """Largest absolute difference over all outputs and runs (0.0 when identical)."""
        return float(self.outputs["max_abs_diff"].max()) if len(self.outputs) else 0.0

    @property
    def scaling(self) -> float:
        """Throughput with N threads over throughput with 1 (inferences/s ratio)."""
        return self.throughput_n / self.throughput_1 if self.throughput_1 > 0 else math.nan

    @property
    def efficiency(self) -> float:
        """scaling / N: 1.0 is perfect linear scaling."""
        return self.scaling / self.threads

    def to_frame(self) -> pd.DataFrame:
        """One row per output: mismatching runs, max abs diff, exact equality."""
        return self.outputs.copy()

    def describe(self) -> str:
        """The verdict in words."""
        if self.identical:
            head = (f"thread-safe: {self.threads} threads x {self.iterations} runs each gave outputs identical to the "
                    f"single-thread run (exact equality)")
        else:
            worst = self.outputs.sort_values("mismatches", ascending=False).iloc[0] if len(self.outputs) else None
            head = (f"NOT thread-safe: {self.mismatches} of {self.runs} threaded runs differ from the single-thread "
                    f"run" + (f" (worst output {worst['output']!r}, max abs diff {self.max_abs_diff:.3g})"
                              if worst is not None else "") + (f"; errors: {self.errors[0]}" if self.errors else "")
                    + ". Give each thread its own execution context (TensorRT FAQ 2) or serialise run()")
        if not math.isnan(self.scaling):
            head += (f". Throughput {self.throughput_1:,.1f} -> {self.throughput_n:,.1f} inferences/s with "
                     f"{self.threads} threads ({self.scaling:.2f}x, {self.efficiency:.0%} of linear)")
        return head

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored as the workspace result "thread_safety")."""
        return {"kind": "thread_safety", "engine": self.engine, "threads": self.threads,
                "iterations": self.iterations, "runs": self.runs, "mismatches": self.mismatches,
                "identical": self.identical, "max_abs_diff": self.max_abs_diff, "throughput_1": self.throughput_1,
                "throughput_n": self.throughput_n, "scaling": self.scaling, "distinct_inputs": self.distinct_inputs,
                "errors": self.errors, "describe": self.describe()}

    def __repr__(self) -> str:
        return f"<ThreadSafetyReport {self.engine}: {self.describe()}>"

    def _repr_html_(self) -> str:
        from ..markup import esc
        return f"<b>Thread safety</b> {esc(self.engine)}<p>{esc(self.describe())}</p>" + \
            self.outputs.to_html(index=False)


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def _abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return math.inf
    if a.dtype.kind not in "fciub":
        return 0.0 if _equal(a, b) else math.inf
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    d = d[~np.isnan(d)]
    return float(d.max()) if d.size else 0.0


def check_thread_safety(engine: "Engine", threads: int = 8, iterations: int = 20,
                        feeds: Mapping[str, np.ndarray] | None = None, seed: int = 0, distinct_inputs: bool = False,
                        timing_iterations: int | None = None, warmup: int = 3,
                        reporter: "Reporter | None" = None) -> ThreadSafetyReport:
    """Run `threads` threads x `iterations` engine.run calls at once and compare with the 1-thread outputs.

    distinct_inputs=True gives thread k inputs seeded seed+k (each with its own single-thread reference), which
    also catches one thread receiving another's result. timing_iterations (per thread, default 2*iterations)
    times per-thread runners with 1 and N threads for the scaling figure; 0 skips timing.
    """
    from .benchmark import run_concurrent
    if threads < 1 or iterations < 1:
        raise ConfigError(f"threads ({threads}) and iterations ({iterations}) must be at least 1")
    if feeds is not None and distinct_inputs:
        raise ConfigError("distinct_inputs=True draws seeded inputs per thread: do not pass feeds as well")
    base = engine.check_feeds(feeds) if feeds is not None else engine.random_feeds(seed)
    thread_feeds = [engine.random_feeds(seed + k) if distinct_inputs else base for k in range(threads)]
    refs = []
    for k in range(threads if distinct_inputs else 1):
        refs.append(engine.run(thread_feeds[k]))
    names = list(refs[0])
    mismatch = {n: 0 for n in names}
    maxdiff = {n: 0.0 for n in names}
    bad_runs = [0] * threads
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker(k: int) -> None:
        ref = refs[k if distinct_inputs else 0]
        local_mis = {n: 0 for n in names}
        local_diff = {n: 0.0 for n in names}
        bad = 0
        try:
            barrier.wait()
            for _ in range(iterations):
                out = engine.run(thread_feeds[k])
                wrong = False
                for n in names:
                    got = np.asarray(out.get(n)) if n in out else None
                    if got is None or not _equal(got, ref[n]):
                        local_mis[n] += 1
                        local_diff[n] = max(local_diff[n], math.inf if got is None else _abs_diff(got, ref[n]))
                        wrong = True
                bad += wrong
        except Exception as exc:  # reported, not raised: a crash under concurrency is a failed check
            with lock:
                errors.append(f"thread {k}: {type(exc).__name__}: {exc}")
        with lock:
            for n in names:
                mismatch[n] += local_mis[n]
                maxdiff[n] = max(maxdiff[n], local_diff[n])
            bad_runs[k] = bad

    if reporter:
        reporter.update(0, 2, f"{threads} threads x {iterations} runs")
    workers = [threading.Thread(target=worker, args=(k,), name=f"trtlab-threadcheck-{k}", daemon=True)
               for k in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    frame = pd.DataFrame({"output": names, "runs": [threads * iterations] * len(names),
                          "mismatches": [mismatch[n] for n in names],
                          "max_abs_diff": [maxdiff[n] for n in names],
                          "identical": [mismatch[n] == 0 for n in names]})
    report = ThreadSafetyReport(engine.name, threads, iterations, threads * iterations, sum(bad_runs), frame,
                                distinct_inputs=distinct_inputs, errors=errors)
    n_time = 2 * iterations if timing_iterations is None else timing_iterations
    if n_time and not errors:
        if reporter:
            reporter.update(1, 2, "timing 1 thread against N")
        one = run_concurrent(engine, base, 1, iterations=n_time, warmup=warmup)
        many = run_concurrent(engine, base, threads, iterations=n_time, warmup=warmup)
        report.throughput_1, report.throughput_n = one.throughput, many.throughput
    if reporter:
        reporter.update(2, 2, report.describe())
    return report
