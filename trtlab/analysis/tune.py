"""Tune: a time-budgeted search over what the backend exposes (precision, batch, backend options).

run_tune runs, scores and records the trials; a strategy proposes them. The default strategy is greedy
coordinate descent (`greedy`); search="optuna" lets Optuna's sampler propose (trtlab.analysis.tune_optuna).
The greedy search: start from the default build (fp32, no options), then for each
dimension in order of expected impact (precision, batch, cuDNN algorithm search, NHWC, CUDA graphs, graph
optimization, threads, other backend options) try every other value with the rest fixed at the best so far,
and keep a change only when it scores better. Each trial is a build (from the session's cache when it
exists) and a short benchmark; failures (a precision the backend lacks, a CUDA graph over CPU nodes) are
recorded and skipped. Finally, when the budget allows, the default and the best are timed again back to
back so the reported ratio is not an artefact of drift between distant trials.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import pandas as pd

from ..errors import CancelledError, ConfigError, TrtlabError

if TYPE_CHECKING:
    from ..backends.base import Engine
    from ..events import Reporter

OBJECTIVES = ("throughput", "latency")
# options never searched: they choose the device or the measurement, not the engine's speed
NOT_SEARCHED = ("providers", "io_binding", "inter_op_threads", "compute_capability", "cpu_mem_arena")
# dimension order: most impact first, so a short budget spends its trials where they pay
# (ORT CUDA: NHWC lets fp16 convolutions use tensor cores without transposes; EXHAUSTIVE, the default
# cuDNN search, is rarely beaten by HEURISTIC/DEFAULT, so those come after)
ORDER = ("precision", "batch", "cuda_options.prefer_nhwc", "cuda_options.enable_cuda_graph",
         "cuda_options.cudnn_conv_algo_search", "opt_level", "cuda_graph", "workspace", "timing_cache", "mode",
         "graph_optimization", "threads")
# values that equal the backend's own default; trying them again would repeat the baseline
KNOWN_DEFAULTS = {"precision": "fp32", "graph_optimization": "all", "cuda_options.cudnn_conv_algo_search": "EXHAUSTIVE",
                  "cuda_options.prefer_nhwc": "0", "cuda_options.enable_cuda_graph": "0", "io_binding": True,
                  # TensorRT backend (trtlab.backends.tensorrt): builder level 3, no cache, enqueue, no graph
                  "opt_level": 3, "timing_cache": False, "mode": "enqueue", "cuda_graph": False}
SEARCH_PRECISIONS = ("fp32", "fp16", "bf16")  # int8/fp8 need calibration data: tune those with the precision lab


def search_space(options: Mapping[str, Any], precisions: Sequence[str], on_cuda: bool,
                 batch: int | Sequence[int] | None = None, cpu_count: int | None = None,
                 include: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> dict[str, list[Any]]:
    """Dimensions to search: name -> alternative values (None, the default, is always tried first).

    `options` is Backend.options() (name -> list of choices; a dict of lists for nested options such as ORT's
    cuda_options, searched only on CUDA). `threads` is searched on the CPU only.
    """
    space: dict[str, list[Any]] = {}
    precs = [p for p in SEARCH_PRECISIONS if p in precisions]
    if len(precs) > 1:
        space["precision"] = _alternatives("precision", precs)
    if batch is not None and not isinstance(batch, int) and len(batch) > 1:
        space["batch"] = [int(b) for b in batch]
    for name, choices in options.items():
        if name in NOT_SEARCHED:
            continue
        if isinstance(choices, Mapping):
            if name == "cuda_options" and not on_cuda:
                continue
            for sub, vals in choices.items():
                if isinstance(vals, (list, tuple)) and len(vals) > 1:
                    space[f"{name}.{sub}"] = _alternatives(f"{name}.{sub}", vals)
        elif isinstance(choices, (list, tuple)) and len(choices) > 1:
            space[name] = _alternatives(name, choices)
    if "threads" in options and not on_cuda:
        n = cpu_count or os.cpu_count() or 1
        space["threads"] = sorted({1, max(1, n // 2), n})
    if include is not None:
        keep = set(include)
        space = {k: v for k, v in space.items() if k in keep or k.split(".")[0] in keep}
    space = {k: v for k, v in space.items() if k not in set(exclude) and k.split(".")[0] not in set(exclude)}
    rank = {k: i for i, k in enumerate(ORDER)}
    return dict(sorted(space.items(), key=lambda kv: rank.get(kv[0], len(ORDER))))


def choices(space: Mapping[str, Sequence[Any]], default: Mapping[str, Any] | None = None) -> dict[str, list[Any]]:
    """Every value each dimension can take in a search: None (the backend's default) and the alternatives, or
    only the alternatives where the default is one of them (batch=[4, 64] starts at 4)."""
    default = default or {}
    return {d: list(v) if default.get(d) in v else [None, *v] for d, v in space.items()}


def _alternatives(name: str, values: Sequence[Any]) -> list[Any]:
    d = KNOWN_DEFAULTS.get(name, object())
    return [v for v in values if v != d]


def build_args(params: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Flat trial parameters ("cuda_options.prefer_nhwc": "1") as Session.build keyword arguments."""
    args = dict(base or {})
    for k, v in params.items():
        if v is None:
            continue
        if "." in k:
            outer, inner = k.split(".", 1)
            args[outer] = {**dict(args.get(outer) or {}), inner: v}
        else:
            args[k] = v
    return args


@dataclass
class TuneResult:
    """Every trial of a tune() run, the best configuration and its ratio to the default."""

    trials: list[dict[str, Any]]
    objective: str
    dimensions: list[str]
    budget_s: float
    elapsed_s: float = 0.0
    confirmation: dict[str, Any] = field(default_factory=dict)
    stopped: str | None = None

    def to_frame(self) -> pd.DataFrame:
        """One row per trial: its parameters (None = backend default), status, throughput, latency, score."""
        f = pd.DataFrame(self.trials)
        for d in self.dimensions:
            f[d] = pd.Series(["(default)" if t.get(d) is None else t.get(d) for t in self.trials], dtype=object)
        return f

    def _ok(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["status"] == "ok" and t.get("phase") == "search"]

    @property
    def default(self) -> dict[str, Any]:
        """The default trial (the first)."""
        if not self.trials or self.trials[0]["status"] != "ok":
            raise ConfigError("the default configuration failed to build or run: see to_frame()['error']")
        return self.trials[0]

    @property
    def best(self) -> dict[str, Any]:
        """The best successful search trial by score."""
        ok = self._ok()
        if not ok:
            raise ConfigError("no tune trial succeeded: see to_frame()['error']")
        return max(ok, key=lambda t: t["score"])

    @property
    def best_params(self) -> dict[str, Any]:
        """The best trial's parameters (None entries are backend defaults)."""
        return {d: self.best.get(d) for d in self.dimensions}

    def best_build_args(self, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Keyword arguments for Session.build giving the best configuration."""
        return build_args({**{"precision": "fp32"}, **self.best_params}, base)

    @property
    def ratio(self) -> float:
        """Best over default (throughput: samples/s ratio; latency: default median / best median);
        from the back-to-back confirmation runs when they were made."""
        if self.confirmation.get("ratio") is not None:
            return float(self.confirmation["ratio"])
        return self.best["score"] / self.default["score"] if self.objective == "throughput" else \
            self.default["score"] / self.best["score"]

    def describe(self) -> str:
        """The outcome in words."""
        try:
            best, default = self.best, self.default
        except ConfigError as exc:
            return str(exc)
        changed = {d: best.get(d) for d in self.dimensions if best.get(d) is not None}
        what = ", ".join(f"{k}={v}" for k, v in changed.items()) or "the default configuration"
        unit = "samples/s" if self.objective == "throughput" else "ms median latency"
        val = (lambda t: t["samples_per_s"]) if self.objective == "throughput" else (lambda t: t["latency_median_ms"])
        ntr = sum(1 for t in self.trials if t.get("phase") == "search")
        nfail = sum(1 for t in self.trials if t["status"] != "ok")
        s = (f"best of {ntr} trials ({nfail} failed) in {self.elapsed_s:.0f} s: {what} -> {val(best):,.4g} {unit} "
             f"against {val(default):,.4g} for the default, {self.ratio:.2f}x")
        if self.confirmation:
            c = self.confirmation
            s += (f" (timed again back to back: {c['best']:,.4g} against {c['default']:,.4g})" if self.ratio > 1
                  else f"; timed again back to back it is {self.ratio:.2f}x, so the gain was noise: keep the default")
        if self.stopped:
            s += f"; stopped early: {self.stopped}"
        return s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored as the workspace result "tune")."""
        out = {"kind": "tune", "objective": self.objective, "budget_s": self.budget_s, "elapsed_s": self.elapsed_s,
               "dimensions": self.dimensions, "trials": self.trials, "confirmation": self.confirmation,
               "stopped": self.stopped, "describe": self.describe()}
        try:
            out.update({"best_params": self.best_params, "ratio": self.ratio})
        except ConfigError:
            pass
        return out

    def __repr__(self) -> str:
        return f"<TuneResult {self.objective}: {self.describe()}>"

    def _repr_html_(self) -> str:
        from ..markup import esc
        return f"<b>Tune</b> <p>{esc(self.describe())}</p>" + self.to_frame().to_html(
            index=False, float_format=lambda v: f"{v:.4g}")


Trialer = Callable[[Mapping[str, Any], "Reporter"], Any]  # params -> BenchmarkResult


def run_tune(space: Mapping[str, Sequence[Any]], trial: Trialer, reporter: "Reporter",
             objective: str = "throughput", budget_s: float = 120.0, default: Mapping[str, Any] | None = None,
             confirm: bool = True, min_gain: float = 0.0,
             on_trial: Callable[[dict[str, Any]], None] | None = None,
             stored: Iterable[Mapping[str, Any]] = (), search: "str | Strategy" = "greedy",
             max_trials: int | None = None) -> TuneResult:
    """Search `space` within `budget_s` seconds (and at most `max_trials` search trials, the default one
    included); `trial(params, reporter)` builds and benchmarks one configuration (a TrtlabError marks the trial
    failed). `search` is "greedy" (the coordinate search, `greedy`) or a Strategy (trtlab.analysis.tune_optuna's
    OptunaSearch): it proposes configurations, this function runs, scores and records them. A greedy change is
    kept when its score beats the best by more than `min_gain` (relative). `on_trial(row)` is called as each
    trial finishes (to store it); `stored` are rows of an earlier run with the same space and settings: a trial
    found there is taken from it (marked resumed) instead of run again, so a resumed search retraces the stopped
    one, then goes on."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if budget_s <= 0:
        raise ConfigError(f"budget_s must be positive seconds, got {budget_s}")
    if max_trials is not None and max_trials < 1:
        raise ConfigError(f"max_trials must be at least 1 (the default configuration), got {max_trials}")
    strategy = STRATEGIES.get(search) if isinstance(search, str) else search
    if strategy is None:
        raise ConfigError(f"search must be one of {', '.join(STRATEGIES)} or a Strategy, got {search!r}")
    dims = list(space)
    current = {d: None for d in dims}
    current.update(default or {})
    plan = sum(len(v) for v in space.values())
    t_start = time.perf_counter()
    trials: list[dict[str, Any]] = []
    durations: list[float] = []

    def elapsed() -> float:
        return time.perf_counter() - t_start

    earlier: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in stored:
        earlier.setdefault((str(rec.get("phase")), params_key({d: rec.get(d) for d in dims})), []).append(dict(rec))

    def known(params: Mapping[str, Any], phase: str) -> bool:
        return bool(earlier.get((phase, params_key({d: params.get(d) for d in dims}))))

    def run_one(params: Mapping[str, Any], phase: str, reuse: bool = True) -> dict[str, Any]:
        key = (phase, params_key({d: params.get(d) for d in dims}))
        if reuse and earlier.get(key):
            row = earlier[key].pop(0)
            row.update({"trial": len(trials), "resumed": True})
            if row.get("status") != "ok" or row.get("score") is None:
                row["score"] = -math.inf  # stored as null: strict JSON has no infinity
            durations.append(float(row.get("seconds") or 0.0))
            trials.append(row)
            return row
        t0 = time.perf_counter()
        row: dict[str, Any] = {"trial": len(trials), "phase": phase, **{d: params.get(d) for d in dims},
                               "resumed": False}
        try:
            res = trial(params, reporter)
            s = res.summary()
            row.update({"status": "ok", "error": None, "samples_per_s": res.samples_per_s,
                        "throughput_ips": res.throughput, "latency_median_ms": s["latency_median_ms"],
                        "latency_p99_ms": s["latency_p99_ms"], "iterations": res.iterations,
                        "util_mean_pct": (res.utilization or {}).get("util_mean_pct", math.nan)})
            row["score"] = res.samples_per_s if objective == "throughput" else -s["latency_median_ms"]
        except CancelledError:
            raise
        except TrtlabError as exc:
            row.update({"status": "error", "error": f"{type(exc).__name__}: {exc}", "score": -math.inf})
            reporter.write("warning", f"tune trial {row['trial']} {_label(params)} failed: {exc}", "tune")
        row["seconds"] = time.perf_counter() - t0
        durations.append(row["seconds"])
        trials.append(row)
        if on_trial is not None:
            on_trial(row)
        return row

    def fits(params: Mapping[str, Any]) -> bool:
        if max_trials is not None and sum(1 for t in trials if t.get("phase") == "search") >= max_trials:
            return False
        est = max(durations) if len(durations) < 3 else sorted(durations)[len(durations) // 2]
        return known(params, "search") or elapsed() + est + reserve <= budget_s

    def limit() -> str:
        n = len(trials)
        if max_trials is not None and sum(1 for t in trials if t.get("phase") == "search") >= max_trials:
            return f"{max_trials} trials reached"
        return f"time budget {budget_s:g} s reached after {n} trials"

    reporter.update(0, plan + 1, "default configuration")
    base = run_one(current, "search")
    reserve = 2 * base["seconds"] if confirm and base["status"] == "ok" else 0.0
    ctx = SearchContext(space, dict(current), base, objective, min_gain, reporter, run_one, fits, limit, plan)
    stopped = strategy(ctx)
    result = TuneResult(trials, objective, dims, budget_s, stopped=stopped)
    if confirm and base["status"] == "ok" and any(v is not None and v != (default or {}).get(k)
                                                  for k, v in result.best_params.items()):
        if elapsed() + 2 * (sum(durations) / len(durations)) <= budget_s * 1.1:
            reporter.update(plan, plan + 1, "confirming best against default")
            pair = dict(default or {d: None for d in dims}), result.best_params
            both = known(pair[0], "confirm-default") and known(pair[1], "confirm-best")  # else time both again
            a = run_one(pair[0], "confirm-default", reuse=both)
            b = run_one(pair[1], "confirm-best", reuse=both)
            if a["status"] == b["status"] == "ok":
                ratio = b["score"] / a["score"] if objective == "throughput" else a["score"] / b["score"]
                result.confirmation = {"default": a["samples_per_s"] if objective == "throughput"
                                       else a["latency_median_ms"],
                                       "best": b["samples_per_s"] if objective == "throughput"
                                       else b["latency_median_ms"], "ratio": ratio}
    result.elapsed_s = elapsed()
    reporter.update(plan + 1, plan + 1, result.describe())
    return result


@dataclass
class SearchContext:
    """What a search strategy gets from run_tune: the space, the default trial, and `run(params, phase)` that
    runs (or takes from the store) one trial and records it; `fits(params)` says whether the budget allows it,
    `limit()` words the limit that stopped the search."""

    space: Mapping[str, Sequence[Any]]
    default: dict[str, Any]
    base: dict[str, Any]
    objective: str
    min_gain: float
    reporter: "Reporter"
    run: Callable[[Mapping[str, Any], str], dict[str, Any]]
    fits: Callable[[Mapping[str, Any]], bool]
    limit: Callable[[], str]
    plan: int


Strategy = Callable[[SearchContext], "str | None"]  # runs its trials through ctx.run; returns why it stopped early


def greedy(ctx: SearchContext) -> str | None:
    """Coordinate search: each dimension in order, every other value with the rest at the best so far; a change
    is kept when it beats the best by more than min_gain."""
    current, min_gain = dict(ctx.default), ctx.min_gain
    best_score = ctx.base.get("score", -math.inf)
    done = 1
    for d in ctx.space:
        for value in ctx.space[d]:
            if value == current.get(d):
                continue
            params = {**current, d: value}
            if not ctx.fits(params):
                return ctx.limit()
            ctx.reporter.update(done, ctx.plan + 1, f"trial {done}: {_label(params)}")
            row = ctx.run(params, "search")
            done += 1
            if row["status"] == "ok" and row["score"] > best_score * (1 + min_gain if best_score > 0 else 1 - min_gain):
                best_score, current = row["score"], params
                ctx.reporter.write("info", f"tune: {_label(params)} is the best so far "
                                           f"({_score_text(row, ctx.objective)})", "tune")
    return None


STRATEGIES: dict[str, Strategy] = {"greedy": greedy}  # others are objects: tune_optuna.OptunaSearch(journal, ...)


def _label(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if v is not None) or "default"


def _score_text(row: Mapping[str, Any], objective: str) -> str:
    return f"{row['samples_per_s']:,.1f} samples/s" if objective == "throughput" else \
        f"{row['latency_median_ms']:.3f} ms median"


def params_key(params: Mapping[str, Any]) -> str:
    """Canonical JSON of trial parameters (None dropped)."""
    return json.dumps({k: v for k, v in params.items() if v is not None}, sort_keys=True, default=str)


def make_trial(build: Callable[[dict[str, Any]], "Engine"], base: Mapping[str, Any], iterations: int | None,
               duration: float | None, warmup: int, concurrency: int = 1, monitor: Any = None,
               release: Callable[["Engine"], None] | None = None) -> Trialer:
    """A trial function: build_args(params, base) -> build -> run_concurrent benchmark."""
    from .benchmark import run_concurrent

    def trial(params: Mapping[str, Any], reporter: "Reporter") -> Any:
        engine = build(build_args(params, base))
        sub = reporter.child(f"{reporter.task}: {_label(params)}")
        try:
            return run_concurrent(engine, None, concurrency, iterations, duration, warmup, 0, sub, monitor)
        finally:
            if release is not None:
                release(engine)
    return trial
