"""Session: the hub a notebook user (and the UI) works with — build, run, benchmark, profile, compare.

A façade: the engine cache is `trtlab.engines`, the precision lab `trtlab.lab`, sweeps and tune `trtlab.tuning`;
the dashboard and the HTML report are reached through `trtlab.hooks`, so the hub imports no UI."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from . import lab, tuning
from .backends import ALIASES, get_backend
from .backends.base import Backend, Engine
from .config import BuildConfig, check_options
from .engines import DEFAULT_MAX_ENGINES, EngineCache
from .errors import ConfigError
from .feeds import generated_inputs_named
from .events import EventBus, Job, JobExecutor, Reporter, SessionLog, job_reporter
from .hooks import hook
from .model import Model, ModelSource
from .workspace import Workspace

EngineSpec = Any  # an Engine, a precision string ("fp16"), or a dict of build() arguments


class Session:
    """One model, one backend, one workspace: engines cached by BuildConfig and results written as produced.

    Background work (`background=True`) runs at most `max_jobs` jobs at once; later ones wait, status "queued"."""

    def __init__(self, model: ModelSource, backend: str = "onnxruntime", workspace: str | Path | None = None,
                 name: str | None = None, max_engines: int = DEFAULT_MAX_ENGINES, max_jobs: int = 2) -> None:
        """max_engines: how many engines stay loaded (least recently used closed first; building an evicted
        config again reloads it from the workspace). max_jobs: how many background jobs run at once."""
        self._executor = JobExecutor(max_jobs)
        self.model = Model.load(model, name=name)
        self.events = EventBus()
        self.log = SessionLog(self.events)
        self.workspace = Workspace(workspace, self.model.hash, self.model.name)
        self._backends: dict[str, Backend] = {}
        self.backend = self._backend(backend)
        self._engine_cache = EngineCache(self.model, self.workspace, self._backend, max_engines)
        self._marked: tuple[str, ...] = ()
        self._ui_monitors: list[Any] = []
        self.jobs: list[Job] = []
        self.log.write("info", f"session on {self.model.name} ({len(self.model.node_names)} nodes) with backend "
                               f"{self.backend.name}, workspace {self.workspace.path}")

    def _backend(self, name: str) -> Backend:
        """The session's instance of the named backend (made once; a config is built by the backend it names)."""
        name = ALIASES.get(name, name)
        backend = self._backends.get(name)
        if backend is None:
            backend = get_backend(name)
            if backend.has_cache_dir:  # TensorRT timing/runtime caches live with the workspace
                backend.cache_dir = self.workspace.root / "tensorrt-cache"
            self._backends[name] = self._backends[backend.name] = backend
        return backend

    @property
    def _engines(self) -> dict[BuildConfig, Engine]:
        return self._engine_cache.engines

    def use_backend(self, name: str) -> None:
        """Switch this session to another backend ("onnxruntime", "tensorrt", "tensorrt-rtx", "auto")."""
        self.backend = self._backend(name)
        self.log.write("info", f"backend is now {self.backend.name}")

    # ---- environment ---------------------------------------------------------------------
    def info(self) -> "SessionInfo":
        """Versions, providers, backends, CPU/GPU, the model and the workspace."""
        from .environment import environment
        return SessionInfo(environment=environment(), model=self.model.summary(), backend=self.backend.name,
                           workspace=str(self.workspace.path), engines=len(self.workspace.list_engines()))

    # ---- jobs ----------------------------------------------------------------------------
    def submit(self, task: str, fn: Callable[[Reporter], Any]) -> Job:
        """Run `fn(reporter)` on this session's job executor (at most max_jobs at once, the rest queued);
        progress and logs go to this session's events, tagged with the job's id."""
        job = Job(task, fn, self._executor, self.events, self.log)
        self.jobs.append(job)
        return job

    def _run(self, task: str, fn: Callable[[Reporter], Any], background: bool) -> Any:
        if background:
            return self.submit(task, fn)
        rep = job_reporter(task, self.events, self.log)
        with rep.active():
            return fn(rep)

    def cancel_all(self) -> None:
        """Ask every job of this session to stop (queued ones never start)."""
        for job in self.jobs:
            if not job.done:
                job.cancel()

    # ---- building ------------------------------------------------------------------------
    def make_config(self, precision: str = "fp32", batch: int | Iterable[int] | None = None,
                    shapes: Mapping[str, Any] | None = None, dims: Mapping[str, int] | None = None,
                    outputs: Iterable[str] | str | None = None, fp32_layers: Iterable[str] = (),
                    calibration: Any = None, providers: Iterable[str] | str | None = None,
                    threads: int | None = None, inter_op_threads: int | None = None,
                    **options: Any) -> BuildConfig:
        """The BuildConfig that build() would use for these arguments."""
        check_options(self.backend, options)
        if batch is None and not shapes and self._needs_batch():
            batch = 1
        if outputs is None and self._marked:
            outputs = self._marked
        return BuildConfig.make(backend=self.backend.name, precision=precision, batch=batch, shapes=shapes,
                                dims=dims, outputs=outputs, fp32_layers=fp32_layers,
                                calibration=self._engine_cache.register_calibration(calibration),
                                providers=providers, threads=threads, inter_op_threads=inter_op_threads, **options)

    def _needs_batch(self) -> bool:
        return any(i.shape and not (isinstance(i.shape[0], int) and i.shape[0] > 0) for i in self.model.inputs)

    def calibration_table(self, key: str) -> Any:
        """A calibration table registered with this session by its key (as stored in BuildConfig)."""
        return self._engine_cache.calibrations[key]

    def build(self, precision: str = "fp32", batch: int | Iterable[int] | None = None,
              shapes: Mapping[str, Any] | None = None, dims: Mapping[str, int] | None = None,
              outputs: Iterable[str] | str | None = None, fp32_layers: Iterable[str] = (), calibration: Any = None,
              providers: Iterable[str] | str | None = None, threads: int | None = None,
              inter_op_threads: int | None = None, background: bool = False, **options: Any) -> Engine | Job:
        """Build (or fetch from the cache) the engine for these settings; background=True returns a Job."""
        config = self.make_config(precision, batch, shapes, dims, outputs, fp32_layers, calibration, providers,
                                  threads, inter_op_threads, **options)
        return self._run(f"build {config.describe()}", lambda rep: self.build_config(config, rep), background)

    def build_config(self, config: BuildConfig, reporter: Reporter | None = None) -> Engine:
        """Build the engine for a ready BuildConfig: memory cache, then disk cache, then a real build."""
        reporter = reporter or job_reporter("build", self.events, self.log)
        return self._engine_cache.get(config, reporter)

    def engine(self, spec: EngineSpec = None) -> Engine:
        """Resolve an engine spec: an Engine, a precision string, a dict of build() args, or None (fp32)."""
        if isinstance(spec, Engine):
            return spec
        if spec is None:
            return self.build()
        if isinstance(spec, str):
            return self.build(precision=spec)
        if isinstance(spec, Mapping):
            return self.build(**spec)
        raise ConfigError(f"cannot make an engine from {spec!r}: pass an Engine, a precision or a dict of build args")

    def engines(self):
        """Engines stored in the workspace (this and earlier sessions): key, backend, precision, build time."""
        return self._engine_cache.table()

    # ---- benchmark and profile -----------------------------------------------------------
    def benchmark(self, engine: EngineSpec = None, iterations: int | None = None, duration: float | None = None,
                  warmup: int = 10, data: Mapping[str, np.ndarray] | None = None, seed: int = 0,
                  monitor: Any = False, mode: str | None = None, cuda_graph: bool | None = None,
                  transfers: bool | None = None, spin_wait: bool | None = None, profile: bool = False,
                  background: bool = False):
        """Time an engine (trtexec-style summary); the result is written to the workspace at once.

        mode="execute"|"enqueue", cuda_graph=, transfers= and spin_wait= choose how a TensorRT engine is
        launched (TensorRT FAQ 8); unset, they follow trtexec's defaults for the installed TensorRT major, and
        the summary says which. profile=True adds a per-layer profile from a separate run (stored too)."""
        from .analysis.benchmark import run_benchmark

        def work(rep: Reporter):
            eng = self.engine(engine)
            mon = self._monitor_for(monitor)
            try:
                with generated_inputs_named(data, lambda: eng.random_feeds(seed)):
                    result = run_benchmark(eng, data, iterations=iterations, duration=duration, warmup=warmup,
                                           seed=seed, reporter=rep, monitor=mon, mode=mode, cuda_graph=cuda_graph,
                                           transfers=transfers, spin_wait=spin_wait, profile=profile)
            finally:
                if mon is not None and monitor is True:
                    mon.stop()
            self.workspace.save_result("benchmark", result.to_dict(), result.to_frame(), result=result)
            if result.profile is not None:
                prof = result.profile
                self.workspace.save_result("profile", prof.to_dict(), prof.to_frame(), result=prof)
            rep.write("info", f"{result!r}", "benchmark")
            return result
        return self._run("benchmark", work, background)

    def _monitor_for(self, monitor: Any) -> Any:
        if monitor is True:
            from .monitor import Monitor
            return Monitor(interval=0.1).start()
        return monitor or None

    def profile_layers(self, engine: EngineSpec = None, runs: int = 20, warmup: int = 3,
                       data: Mapping[str, np.ndarray] | None = None, seed: int = 0, background: bool = False):
        """Per-layer times of an engine; the table is written to the workspace at once."""
        if runs < 1 or warmup < 0:
            raise ConfigError(f"profile_layers needs runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")

        def work(rep: Reporter):
            eng = self.engine(engine)
            feeds = eng.check_feeds(data) if data is not None else eng.random_feeds(seed)
            with generated_inputs_named(data, lambda: eng.random_feeds(seed)):
                prof = eng.profile_layers(feeds, runs=runs, warmup=warmup, reporter=rep)
            self.workspace.save_result("profile", prof.to_dict(), prof.to_frame(), result=prof)
            rep.write("info", f"profiled {len(prof.frame)} layers, total {prof.total_ms:.3f} ms", "profile")
            return prof
        return self._run("profile", work, background)

    def results(self, kind: str | None = None):
        """Results stored in the workspace by this and earlier sessions, oldest first."""
        import pandas as pd
        rows = [{"id": r["id"], "kind": r["kind"], "engine": r.get("engine"), "created": r.get("created"),
                 "path": r["path"]} for r in self.workspace.results(kind)]
        return pd.DataFrame(rows, columns=["id", "kind", "engine", "created", "path"])

    def load_result(self, result_id: str) -> Any:
        """Reload a stored benchmark or profile as its result object (others as the JSON dict)."""
        from .analysis.benchmark import BenchmarkResult
        from .tables import LayerProfile
        for rec in self.workspace.results():
            if rec["id"] == result_id:
                parse = {"benchmark": BenchmarkResult.from_dict, "profile": LayerProfile.from_dict}.get(rec["kind"])
                if parse is None:
                    return rec
                try:
                    return parse(rec)
                except Exception as exc:
                    from .errors import WorkspaceError
                    raise WorkspaceError(f"result {result_id!r} in {rec['path']} is damaged ({type(exc).__name__}: "
                                         f"{exc}); the other results are unaffected") from None
        raise ConfigError(f"no result {result_id!r} in {self.workspace.path}; see Session.results()")

    # ---- precision lab ---------------------------------------------------------------------
    def mark_outputs(self, names: Iterable[str] | str) -> list[str]:
        """Mark tensors (a list, or "all") as outputs of engines built from now on; [] clears. Returns the names."""
        return lab.mark_outputs(self, names)

    def marking_effect(self, engine: EngineSpec = None) -> dict[str, Any]:
        """Whether marked outputs changed the executed graph: optimized node counts and op types, marked vs not."""
        return lab.marking_effect(self, engine)

    def calibrate(self, data: Any, method: str = "auto", tensors: Iterable[str] | None = None,
                  num_batches: int | None = None, percentile: float = 99.99, dtype: str = "int8",
                  background: bool = False, **build_args: Any):
        """Calibrate activation ranges over `data` (iterable of input dicts, or N random batches) on this session's
        backend (build arguments such as providers= choose how); the table is registered with this session (pass
        it as calibration=) and saved as a TensorRT cache in the workspace. `method`: "auto" (default: minmax or
        percentile per tensor, whichever has the smaller quantization error on its histogram; it holds up on the
        real-model corpus, docs/calibration.md), "minmax", "entropy" (TensorRT's EntropyCalibration2),
        "percentile" or "mse". The histograms are kept: `table.clipping()` compares every method's
        clipping, `table.with_method(m)` gives another method's table without running the model; warnings
        (too few samples, heavy clipping) go to the log and `table.warnings`."""
        return lab.calibrate(self, data, method, tensors, num_batches, percentile, dtype, background, **build_args)

    def compare(self, reference: EngineSpec = "fp32", candidate: EngineSpec = "fp16", outputs: Iterable[str] | str = "all",
                data: Any = None, batch: int | None = None, max_segment_bytes: int | str = "128MiB", seed: int = 0,
                background: bool = False, **build_args: Any):
        """Layer-wise comparison of `candidate` against `reference` over `data` (None: one random batch, int N:
        N random batches, or an iterable of input dicts), streamed batch by batch; written to the workspace.
        `outputs`: "all" tensors, a list of names, or None / [] for the model's own outputs."""
        return lab.compare(self, reference, candidate, outputs, data, batch, max_segment_bytes, seed, background,
                           **build_args)

    def fp16_range_report(self, data: Any = None, batch: int | None = None, outputs: Iterable[str] | str = "all",
                          max_segment_bytes: int | str = "128MiB", seed: int = 0, dims: Mapping[str, int] | None = None,
                          background: bool = False, shapes: Mapping[str, Any] | None = None):
        """Run FP32 with every tensor marked and summarise each tensor's magnitudes against FP16/BF16 ranges
        (plus the weights' conversion report); written to the workspace."""
        return lab.fp16_range_report(self, data, batch, outputs, max_segment_bytes, seed, dims, background, shapes)

    def find_fp32_layers(self, candidate: str = "fp16", tolerance: float = 1e-2, data: Any = None,
                         batch: int | None = None, metric: str = "rel_rms_err", max_steps: int = 24, seed: int = 0,
                         calibration: Any = None, dims: Mapping[str, int] | None = None, resume: bool = False,
                         background: bool = False, shapes: Mapping[str, Any] | None = None):
        """Smallest set of nodes to pin to FP32 so the final outputs' `metric` <= tolerance: candidates ranked by a
        layer-wise comparison, then bisection over that ranking; every step tried is in `.steps`.
        Each step is stored in the workspace as it is measured (find_fp32/<id>/trials.jsonl); resume=True takes
        the steps an earlier search with the same data and settings stored instead of building them again."""
        return lab.find_fp32_layers(self, candidate, tolerance, data, batch, metric, max_steps, seed, calibration,
                                    dims, resume, background, shapes)

    def evaluate(self, data: Any, labels: Any, metric: Any = "top1", precisions: Iterable[Any] = ("fp32", "fp16"),
                 output: str | None = None, background: bool = False, **build_args: Any):
        """Task accuracy per precision over labelled batches (top1, top5 or metric(outputs, labels) -> float);
        flags a drop of more than 1 point against fp32 (TensorRT FAQ 14). Written to the workspace."""
        return lab.evaluate(self, data, labels, metric, precisions, output, background, **build_args)

    def pareto(self, candidates: Iterable[str] = ("fp16",), pins: Iterable[int] = (0, 2, 4),
               batch: Iterable[int] | int | None = None, metric: Any = "rel_rms_err", data: Any = None,
               labels: Any = None, objective: str = "latency", trial_s: float = 0.3, warmup: int = 5,
               max_points: int = 32, seed: int = 0, background: bool = False, **build_args: Any):
        """Accuracy against speed for precision variants x fp32 pins (the top-k of find_fp32_layers' ranking) x
        batch: accuracy is compare()'s `metric` of the worst model output against fp32 over `data` (with labels:
        evaluate()'s `metric`), speed a benchmark; `.front` is the non-dominated set, `.figure()` the chart
        (fp32 marked). More than max_points points: Optuna's NSGA-II picks max_points. Stored as measured.
        build_args (shapes=, dims=) hold for every engine built."""
        return lab.pareto(self, candidates, pins, batch, metric, data, labels, objective, trial_s, warmup,
                          max_points, seed, background, **build_args)

    def parser_report(self, precision: str = "fp32", **build_args: Any):
        """Per ONNX node of the variant: supported by the TensorRT parser or not, with the parser's reason."""
        return lab.parser_report(self, precision, **build_args)

    # ---- tuning --------------------------------------------------------------------------
    def sweep(self, batch: Iterable[int] | int | None = None, precision: Iterable[str] | str = ("fp32",),
              concurrency: Iterable[int] | int = (1,), options: Mapping[str, Iterable[Any]] | None = None,
              iterations: int | None = None, duration: float | None = None, warmup: int = 10, seed: int = 0,
              monitor: Any = True, resume: bool | str = False, budget_s: float | None = None,
              keep_engines: bool = False, background: bool = False, executor: str = "inline",
              address: str | None = None, num_cpus: int | None = None, retry_failed: bool = False,
              **build_args: Any):
        """Benchmark every (options, precision, batch, concurrency) point; each point is appended to the
        workspace as it finishes. batch defaults to the one shapes= fixes (axis 0), else 1; a batch that
        contradicts shapes= is refused at that point. resume=True runs only the points of the same sweep not finished yet;
        resume="<sweep id>" does so for a stored sweep (its stored axes; the axis arguments are ignored).
        iterations are per thread; concurrency c runs c threads, each with its own runner (context).
        monitor: True (0.1 s samples), an interval in seconds, a Monitor, or False. budget_s stops starting
        new points after that many seconds; the engines the sweep built are closed once it is done with each
        (keep_engines=True keeps them loaded, up to the session's max_engines).
        A point that fails (a precision the backend lacks) is recorded as failed; resume skips it unless
        retry_failed=True. executor="ray" runs each point as a Ray task that builds its engine where it measures
        it (a whole GPU per point on a GPU host, else its threads' CPUs), on the cluster at `address` or, without
        one, a local cluster of `num_cpus` CPUs; the records stream back into the same points.jsonl."""
        return tuning.sweep(self, batch, precision, concurrency, options, iterations, duration, warmup, seed, monitor,
                            resume, budget_s, keep_engines, background, executor, address, num_cpus, retry_failed,
                            **build_args)

    def load_sweep(self, sweep_id: str):
        """A sweep read back from the workspace (finished points; `.missing` is what resume would run)."""
        return tuning.load_sweep(self, sweep_id)

    def check_thread_safety(self, engine: EngineSpec = None, threads: int = 8, iterations: int = 20,
                            distinct_inputs: bool = False, timing_iterations: int | None = None, seed: int = 0,
                            data: Mapping[str, np.ndarray] | None = None, background: bool = False):
        """Run `threads` threads on one engine at once; outputs must equal the single-thread run (TensorRT
        FAQ 2); reports mismatches, max abs diff and throughput scaling. Written to the workspace."""
        return tuning.check_thread_safety(self, engine, threads, iterations, distinct_inputs, timing_iterations,
                                          seed, data, background)

    def tune(self, objective: str = "throughput", budget_s: float = 120.0, batch: int | Iterable[int] | None = None,
             include: Iterable[str] | None = None, exclude: Iterable[str] = (), trial_s: float | None = None,
             warmup: int = 5, concurrency: int = 1, confirm: bool = True, keep_engines: bool = False,
             precisions: Iterable[str] | None = None, resume: bool = False, background: bool = False,
             executor: str = "inline", address: str | None = None, num_cpus: int | None = None,
             search: str = "greedy", seed: int = 0, max_trials: int | None = None, **build_args: Any):
        """Search precision, batch (when a list) and the backend's options within `budget_s` seconds; every
        trial is in `.to_frame()`, the best against the default in `.ratio`. Written to the workspace.
        precisions limits the precisions tried (default: fp32, fp16, bf16 where the backend has them).
        Each trial is stored in the workspace as it finishes (tunes/<id>/trials.jsonl); resume=True takes the
        trials stored by an earlier tune with the same search space and settings instead of running them again.
        executor="ray" runs each trial as a Ray task that builds and measures where it runs (see sweep); the
        search and the trial store stay in this process.
        search="greedy" (coordinate search) or "optuna" (Optuna's TPE sampler, seeded by seed; needs
        trtlab[optuna]; its study is kept in tunes/<id>/optuna.journal, so resume=True continues it);
        max_trials caps the search trials (the default configuration included)."""
        return tuning.tune(self, objective, budget_s, batch, include, exclude, trial_s, warmup, concurrency, confirm,
                           keep_engines, precisions, resume, background, executor, address, num_cpus,
                           search=search, seed=seed, max_trials=max_trials, **build_args)

    # ---- UI and report -------------------------------------------------------------------
    def panel(self, monitor: bool = True, monitor_interval: float = 0.25) -> Any:
        """The interactive dashboard (Build, Outputs, Layers, Precision, Monitor, Log tabs); display it in a cell."""
        return hook("panel")(self, monitor=monitor, monitor_interval=monitor_interval)

    def monitor(self, interval: float = 0.1, device: int = 0, source: str = "auto",
                max_samples: int | None = None) -> Any:
        """A utilization Monitor (NVML, else psutil) to use as `with s.monitor(0.1) as m:`; kept for report()."""
        from .monitor import Monitor
        mon = Monitor(interval=interval, device=device, source=source, max_samples=max_samples)
        self._ui_monitors.append(mon)
        return mon

    def report(self, path: str | Path = "report.html", title: str | None = None) -> Path:
        """Write one self-contained HTML report (environment, engines, results, charts; plotly inlined)."""
        return hook("report")(self, path, title=title)

    # ---- display -------------------------------------------------------------------------
    def __repr__(self) -> str:
        return (f"<Session {self.model.name} backend={self.backend.name} engines={len(self._engines)} "
                f"workspace={self.workspace.path}>")

    def _repr_html_(self) -> str:
        from .markup import esc
        return (f"<b>trtlab Session</b> {esc(self.model.name)}: {len(self.model.node_names)} nodes, "
                f"{self.model.parameter_count:,} parameters, backend <code>{esc(self.backend.name)}</code>, "
                f"{len(self._engines)} engine(s) loaded, workspace <code>{esc(str(self.workspace.path))}</code>")


class SessionInfo(dict):
    """Session.info(): the environment report plus the model, backend and workspace."""

    def __str__(self) -> str:
        m = self["model"]
        return (f"{self['environment']}\nmodel: {m['name']} opset {m['opset']}, {m['nodes']} nodes, "
                f"{m['parameters']:,} parameters ({m['parameter_bytes'] / 2**20:.1f} MiB; "
                f"{m['parameters_by_source']['initializers']:,} in initializers, "
                f"{m['parameters_by_source']['constants']:,} in Constant nodes)\n"
                f"backend: {self['backend']}\nworkspace: {self['workspace']} ({self['engines']} engines stored)")

    def _repr_html_(self) -> str:
        from .markup import esc
        return "<pre>" + esc(str(self)) + "</pre>"

