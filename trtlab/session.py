"""Session: the hub a notebook user (and the UI) works with — build, run, benchmark, profile, compare."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .backends import get_backend
from .backends.base import Engine
from .config import BuildConfig
from .errors import ConfigError
from .events import EventBus, Job, Reporter, SessionLog
from .model import Model, ModelSource
from .workspace import Workspace

EngineSpec = Any  # an Engine, a precision string ("fp16"), or a dict of build() arguments


class Session:
    """One model, one backend, one workspace: engines cached by BuildConfig and results written as produced."""

    def __init__(self, model: ModelSource, backend: str = "onnxruntime", workspace: str | Path | None = None,
                 name: str | None = None) -> None:
        self.model = Model.load(model, name=name)
        self.backend = get_backend(backend)
        self.events = EventBus()
        self.log = SessionLog(self.events)
        self.workspace = Workspace(workspace, self.model.hash, self.model.name)
        self._attach_backend()
        self._engines: dict[BuildConfig, Engine] = {}
        self._calibrations: dict[str, Any] = {}
        self._variants: dict[tuple, Any] = {}
        self._marked: tuple[str, ...] = ()
        self.jobs: list[Job] = []
        self.log.write("info", f"session on {self.model.name} ({len(self.model.node_names)} nodes) with backend "
                               f"{self.backend.name}, workspace {self.workspace.path}")

    def _attach_backend(self) -> None:
        if hasattr(self.backend, "cache_dir"):  # TensorRT timing/runtime caches live with the workspace
            self.backend.cache_dir = self.workspace.root / "tensorrt-cache"

    def use_backend(self, name: str) -> None:
        """Switch this session to another backend ("onnxruntime", "tensorrt", "tensorrt-rtx", "auto")."""
        self.backend = get_backend(name)
        self._attach_backend()
        self.log.write("info", f"backend is now {self.backend.name}")

    # ---- environment ---------------------------------------------------------------------
    def info(self) -> "SessionInfo":
        """Versions, providers, backends, CPU/GPU, the model and the workspace."""
        from .environment import environment
        return SessionInfo(environment=environment(), model=self.model.summary(), backend=self.backend.name,
                           workspace=str(self.workspace.path), engines=len(self.workspace.list_engines()))

    # ---- jobs ----------------------------------------------------------------------------
    def submit(self, task: str, fn: Callable[[Reporter], Any]) -> Job:
        """Run `fn(reporter)` in a worker thread; progress and logs go to this session's events."""
        job = Job(task, fn, self.events, self.log)
        self.jobs.append(job)
        return job

    def _run(self, task: str, fn: Callable[[Reporter], Any], background: bool) -> Any:
        if background:
            return self.submit(task, fn)
        return fn(Reporter(task, self.events, self.log))

    def cancel_all(self) -> None:
        """Ask every running job of this session to stop."""
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
        if batch is None and not shapes and self._needs_batch():
            batch = 1
        if outputs is None and self._marked:
            outputs = self._marked
        return BuildConfig.make(backend=self.backend.name, precision=precision, batch=batch, shapes=shapes,
                                dims=dims, outputs=outputs, fp32_layers=fp32_layers,
                                calibration=self._register_calibration(calibration), providers=providers,
                                threads=threads, inter_op_threads=inter_op_threads, **options)

    def _needs_batch(self) -> bool:
        return any(i.shape and not (isinstance(i.shape[0], int) and i.shape[0] > 0) for i in self.model.inputs)

    def _register_calibration(self, calibration: Any) -> str | None:
        if calibration is None:
            return None
        if isinstance(calibration, (str, Path)) and calibration in self._calibrations:
            return str(calibration)
        if isinstance(calibration, (str, Path)):
            from .precision.calibration import CalibrationTable
            calibration = CalibrationTable.load(calibration)
        key = hashlib.sha256(calibration.to_text().encode()).hexdigest()[:16]
        self._calibrations[key] = calibration
        return key

    def calibration_table(self, key: str) -> Any:
        """A calibration table registered with this session by its key (as stored in BuildConfig)."""
        return self._calibrations[key]

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
        reporter = reporter or Reporter("build", self.events, self.log)
        cached = self._engines.get(config)
        if cached is not None and not cached._closed:
            cached.metadata["cache"] = "memory"
            reporter.write("info", f"cache hit (memory): {config.describe()}", "build")
            return cached
        from .precision import make_variant
        self.backend.check_config(config)
        t0 = time.perf_counter()
        record = self.workspace.find_engine(config)
        if record is not None:
            engine = self._load_cached(config, record, reporter)
            if engine is not None:
                return engine
        # the variant depends only on what changes the model, so sweeps over batch or backend options reuse it
        from .precision import VARIANT_OPTIONS
        vkey = (config.precision, config.fp32_layers, config.outputs, config.calibration,
                tuple(config.option(k) for k in VARIANT_OPTIONS))
        variant = self._variants.get(vkey)
        if variant is None:
            calibration = self._calibrations.get(config.calibration) if config.calibration else None
            reporter.update(0, None, "preparing model variant")
            variant = make_variant(self.model, config, calibration)
            self._variants[vkey] = variant
            for note in variant.notes:
                reporter.write("info", note, "precision")
        engine = self.backend.build(self.model, variant, config, reporter)
        engine.input_shapes = self._input_shapes(config)
        engine.metadata.update({"cache": "built", "total_build_seconds": time.perf_counter() - t0,
                                "model": self.model.name, "model_hash": self.model.hash})
        files = {"model.onnx": variant.model.SerializeToString()}
        files.update(getattr(engine, "workspace_files", lambda: {})())
        self.workspace.save_engine(config, {**engine.metadata, "marked_outputs": variant.marked_outputs,
                                            "notes": variant.notes}, files)
        self._engines[config] = engine
        return engine

    def _load_cached(self, config: BuildConfig, record: Path, reporter: Reporter) -> Engine | None:
        import json

        import onnx

        from .backends.base import Variant
        try:
            meta = json.loads((record / "metadata.json").read_text())
            proto = onnx.load(str(record / "model.onnx"))
        except Exception as exc:
            reporter.write("warning", f"ignoring damaged cache entry {record} ({exc}); building again", "build")
            return None
        variant = Variant(model=proto, precision=config.precision, marked_outputs=meta.get("marked_outputs", []),
                          notes=meta.get("notes", []))
        from .errors import PlanError
        try:
            engine = self.backend.load(self.model, variant, config, record, meta, reporter)
        except PlanError as exc:  # e.g. a library upgrade: rebuild and overwrite instead of failing
            reporter.write("warning", f"cached engine {record.name} cannot be used ({exc}); building again", "build")
            return None
        engine.input_shapes = self._input_shapes(config)
        engine.metadata["cache"] = "disk"
        reporter.write("info", f"cache hit (disk, {record.name}): {config.describe()}", "build")
        self._engines[config] = engine
        return engine

    def _input_shapes(self, config: BuildConfig) -> dict[str, tuple[int, ...]]:
        shapes = {k: r.opt for k, r in config.shapes}
        return self.model.resolve_input_shapes(batch=config.batch[1] if config.batch else None, shapes=shapes,
                                               dims=dict(config.dims))

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
        import pandas as pd
        rows = []
        for rec in self.workspace.list_engines():
            c, m = rec["config"], rec["metadata"]
            rows.append({"key": rec["key"], "backend": c.get("backend"), "precision": c.get("precision"),
                         "batch": c.get("batch"), "outputs": len(c.get("outputs") or []),
                         "fp32_layers": len(c.get("fp32_layers") or []), "device": m.get("device"),
                         "build_seconds": m.get("build_seconds"), "size_bytes": m.get("size_bytes"),
                         "loaded": any(k.key == rec["key"] for k in self._engines)})
        return pd.DataFrame(rows, columns=["key", "backend", "precision", "batch", "outputs", "fp32_layers",
                                           "device", "build_seconds", "size_bytes", "loaded"])

    # ---- benchmark and profile -----------------------------------------------------------
    def benchmark(self, engine: EngineSpec = None, iterations: int | None = None, duration: float | None = None,
                  warmup: int = 10, data: Mapping[str, np.ndarray] | None = None, seed: int = 0,
                  monitor: Any = False, mode: str | None = None, cuda_graph: bool | None = None,
                  background: bool = False):
        """Time an engine (trtexec-style summary); the result is written to the workspace at once.

        mode="execute"|"enqueue" and cuda_graph=True choose how a TensorRT engine is launched (TensorRT FAQ 8)."""
        from .analysis.benchmark import run_benchmark

        def work(rep: Reporter):
            eng = self.engine(engine)
            if (mode is not None or cuda_graph is not None) and not hasattr(eng, "set_mode"):
                raise ConfigError(f"mode=/cuda_graph= apply to TensorRT engines; {eng.name} runs on "
                                  f"{eng.backend_name} (for ONNX Runtime CUDA graphs build with "
                                  f"cuda_options={{'enable_cuda_graph': '1'}})")
            saved = (eng.mode, eng.cuda_graph) if hasattr(eng, "set_mode") else None
            mon = self._monitor_for(monitor)
            try:
                if saved is not None:
                    eng.set_mode(mode, cuda_graph)
                result = run_benchmark(eng, data, iterations=iterations, duration=duration, warmup=warmup,
                                       seed=seed, reporter=rep, monitor=mon)
                result.mode = getattr(eng, "run_mode", result.mode)
            finally:
                if saved is not None:
                    eng.set_mode(*saved)
                if mon is not None and monitor is True:
                    mon.stop()
            self.workspace.save_result("benchmark", result.to_dict(), result.to_frame())
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
        def work(rep: Reporter):
            eng = self.engine(engine)
            feeds = eng.check_feeds(data) if data is not None else eng.random_feeds(seed)
            prof = eng.profile_layers(feeds, runs=runs, warmup=warmup, reporter=rep)
            self.workspace.save_result("profile", prof.to_dict(), prof.to_frame())
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
                if rec["kind"] == "benchmark":
                    return BenchmarkResult.from_dict(rec)
                if rec["kind"] == "profile":
                    return LayerProfile.from_dict(rec)
                return rec
        raise ConfigError(f"no result {result_id!r} in {self.workspace.path}; see Session.results()")

    # ---- precision lab (issue 4) ----------------------------------------------------------
    def mark_outputs(self, names: Iterable[str] | str) -> list[str]:
        """Mark tensors (a list, or "all") as outputs of engines built from now on; [] clears. Returns the names."""
        from .precision import mark_outputs
        wanted = ("*",) if names == "all" else ((names,) if isinstance(names, str) else tuple(names))
        if wanted:
            mark_outputs(self.model.proto, self.model, wanted)  # ConfigError naming unknown tensors
        self._marked = wanted
        chosen = self.model.activation_names() if wanted == ("*",) else list(wanted)
        self.log.write("info", f"marked {len(chosen)} tensor(s) as outputs; marking can block fusions "
                               f"(see Session.marking_effect)", "precision")
        return chosen

    def marking_effect(self, engine: EngineSpec = None) -> dict[str, Any]:
        """Whether marked outputs changed the executed graph: optimized node counts and op types, marked vs not."""
        from .analysis.compare import marking_effect
        marked = self.engine(engine)
        plain = self.build_config(marked.config.replace(outputs=[]))
        effect = marking_effect(marked, plain)
        self.log.write("warning" if effect["changed"] else "info", effect["note"], "precision")
        return effect

    def calibrate(self, data: Any, method: str = "entropy", tensors: Iterable[str] | None = None,
                  num_batches: int | None = None, percentile: float = 99.99, dtype: str = "int8",
                  background: bool = False):
        """Calibrate activation ranges over `data` (iterable of input dicts, or N random batches); the table is
        registered with this session (pass it as calibration=) and saved as a TensorRT cache in the workspace."""
        from .precision.calibration import calibrate

        def work(rep: Reporter):
            table = calibrate(self.model.proto, data, method=method, tensors=tensors, num_batches=num_batches,
                              percentile=percentile, dtype=dtype,
                              progress=lambda done, total: rep.update(done, total, "calibrating"))
            key = self._register_calibration(table)
            path = table.save(self._calibration_dir() / f"{key}.cache")
            self.workspace.save_result("calibration", {"key": key, "method": method, "cache": str(path),
                                                       "header": table.header, "tensors": len(table)},
                                       table.to_frame())
            rep.write("info", f"calibrated {len(table)} tensors ({method}); cache {path}", "calibration")
            return table
        return self._run("calibrate", work, background)

    def _calibration_dir(self) -> Path:
        d = self.workspace.path / "calibration"
        d.mkdir(exist_ok=True)
        return d

    def _lab_variant(self, spec: EngineSpec, rep: Reporter, **defaults: Any):
        """(config, variant without marked outputs) for an engine spec: precision str, dict of build args, Engine."""
        from .precision import make_variant
        if isinstance(spec, Engine):
            config = spec.config
        else:
            args = {"precision": spec} if isinstance(spec, str) else dict(spec or {})
            config = self.make_config(**{**defaults, **args})
        config = config.replace(outputs=[])
        self.backend.check_config(config)
        calib = self._calibrations.get(config.calibration) if config.calibration else None
        return config, make_variant(self.model, config, calib)

    def _segment_runners(self, specs: list[EngineSpec], names: list[str], max_segment_bytes: int,
                         est_batch: int, rep: Reporter, **defaults: Any) -> tuple[list[Any], list[str]]:
        dims = dict(defaults.get("dims") or {})
        from .analysis.segments import SegmentedRunner, group_by_bytes, split, tensor_bytes
        from .backends.base import Variant
        quiet = Reporter("segment", None, None, cancel=rep.cancel)
        variants = [self._lab_variant(s, rep, **defaults) for s in specs]
        sizes = tensor_bytes(variants[0][1].model, est_batch, dims)
        groups = group_by_bytes(names, sizes, max_segment_bytes)
        runners, notes = [], []
        for config, variant in variants:
            notes += variant.notes
            # no memory arena: an arena keeps each segment's peak allocated after its run, which would
            # add up to every tensor of the model again (backend option cpu_mem_arena)
            config = config.replace(options={"cpu_mem_arena": False})
            runners.append(SegmentedRunner(split(variant.model, groups), lambda m, c=config, v=variant: self.backend.build(
                self.model, Variant(model=m, precision=v.precision, fp32_layers=v.fp32_layers), c, quiet)))
            rep.update(0, None, f"built {len(groups)} segment(s) of {config.describe()}")
        notes.append(f"{len(names)} tensors compared in {len(groups)} segment(s) of at most "
                     f"{max_segment_bytes / 2**20:.0f} MiB of reference outputs each (estimated at batch {est_batch})")
        return runners, notes

    def _lab_batches(self, data: Any, batch: int | None, seed: int = 0, dims: Mapping[str, int] | None = None):
        from .analysis.compare import iter_batches
        from .precision.calibration import _check_batch, _input_specs

        def random(i: int) -> dict[str, np.ndarray]:
            shapes = self.model.resolve_input_shapes(batch=batch or 1, dims=dict(dims or {}))
            return self.model.random_inputs(shapes, seed=seed + i)
        batches, total = iter_batches(data, random)
        specs = _input_specs(self.model.proto)

        def checked():
            from .errors import InputError
            for i, b in enumerate(batches):
                try:
                    yield _check_batch(b, i, specs)
                except InputError as exc:
                    raise InputError(str(exc).replace("calibration batch", "batch")) from None
        return checked(), total

    def _lab_names(self, outputs: Iterable[str] | str) -> list[str]:
        from .precision import mark_outputs
        wanted = ("*",) if outputs == "all" else ((outputs,) if isinstance(outputs, str) else tuple(outputs))
        if not wanted:
            return [o.name for o in self.model.outputs]
        mark_outputs(self.model.proto, self.model, wanted)  # ConfigError naming unknown tensors
        return self.model.activation_names() if wanted == ("*",) else list(dict.fromkeys(wanted))

    def compare(self, reference: EngineSpec = "fp32", candidate: EngineSpec = "fp16", outputs: Iterable[str] | str = "all",
                data: Any = None, batch: int | None = None, max_segment_bytes: int | str = "128MiB", seed: int = 0,
                background: bool = False, **build_args: Any):
        """Layer-wise comparison of `candidate` against `reference` over `data` (None: one random batch, int N:
        N random batches, or an iterable of input dicts), streamed batch by batch; written to the workspace."""
        from .analysis.compare import ComparisonResult, compare_streaming, stats_frame
        from .config import parse_size

        def work(rep: Reporter):
            names = self._lab_names(outputs)
            b = batch or self._batch_of(data)
            runners, notes = self._segment_runners([reference, candidate], names, parse_size(max_segment_bytes), b,
                                                   rep, batch=batch, **build_args)
            cand_prec = runners[1].engines[0].variant.precision if runners[1].engines else "fp16"
            range_prec = "bf16" if cand_prec == "bf16" else "fp16"
            try:
                batches, total = self._lab_batches(data, batch, seed, build_args.get("dims"))
                stats, done = compare_streaming(runners[0], runners[1], names, batches, total, range_prec, rep)
            finally:
                for r in runners:
                    r.close()
            result = ComparisonResult(stats_frame(stats), self._spec_name(reference), self._spec_name(candidate),
                                      done, range_prec, notes)
            div = result.first_divergence()
            if div:
                result.notes.append(f"first divergence at {div['tensor']} (#{div['index']}): {div['reason']}")
            self.workspace.save_result("compare", result.to_dict(), result.frame)
            rep.write("info", repr(result), "compare")
            return result
        return self._run("compare", work, background)

    def _batch_of(self, data: Any) -> int:
        if isinstance(data, Mapping):
            first = next(iter(data.values()), None)
            return int(np.asarray(first).shape[0]) if first is not None and np.ndim(first) else 1
        if isinstance(data, (list, tuple)) and data and isinstance(data[0], Mapping):
            return self._batch_of(data[0])
        return 1

    def _spec_name(self, spec: EngineSpec) -> str:
        if isinstance(spec, Engine):
            return spec.config.describe()
        if isinstance(spec, str):
            return spec
        spec = dict(spec)
        pins = len(spec.get("fp32_layers") or ())
        return str(spec.get("precision", "fp32")) + (f" ({pins} fp32 pins)" if pins else "")

    def fp16_range_report(self, data: Any = None, batch: int | None = None, outputs: Iterable[str] | str = "all",
                          max_segment_bytes: int | str = "128MiB", seed: int = 0, dims: Mapping[str, int] | None = None,
                          background: bool = False):
        """Run FP32 with every tensor marked and summarise each tensor's magnitudes against FP16/BF16 ranges
        (plus the weights' conversion report); written to the workspace."""
        from .analysis.range_report import RangeReport, RangeStats, range_frame
        from .config import parse_size
        from .precision.lowp import convert

        def work(rep: Reporter):
            names = self._lab_names(outputs)
            b = batch or self._batch_of(data)
            (runner,), notes = self._segment_runners(["fp32"], names, parse_size(max_segment_bytes), b, rep,
                                                     batch=batch, dims=dims)
            stats = {n: RangeStats(n) for n in names}
            done = 0
            try:
                batches, total = self._lab_batches(data, batch, seed, dims)
                for feeds in batches:
                    for si, vals in runner.run(feeds):
                        for name in list(vals):
                            stats[name].update(vals.pop(name))
                        rep.update(done * len(runner.segments) + si + 1,
                                   total * len(runner.segments) if total else None, f"batch {done + 1}")
                    done += 1
            finally:
                runner.close()
            if done == 0:
                from .errors import InputError
                raise InputError("no batches: the data iterable yielded nothing")
            weights = convert(self.model.proto, "fp16").weight_report
            report = RangeReport(range_frame([stats[n] for n in names]), done, weights, notes)
            self.workspace.save_result("fp16_range", report.to_dict(), report.frame)
            rep.write("info", repr(report), "precision")
            return report
        return self._run("fp16 range report", work, background)

    def find_fp32_layers(self, candidate: str = "fp16", tolerance: float = 1e-2, data: Any = None,
                         batch: int | None = None, metric: str = "rel_rms_err", max_steps: int = 24, seed: int = 0,
                         calibration: Any = None, dims: Mapping[str, int] | None = None, background: bool = False):
        """Smallest set of nodes to pin to FP32 so the final outputs' `metric` <= tolerance: candidates ranked by a
        layer-wise comparison, then bisection over that ranking; every step tried is in `.steps`."""
        from .analysis.find_fp32 import find_fp32_layers

        def work(rep: Reporter):
            result = find_fp32_layers(self, candidate, tolerance, data, batch, metric, max_steps, seed,
                                      calibration, rep, dims)
            self.workspace.save_result("find_fp32_layers", result.to_dict(), result.steps)
            rep.write("info", repr(result), "precision")
            return result
        return self._run("find fp32 layers", work, background)

    def evaluate(self, data: Any, labels: Any, metric: Any = "top1", precisions: Iterable[Any] = ("fp32", "fp16"),
                 output: str | None = None, background: bool = False, **build_args: Any):
        """Task accuracy per precision over labelled batches (top1, top5 or metric(outputs, labels) -> float);
        flags a drop of more than 1 point against fp32 (TensorRT FAQ 14). Written to the workspace."""
        from .analysis.evaluate import evaluate

        def work(rep: Reporter):
            engines = {self._spec_name(p): self.engine(p if not isinstance(p, str) else {"precision": p, **build_args})
                       for p in precisions}
            frame = evaluate(engines, data, labels, metric, output, rep)
            self.workspace.save_result("evaluate", {"metric": metric if isinstance(metric, str) else
                                                    getattr(metric, "__name__", "custom"),
                                                    "rows": frame.to_dict("records")}, frame)
            return frame
        return self._run("evaluate", work, background)

    # ---- TensorRT (issue 5) ---------------------------------------------------------------
    def parser_report(self, precision: str = "fp32", **build_args: Any):
        """Per ONNX node of the variant: supported by the TensorRT parser or not, with the parser's reason."""
        from .errors import ConfigError as _ConfigError
        if not hasattr(self.backend, "parser_report"):
            raise _ConfigError(f"parser_report() needs a TensorRT backend; this session uses {self.backend.name}: "
                               f"open it with backend='tensorrt' or 'tensorrt-rtx'")
        from .precision import make_variant
        config = self.make_config(precision, **build_args)
        calibration = self._calibrations.get(config.calibration) if config.calibration else None
        return self.backend.parser_report(self.model, make_variant(self.model, config, calibration))

    # ---- tuning (issue 7) -----------------------------------------------------------------
    def sweep(self, batch: Iterable[int] | int = (1,), precision: Iterable[str] | str = ("fp32",),
              concurrency: Iterable[int] | int = (1,), options: Mapping[str, Iterable[Any]] | None = None,
              iterations: int | None = None, duration: float | None = None, warmup: int = 10, seed: int = 0,
              monitor: Any = True, resume: bool | str = False, budget_s: float | None = None,
              keep_engines: bool = True, background: bool = False, **build_args: Any):
        """Benchmark every (options, precision, batch, concurrency) point; each point is appended to the
        workspace as it finishes. resume=True runs only the points of the same sweep not finished yet;
        resume="<sweep id>" does so for a stored sweep (its stored axes; the axis arguments are ignored).
        iterations are per thread; concurrency c runs c threads, each with its own runner (context).
        monitor: True (0.1 s samples), an interval in seconds, a Monitor, or False. budget_s stops starting
        new points after that many seconds; keep_engines=False closes the engines the sweep built."""
        from .analysis.sweep import SweepSpec, SweepStore, run_sweep
        root = self.workspace.path / "sweeps"
        if isinstance(resume, str):
            store = SweepStore(root / resume)
            spec = store.spec()
        else:
            spec = SweepSpec.make(batch, precision, concurrency, options, iterations, duration, warmup, seed,
                                  build_args)
            store = SweepStore(root / spec.id)
        fixed = {k: v for k, v in spec.to_dict()["build"].items()}

        def work(rep: Reporter):
            before = {c for c, e in self._engines.items() if not e._closed}
            mon, own = self._sweep_monitor(monitor)

            def build(prec: str, b: int, opts: Mapping[str, Any]) -> Engine:
                return self.build(precision=prec, batch=b, **{**fixed, **dict(opts)})

            def release(engine: Engine) -> None:
                if not keep_engines and engine.config not in before:
                    engine.close()
            try:
                result = run_sweep(spec, build, store, rep, resume=bool(resume), monitor=mon, budget_s=budget_s,
                                   release=release)
            finally:
                if own:
                    mon.stop()
                    mon.to_csv(store.folder / "monitor.csv")  # nvidia-smi columns
            self.workspace.save_result("sweep", result.to_dict(), result.to_frame())
            return result
        return self._run(f"sweep {spec.id}", work, background)

    def _sweep_monitor(self, monitor: Any) -> tuple[Any, bool]:
        if monitor is False or monitor is None:
            return None, False
        if monitor is True or isinstance(monitor, (int, float)):
            from .monitor import Monitor
            return Monitor(interval=0.1 if monitor is True else float(monitor)).start(), True
        return monitor, False

    def load_sweep(self, sweep_id: str):
        """A sweep read back from the workspace (finished points; `.missing` is what resume would run)."""
        from .analysis.sweep import load_sweep
        folder = self.workspace.path / "sweeps" / sweep_id
        if not (folder / "spec.json").exists():
            known = sorted(p.name for p in (self.workspace.path / "sweeps").glob("sweep-*")) \
                if (self.workspace.path / "sweeps").exists() else []
            raise ConfigError(f"no sweep {sweep_id!r} in {self.workspace.path / 'sweeps'}; stored: {known}")
        return load_sweep(folder)

    def check_thread_safety(self, engine: EngineSpec = None, threads: int = 8, iterations: int = 20,
                            distinct_inputs: bool = False, timing_iterations: int | None = None, seed: int = 0,
                            data: Mapping[str, np.ndarray] | None = None, background: bool = False):
        """Run `threads` threads on one engine at once; outputs must equal the single-thread run (TensorRT
        FAQ 2); reports mismatches, max abs diff and throughput scaling. Written to the workspace."""
        from .analysis.threads import check_thread_safety

        def work(rep: Reporter):
            eng = self.engine(engine)
            report = check_thread_safety(eng, threads=threads, iterations=iterations, feeds=data, seed=seed,
                                         distinct_inputs=distinct_inputs, timing_iterations=timing_iterations,
                                         reporter=rep)
            self.workspace.save_result("thread_safety", report.to_dict(), report.to_frame())
            rep.write("info" if report.identical else "error", report.describe(), "threads")
            return report
        return self._run("thread safety", work, background)

    def tune(self, objective: str = "throughput", budget_s: float = 120.0, batch: int | Iterable[int] | None = None,
             include: Iterable[str] | None = None, exclude: Iterable[str] = (), trial_s: float | None = None,
             warmup: int = 5, concurrency: int = 1, confirm: bool = True, keep_engines: bool = False,
             precisions: Iterable[str] | None = None, background: bool = False, **build_args: Any):
        """Search precision, batch (when a list) and the backend's options within `budget_s` seconds; every
        trial is in `.to_frame()`, the best against the default in `.ratio`. Written to the workspace.
        precisions limits the precisions tried (default: fp32, fp16, bf16 where the backend has them)."""
        from .analysis.tune import make_trial, run_tune, search_space
        batches = [batch] if isinstance(batch, int) or batch is None else [int(b) for b in batch]
        trial_s = trial_s if trial_s is not None else max(0.3, min(3.0, budget_s / 40))
        base = {k: v for k, v in build_args.items() if v is not None}

        def work(rep: Reporter):
            before = {c for c, e in self._engines.items() if not e._closed}
            first = self.build(**{**base, "batch": batches[0]})
            on_cuda = first.device != "CPU"
            precs = [p for p in self.backend.precisions if precisions is None or p in set(precisions)]
            space = search_space(self.backend.options(), precs, on_cuda,
                                 batches if len(batches) > 1 else None, include=include, exclude=exclude)
            rep.write("info", f"tune over {', '.join(f'{k} {v}' for k, v in space.items()) or 'nothing'} "
                              f"within {budget_s:g} s", "tune")

            def build(args: dict[str, Any]) -> Engine:
                return self.build(**args)

            def release(engine: Engine) -> None:
                if not keep_engines and engine.config not in before and engine is not first:
                    engine.close()
            trial = make_trial(build, {**base, "batch": batches[0]}, None, trial_s, warmup, concurrency,
                               release=release)
            default = {"batch": batches[0]} if len(batches) > 1 else None
            result = run_tune(space, trial, rep, objective, budget_s, default=default, confirm=confirm)
            self.workspace.save_result("tune", result.to_dict(), result.to_frame())
            return result
        return self._run("tune", work, background)

    # ---- UI and report (issue 6) ----------------------------------------------------------
    def panel(self, monitor: bool = True, monitor_interval: float = 0.25) -> Any:
        """The interactive dashboard (Build, Outputs, Layers, Precision, Monitor, Log tabs); display it in a cell."""
        from .widgets import Panel
        return Panel(self, monitor=monitor, monitor_interval=monitor_interval)

    def monitor(self, interval: float = 0.1, device: int = 0, source: str = "auto",
                max_samples: int | None = None) -> Any:
        """A utilization Monitor (NVML, else psutil) to use as `with s.monitor(0.1) as m:`; kept for report()."""
        from .monitor import Monitor
        mon = Monitor(interval=interval, device=device, source=source, max_samples=max_samples)
        self.__dict__.setdefault("_ui_monitors", []).append(mon)
        return mon

    def report(self, path: str | Path = "report.html", title: str | None = None) -> Path:
        """Write one self-contained HTML report (environment, engines, results, charts; plotly inlined)."""
        from .report import write_report
        return write_report(self, path, title=title)


    # ---- display -------------------------------------------------------------------------
    def __repr__(self) -> str:
        return (f"<Session {self.model.name} backend={self.backend.name} engines={len(self._engines)} "
                f"workspace={self.workspace.path}>")

    def _repr_html_(self) -> str:
        from html import escape
        return (f"<b>trtlab Session</b> {escape(self.model.name)}: {len(self.model.node_names)} nodes, "
                f"{self.model.parameter_count:,} parameters, backend <code>{self.backend.name}</code>, "
                f"{len(self._engines)} engine(s) loaded, workspace <code>{escape(str(self.workspace.path))}</code>")


class SessionInfo(dict):
    """Session.info(): the environment report plus the model, backend and workspace."""

    def __str__(self) -> str:
        m = self["model"]
        return (f"{self['environment']}\nmodel: {m['name']} opset {m['opset']}, {m['nodes']} nodes, "
                f"{m['parameters']:,} parameters ({m['parameter_bytes'] / 2**20:.1f} MiB)\n"
                f"backend: {self['backend']}\nworkspace: {self['workspace']} ({self['engines']} engines stored)")

    def _repr_html_(self) -> str:
        from html import escape
        return "<pre>" + escape(str(self)) + "</pre>"
