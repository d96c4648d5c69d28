"""Tuning on a session: sweeps over batch/precision/concurrency/options, tune's search, the thread-safety check.
Each function takes the Session it works for."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np
import onnx

from .backends.base import Engine
from .config import ShapeRange, check_options
from .errors import ConfigError
from .events import Reporter, job_reporter

if TYPE_CHECKING:
    from .session import EngineSpec, Session


def sweep(session: "Session", batch: Iterable[int] | int, precision: Iterable[str] | str,
          concurrency: Iterable[int] | int, options: Mapping[str, Iterable[Any]] | None, iterations: int | None,
          duration: float | None, warmup: int, seed: int, monitor: Any, resume: bool | str, budget_s: float | None,
          keep_engines: bool, background: bool, executor: Any = "inline", address: str | None = None,
          num_cpus: int | None = None, retry_failed: bool = False, **build_args: Any):
    """Benchmark every (options, precision, batch, concurrency) point, each appended to the workspace as it
    finishes (see Session.sweep)."""
    from .analysis.executors import make_executor
    from .analysis.sweep import SweepSpec, SweepStore, run_sweep
    runner = make_executor(executor, address, num_cpus)
    check_options(session.backend, build_args)  # before any point runs: a typo would fail every point
    for name, values in (options or {}).items():
        for value in (values if isinstance(values, (list, tuple)) else [values]):
            check_options(session.backend, {name: value})
    if isinstance(resume, str):
        store = SweepStore(session.workspace.sweep_dir(resume), root=session.workspace.root)
        spec = store.spec()
    else:
        if batch is None:
            batch = shapes_batch(session.model, build_args.get("shapes")) or 1
        spec = SweepSpec.make(batch, precision, concurrency, options, iterations, duration, warmup, seed,
                              build_args)
        store = SweepStore(session.workspace.sweep_dir(spec.id), root=session.workspace.root)
    fixed = {k: v for k, v in spec.to_dict()["build"].items()}

    def work(rep: Reporter):
        if runner.name != "inline":
            result = run_sweep(spec, None, store, rep, resume=bool(resume), budget_s=budget_s, executor=runner,
                               measure=PointTask(WorkerModel.of(session), spec.to_dict(), fixed,
                                                 monitor_interval(monitor)),
                               resources=point_resources_for(session, runner, fixed), retry_failed=retry_failed)
            session.workspace.save_result("sweep", result.to_dict(), result.to_frame(), result=result)
            return result
        before = session._engine_cache.loaded()
        mon, own = sweep_monitor(monitor)

        def build(prec: str, b: int, opts: Mapping[str, Any]) -> Engine:
            return session.build(precision=prec, batch=b, **{**fixed, **dict(opts)})

        def release(engine: Engine) -> None:
            if not keep_engines and engine.config not in before:
                session._engine_cache.release(engine)
        try:
            result = run_sweep(spec, build, store, rep, resume=bool(resume), monitor=mon, budget_s=budget_s,
                               release=release, retry_failed=retry_failed)
        finally:
            if own:
                mon.stop()
                session.workspace.save_file(store.folder / "monitor.csv", mon.csv_text(),  # nvidia-smi columns
                                            what="monitor trace")
        session.workspace.save_result("sweep", result.to_dict(), result.to_frame(), result=result)
        return result
    return session._run(f"sweep {spec.id}", work, background)


def shapes_batch(model: Any, shapes: Mapping[str, Any] | None) -> int | None:
    """The batch that shapes= fixes: axis 0 of the shape given for a dynamic-batch input (the same in min, opt and
    max), else None."""
    for inp in model.inputs:
        if shapes and inp.name in shapes and inp.shape and not (isinstance(inp.shape[0], int) and inp.shape[0] > 0):
            r = ShapeRange.of(shapes[inp.name])
            if r.min[:1] == r.opt[:1] == r.max[:1] and r.opt:
                return int(r.opt[0])
    return None


def monitor_interval(monitor: Any) -> float | None:
    """The sampling interval a worker's own monitor uses for `monitor` (a Monitor object stays in this process,
    so a worker samples at its interval), or None for no monitor."""
    if monitor is False or monitor is None:
        return None
    if monitor is True:
        return 0.1
    if isinstance(monitor, (int, float)):
        return float(monitor)
    return float(getattr(monitor, "interval", 0.1))


@dataclass(frozen=True)
class WorkerModel:
    """What a worker needs to open its own session on the model: the ONNX bytes (or, for a model whose weights
    are external files, its path, which must be readable on every node), its name, the backend and the outputs
    the session marks."""

    name: str
    backend: str
    marked: tuple[str, ...]
    opener: Any  # the Session class (pickled by reference, so the worker imports it)
    data: bytes | None = None
    path: str | None = None

    @classmethod
    def of(cls, session: "Session") -> "WorkerModel":
        """The session's model as a worker opens it."""
        m = session.model
        external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.proto.graph.initializer)
        if external and m.path is not None:
            return cls(m.name, session.backend.name, tuple(session._marked), type(session), path=str(m.path))
        return cls(m.name, session.backend.name, tuple(session._marked), type(session),
                   data=m.proto.SerializeToString())

    def session(self) -> "Session":
        """This worker process's session on the model (opened once, on a private workspace: the driver's
        workspace is written by the driver alone)."""
        import tempfile
        key = (self.name, self.backend, self.marked, self.path, hash(self.data))
        s = _WORKER_SESSIONS.get(key)
        if s is None:
            s = self.opener(self.data if self.data is not None else self.path, backend=self.backend, name=self.name,
                        workspace=tempfile.mkdtemp(prefix="trtlab-worker-"))
            if self.marked:
                s.mark_outputs(list(self.marked))
            _WORKER_SESSIONS[key] = s
        return s


_WORKER_SESSIONS: dict[tuple, "Session"] = {}


@dataclass(frozen=True)
class PointTask:
    """One sweep point as a task: the worker opens its session, builds the point's engine there and measures it
    with the same per-point function as an in-process sweep (analysis.sweep.measure_point)."""

    model: WorkerModel
    spec: dict[str, Any]
    fixed: dict[str, Any]
    monitor_interval: float | None = None

    def __call__(self, point: dict[str, Any]) -> dict[str, Any]:
        from .analysis.sweep import SweepSpec, measure_point
        session = self.model.session()
        spec = SweepSpec.from_dict(self.spec)

        def engine_for(p: Mapping[str, Any]) -> Engine:
            return session.build(precision=p["precision"], batch=p["batch"], **{**self.fixed, **dict(p["options"])})
        mon = None
        if self.monitor_interval is not None:
            from .monitor import Monitor
            mon = Monitor(interval=self.monitor_interval).start()
        rep = job_reporter("sweep point", session.events, session.log)
        try:
            return measure_point(point, spec, engine_for, rep, mon)
        finally:
            if mon is not None:
                mon.stop()


def point_resources_for(session: "Session", runner: Any, fixed: Mapping[str, Any]):
    """What each point reserves on the executor: a whole GPU where the cluster has GPUs and the point can use one
    (a TensorRT backend, or ONNX Runtime not pinned to the CPU provider), else its threads' CPUs."""
    from .analysis.executors import point_resources
    gpu = runner.gpus > 0 and not _cpu_only(session.backend.name, fixed.get("providers"))

    def resources(point: Mapping[str, Any]) -> dict[str, int]:
        threads = dict(point["options"]).get("threads", fixed.get("threads"))
        return point_resources(gpu, threads, int(point["concurrency"]))
    return resources


def _cpu_only(backend: str, providers: Any) -> bool:
    if not backend.startswith("onnxruntime") or providers is None:
        return False
    names = [providers] if isinstance(providers, str) else list(providers)
    return all("CPU" in str(n) for n in names)


def sweep_monitor(monitor: Any) -> tuple[Any, bool]:
    """(the Monitor a sweep records with, whether the sweep started it and so stops it)."""
    if monitor is False or monitor is None:
        return None, False
    if monitor is True or isinstance(monitor, (int, float)):
        from .monitor import Monitor
        return Monitor(interval=0.1 if monitor is True else float(monitor)).start(), True
    return monitor, False


def load_sweep(session: "Session", sweep_id: str):
    """A sweep read back from the session's workspace."""
    from .analysis.sweep import load_sweep as _load
    folder = session.workspace.sweep_dir(sweep_id)
    if not (folder / "spec.json").exists():
        known = sorted(p.name for p in (session.workspace.path / "sweeps").glob("sweep-*")) \
            if (session.workspace.path / "sweeps").exists() else []
        raise ConfigError(f"no sweep {sweep_id!r} in {session.workspace.path / 'sweeps'}; stored: {known}")
    return _load(folder)


def check_thread_safety(session: "Session", engine: "EngineSpec", threads: int, iterations: int,
                        distinct_inputs: bool, timing_iterations: int | None, seed: int,
                        data: Mapping[str, np.ndarray] | None, background: bool):
    """`threads` threads on one engine at once against the single-thread run; saved as produced."""
    from .analysis.threads import check_thread_safety as _check

    def work(rep: Reporter):
        eng = session.engine(engine)
        report = _check(eng, threads=threads, iterations=iterations, feeds=data, seed=seed,
                        distinct_inputs=distinct_inputs, timing_iterations=timing_iterations, reporter=rep)
        session.workspace.save_result("thread_safety", report.to_dict(), report.to_frame(), result=report)
        rep.write("info" if report.identical else "error", report.describe(), "threads")
        return report
    return session._run("thread safety", work, background)


def tune(session: "Session", objective: str, budget_s: float, batch: int | Iterable[int] | None,
         include: Iterable[str] | None, exclude: Iterable[str], trial_s: float | None, warmup: int, concurrency: int,
         confirm: bool, keep_engines: bool, precisions: Iterable[str] | None, resume: bool, background: bool,
         executor: Any = "inline", address: str | None = None, num_cpus: int | None = None,
         search: str = "greedy", seed: int = 0, max_trials: int | None = None, **build_args: Any):
    """Search precision, batch and the backend's options within `budget_s` seconds, each trial stored as it
    finishes and, with resume, taken from the store when an earlier tune of the same settings measured it
    (see Session.tune). search="optuna" keeps its study in the tune's folder (optuna.journal)."""
    from .analysis.executors import make_executor
    from .analysis.trials import TrialStore
    from .analysis.tune import make_trial, run_tune, search_space
    runner = make_executor(executor, address, num_cpus)
    batches = [batch] if isinstance(batch, int) or batch is None else [int(b) for b in batch]
    trial_s = trial_s if trial_s is not None else max(0.3, min(3.0, budget_s / 40))
    base = {k: v for k, v in build_args.items() if v is not None}
    check_options(session.backend, base)
    if search not in ("greedy", "optuna"):
        raise ConfigError(f"search must be 'greedy' or 'optuna', got {search!r}")

    def work(rep: Reporter):
        before = session._engine_cache.loaded()
        first = session.build(**{**base, "batch": batches[0]})
        on_cuda = first.device != "CPU"
        backend = session.backend
        precs = [p for p in backend.precisions if precisions is None or p in set(precisions)]
        space = search_space(backend.options(), precs, on_cuda,
                             batches if len(batches) > 1 else None, include=include, exclude=exclude)
        rep.write("info", f"tune over {', '.join(f'{k} {v}' for k, v in space.items()) or 'nothing'} "
                          f"within {budget_s:g} s", "tune")

        def build(args: dict[str, Any]) -> Engine:
            return session.build(**args)

        def release(engine: Engine) -> None:
            if not keep_engines and engine.config not in before and engine is not first:
                session._engine_cache.release(engine)
        if runner.name == "inline":
            trial = make_trial(build, {**base, "batch": batches[0]}, None, trial_s, warmup, concurrency,
                               release=release)
        else:
            trial = remote_trial(runner, TrialTask(WorkerModel.of(session), {**base, "batch": batches[0]}, trial_s,
                                                   warmup, concurrency),
                                 point_resources_for(session, runner, base), concurrency)
        default = {"batch": batches[0]} if len(batches) > 1 else None
        settings = {
            "backend": backend.name, "objective": objective, "space": space, "base": base, "batch": batches[0],
            "trial_s": trial_s, "warmup": warmup, "concurrency": concurrency, "confirm": confirm,
            "default": default}
        if search != "greedy":  # greedy tunes keep the ids they had before strategies existed
            settings.update({"search": search, "seed": seed})
        store = TrialStore(session.workspace, "tunes", "tune", settings)
        stored = store.start(resume)
        if stored:
            rep.write("info", f"tune resumes {store.id}: {len(stored)} trial(s) stored in {store.folder}", "tune")
        strategy: Any = search
        if search == "optuna":
            from .analysis.tune_optuna import OptunaSearch
            from .workspace import is_link
            journal = store.folder / "optuna.journal"
            if not resume and journal.exists() and not is_link(journal):
                session.workspace.rename(journal, store.folder / f"optuna-{time.time_ns()}.journal")  # kept
            strategy = OptunaSearch(session.workspace.library_file(journal, "the Optuna study journal"),
                                    store.id, seed)
        result = run_tune(space, trial, rep, objective, budget_s, default=default, confirm=confirm,
                          on_trial=store.append, stored=stored, search=strategy, max_trials=max_trials)
        session.workspace.save_result("tune", result.to_dict(), result.to_frame(), result=result)
        return result
    return session._run("tune", work, background)


@dataclass(frozen=True)
class TrialTask:
    """One tune trial as a task: the worker opens its session, builds the trial's engine there and benchmarks it
    with the same trial function as an in-process tune (analysis.tune.make_trial)."""

    model: WorkerModel
    base: dict[str, Any]
    duration: float
    warmup: int
    concurrency: int

    def __call__(self, params: Mapping[str, Any]) -> Any:
        from .analysis.tune import make_trial
        session = self.model.session()
        trial = make_trial(lambda args: session.build(**args), self.base, None, self.duration, self.warmup,
                           self.concurrency)
        return trial(params, job_reporter("tune trial", session.events, session.log))


def remote_trial(runner: Any, task: TrialTask, resources: Any, concurrency: int):
    """A tune trial function that runs `task` on the executor and waits for it (the search decides the next trial
    from this one's score); a worker lost mid-trial fails the trial with WorkerLostError."""
    from .analysis.executors import Lost
    from .errors import WorkerLostError

    def trial(params: Mapping[str, Any], reporter: Reporter) -> Any:
        for _, value in runner.map(task, [dict(params)],
                                   lambda p: resources({"options": p, "concurrency": concurrency})):
            if isinstance(value, Lost):
                raise WorkerLostError(f"the Ray worker running tune trial {dict(params)} was lost ({value.error})")
            return value
        raise WorkerLostError(f"tune trial {dict(params)} returned nothing")
    return trial
