"""The precision lab of a session: marked outputs, layer-wise comparison, FP16 range report, FP32 pin search,
calibration, task accuracy and the parser report. Each function takes the Session it works for."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from .backends.base import Engine
from .events import Reporter
from .feeds import generated_inputs_named
from .precision.variant import Variant

if TYPE_CHECKING:
    from .config import BuildConfig
    from .session import EngineSpec, Session


# ---- marked outputs -----------------------------------------------------------------------------
def mark_outputs(session: "Session", names: Iterable[str] | str) -> list[str]:
    """Mark tensors (a list, or "all") as outputs of engines the session builds from now on; [] clears."""
    from .precision import mark_outputs as _mark
    wanted = wanted_outputs(names, "mark_outputs")
    if wanted:
        _mark(session.model.proto, session.model, wanted)  # ConfigError naming unknown tensors
    session._marked = wanted
    chosen = session.model.activation_names() if wanted == ("*",) else list(wanted)
    session.log.write("info", f"marked {len(chosen)} tensor(s) as outputs; marking can block fusions "
                              f"(see Session.marking_effect)", "precision")
    return chosen


def marking_effect(session: "Session", engine: "EngineSpec" = None) -> dict[str, Any]:
    """Whether marked outputs changed the executed graph: optimized node counts and op types, marked vs not."""
    from .analysis.compare import marking_effect as _effect
    marked = session.engine(engine)
    plain = session.build_config(marked.config.replace(outputs=[]))
    effect = _effect(marked, plain)
    session.log.write("warning" if effect["changed"] else "info", effect["note"], "precision")
    return effect


# ---- calibration --------------------------------------------------------------------------------
def calibrate(session: "Session", data: Any, method: str, tensors: Iterable[str] | None, num_batches: int | None,
              percentile: float, dtype: str, background: bool, **build_args: Any):
    """Calibrate activation ranges over `data`, running the model on the session's backend (an fp32 engine with
    the calibrated tensors marked, built with `build_args`, e.g. providers=); the table is registered with the
    session and saved as a TensorRT cache in the workspace."""
    from contextlib import contextmanager

    from .precision.calibration import calibrate as _calibrate

    def work(rep: Reporter):
        @contextmanager
        def runner(names: list[str]):
            config = session.make_config(**{**build_args, "precision": "fp32", "outputs": names})
            session.backend.check_config(config)
            variant = session._engine_cache.make_variant(config)
            engine = session.backend.build(session.model, variant, config,
                                           rep.child(f"{rep.task}: build", events=False, log=True))
            try:
                yield lambda feed: engine.run(feed, names)
            finally:
                engine.close()

        table = _calibrate(session.model.proto, data, method=method, tensors=tensors, num_batches=num_batches,
                           percentile=percentile, dtype=dtype, runner=runner,
                           progress=lambda done, total: rep.update(done, total, "calibrating"))
        key = session._engine_cache.register_calibration(table)
        path = session.workspace.save_file(Path("calibration") / f"{key}.cache", table.to_text(), table,
                                           "calibration cache")
        _save_provenance(session, table, Path("calibration") / f"{key}.cache")
        session.workspace.save_result("calibration", {"key": key, "method": method, "cache": str(path),
                                                      "header": table.header, "tensors": len(table)},
                                      table.to_frame(), result=table)
        rep.write("info", f"calibrated {len(table)} tensors ({method}); cache {path}", "calibration")
        for message in table.warnings:
            rep.write("warning", message, "calibration")
        return table
    return session._run("calibrate", work, background)


def _save_provenance(session: "Session", table: Any, cache: Path) -> None:
    """Record the model a calibration was made for beside its cache (the cache keeps TensorRT's format), so a
    later validate() or build with it can tell when the model changed."""
    from .precision.calibration.coverage import provenance, sidecar_path
    from .workspace import dumps
    table.provenance = provenance(session.model, table.header, table.version_source)
    session.workspace.save_file(sidecar_path(cache), dumps(table.provenance), table, "calibration provenance")


# ---- what the lab runs --------------------------------------------------------------------------
def analysis_config(session: "Session", config: "BuildConfig") -> "BuildConfig":
    """The config every accuracy analysis (compare, find_fp32_layers, evaluate) builds for `config`: with the
    backend's reference options, which make the engine compute in the precision it is named after (ONNX Runtime's
    CPU provider: fp16_mode="faithful"), so one candidate gives one error in all of them. The one place that
    decides it; a config that sets those options itself keeps them."""
    extra = session._backend(config.backend).reference_options(config)
    return config.replace(options=extra) if extra else config


def analysis_note(session: "Session", config: "BuildConfig") -> str | None:
    """The sentence an analysis result carries about how its candidate computes fp16, or None: faithful, or a
    native engine the backend would have made faithful (its errors are below an fp16 GPU engine's)."""
    if config.option("fp16_mode") == "faithful":
        return (f"{config.precision} computed with fp16_mode='faithful': every fp16 tensor stored in fp16, fp32 "
                f"arithmetic inside each node (as TensorRT's fp16 kernels accumulate in fp32); ONNX Runtime's CPU "
                f"provider would otherwise run most fp16 nodes in fp32 between casts and show less error than an "
                f"fp16 GPU engine (see Engine.effective_precision)")
    if config.option("fp16_mode") == "native" and session._backend(config.backend).reference_options(
            config.replace(options={"fp16_mode": None})):
        return (f"{config.precision} computed with fp16_mode='native' on ONNX Runtime's CPU provider: most fp16 "
                f"nodes run in fp32 between casts, so this candidate is NOT computed in fp16 and its errors are "
                f"below an fp16 GPU engine's (drop fp16_mode for the faithful engine)")
    return None


def analysis_engine(session: "Session", spec: "EngineSpec", **defaults: Any) -> Engine:
    """The engine an accuracy analysis runs for a spec (precision str, dict of build args or Engine)."""
    if isinstance(spec, Engine):
        config = spec.config
    else:
        args = {"precision": spec} if isinstance(spec, str) else dict(spec or {})
        config = session.make_config(**{**defaults, **args})
    wanted = analysis_config(session, config)
    return spec if isinstance(spec, Engine) and wanted == spec.config else session.build_config(wanted)


def lab_variant(session: "Session", spec: "EngineSpec", rep: Reporter,
                **defaults: Any) -> tuple["BuildConfig", Variant]:
    """(config, variant without marked outputs) for an engine spec: precision str, dict of build args, Engine;
    the config is the analysis config (analysis_config)."""
    if isinstance(spec, Engine):
        config = spec.config
    else:
        args = {"precision": spec} if isinstance(spec, str) else dict(spec or {})
        config = session.make_config(**{**defaults, **args})
    config = analysis_config(session, config.replace(outputs=[]))
    session.backend.check_config(config)
    return config, session._engine_cache.make_variant(config)


def segment_runners(session: "Session", specs: list["EngineSpec"], names: list[str], max_segment_bytes: int,
                    est_batch: int, rep: Reporter, **defaults: Any) -> tuple[list[Any], list[str]]:
    """One SegmentedRunner per spec, each running the model in segments whose marked outputs (the tensors
    `names`) take at most `max_segment_bytes` at batch `est_batch`; and the notes of what was built."""
    dims = dict(defaults.get("dims") or {})
    from .analysis.segments import SegmentedRunner, group_by_bytes, split, tensor_bytes
    from .precision.bodies import expose
    backend, model = session.backend, session.model
    quiet = rep.child("segment", events=False)
    variants = [lab_variant(session, s, rep, **defaults) for s in specs]
    sizes = tensor_bytes(variants[0][1].model, est_batch, dims)
    groups = group_by_bytes(names, sizes, max_segment_bytes)
    runners, notes = [], []
    for config, variant in variants:
        notes += variant.notes
        note = analysis_note(session, config)
        if note and note not in notes:
            notes.append(note)
        # no memory arena: an arena keeps each segment's peak allocated after its run, which would
        # add up to every tensor of the model again (backend option cpu_mem_arena)
        config = config.replace(options={"cpu_mem_arena": False})
        exposed = expose(variant.model, names)[0]  # tensors inside If/Loop/Scan bodies become outputs of their own
        runners.append(SegmentedRunner(split(exposed, groups), lambda m, c=config, v=variant: backend.build(
            model, Variant(model=m, precision=v.precision, fp32_layers=v.fp32_layers), c, quiet)))
        rep.update(0, None, f"built {len(groups)} segment(s) of {config.describe()}")
    notes.append(f"{len(names)} tensors compared in {len(groups)} segment(s) of at most "
                 f"{max_segment_bytes / 2**20:.0f} MiB of reference outputs each (estimated at batch {est_batch})")
    return runners, notes


def lab_batches(session: "Session", data: Any, batch: int | None, seed: int = 0,
                dims: Mapping[str, int] | None = None, shapes: Mapping[str, Any] | None = None):
    """(checked input batches, their count or None) from data: None, N random batches (of `shapes`, `dims` and
    `batch`, as the engines are built) or an iterable of dicts."""
    from .batches import iter_batches
    from .feeds import check_feeds
    model = session.model

    def random(i: int) -> dict[str, np.ndarray]:
        resolved = model.resolve_input_shapes(batch=batch or 1, dims=dict(dims or {}), shapes=dict(shapes or {}))
        return model.random_inputs(resolved, seed=seed + i)
    batches, total = iter_batches(data, random)
    inputs = model.inputs
    return (check_feeds(inputs, b, f"batch {i}") for i, b in enumerate(batches)), total


def first_batch(session: "Session", batch: int | None, seed: int, dims: Mapping[str, int] | None,
                shapes: Mapping[str, Any] | None = None):
    """The first random batch lab_batches makes (for a message about generated inputs)."""
    return next(iter(lab_batches(session, None, batch, seed, dims, shapes)[0]))


def wanted_outputs(outputs: Any, what: str) -> tuple[str, ...]:
    """("*",) for "all", (name,) for one name, the names of an iterable, () for None or [] (the model's outputs);
    ConfigError for anything else."""
    from .errors import ConfigError
    if outputs is None:
        return ()
    if isinstance(outputs, str):
        return ("*",) if outputs == "all" else (outputs,)
    try:
        wanted = tuple(outputs)
    except TypeError:
        wanted = None
    if wanted is None or not all(isinstance(n, str) for n in wanted):
        raise ConfigError(f"{what}={outputs!r}: pass 'all', a tensor name, a list of tensor names, or None / [] "
                          f"for the model's own outputs")
    return wanted


def lab_names(session: "Session", outputs: Iterable[str] | str) -> list[str]:
    """The tensors a lab run looks at: "all" activations, the named ones, or [] for the model outputs."""
    from .precision import mark_outputs as _mark
    model = session.model
    wanted = wanted_outputs(outputs, "outputs")
    if not wanted:
        return [o.name for o in model.outputs]
    _mark(model.proto, model, wanted)  # ConfigError naming unknown tensors
    return model.observable_names() if wanted == ("*",) else list(dict.fromkeys(wanted))


def batch_of(data: Any) -> int:
    """The batch size of an input dict (or of the first of a list of them); 1 when it has none."""
    if isinstance(data, Mapping):
        first = next(iter(data.values()), None)
        return int(np.asarray(first).shape[0]) if first is not None and np.ndim(first) else 1
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], Mapping):
        return batch_of(data[0])
    return 1


def spec_name(spec: "EngineSpec") -> str:
    """A short label of an engine spec, e.g. 'fp16 (3 fp32 pins)'."""
    if isinstance(spec, Engine):
        return spec.config.describe()
    if isinstance(spec, str):
        return spec
    spec = dict(spec)
    pins = len(spec.get("fp32_layers") or ())
    return str(spec.get("precision", "fp32")) + (f" ({pins} fp32 pins)" if pins else "")


# ---- analyses -----------------------------------------------------------------------------------
def compare(session: "Session", reference: "EngineSpec", candidate: "EngineSpec", outputs: Iterable[str] | str,
            data: Any, batch: int | None, max_segment_bytes: int | str, seed: int, background: bool,
            **build_args: Any):
    """Layer-wise comparison of `candidate` against `reference`, streamed batch by batch; saved as produced."""
    from .analysis.compare import ComparisonResult, compare_streaming, stats_frame, with_sources
    from .precision.graph import compared_sources
    from .config import parse_size

    def work(rep: Reporter):
        names = lab_names(session, outputs)
        b = batch or batch_of(data)
        runners, notes = segment_runners(session, [reference, candidate], names, parse_size(max_segment_bytes), b,
                                         rep, batch=batch, **build_args)
        cand_prec = runners[1].engines[0].variant.precision if runners[1].engines else "fp16"
        range_prec = "bf16" if cand_prec == "bf16" else "fp16"
        try:
            dims, shapes = build_args.get("dims"), build_args.get("shapes")
            batches, total = lab_batches(session, data, batch, seed, dims, shapes)
            from .precision.graph import weight_tensors
            with generated_inputs_named(data, lambda: first_batch(session, batch, seed, dims, shapes)):
                stats, done = compare_streaming(runners[0], runners[1], names, batches, total, range_prec, rep,
                                                weights=weight_tensors(session.model.proto.graph))
        finally:
            for r in runners:
                r.close()
        frame = with_sources(stats_frame(stats), compared_sources(session.model.proto.graph, names))
        result = ComparisonResult(frame, spec_name(reference), spec_name(candidate), done, range_prec, notes,
                                  precision=cand_prec)
        div = result.first_divergence()
        if div:
            result.notes.append(f"first divergence at {div['tensor']} (#{div['index']}): {div['reason']}")
        session.workspace.save_result("compare", result.to_dict(), result.frame, result=result)
        rep.write("info", repr(result), "compare")
        return result
    return session._run("compare", work, background)


def fp16_range_report(session: "Session", data: Any, batch: int | None, outputs: Iterable[str] | str,
                      max_segment_bytes: int | str, seed: int, dims: Mapping[str, int] | None, background: bool,
                      shapes: Mapping[str, Any] | None = None):
    """FP32 with every tensor marked, each tensor's magnitudes against FP16/BF16 ranges; saved as produced."""
    from .analysis.range_report import RangeReport, RangeStats, range_frame
    from .config import parse_size
    from .precision.lowp import convert

    def work(rep: Reporter):
        names = lab_names(session, outputs)
        b = batch or batch_of(data)
        (runner,), notes = segment_runners(session, ["fp32"], names, parse_size(max_segment_bytes), b, rep,
                                           batch=batch, dims=dims, shapes=shapes)
        from .precision.graph import weight_tensors
        weights = weight_tensors(session.model.proto.graph)
        stats = {n: RangeStats(n, "weight" if n in weights else "activation") for n in names}
        done = 0
        try:
            batches, total = lab_batches(session, data, batch, seed, dims, shapes)
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
        weight_report = convert(session.model.proto, "fp16").weight_report
        report = RangeReport(range_frame([stats[n] for n in names]), done, weight_report, notes)
        session.workspace.save_result("fp16_range", report.to_dict(), report.frame, result=report)
        rep.write("info", repr(report), "precision")
        return report
    return session._run("fp16 range report", work, background)


def find_fp32_layers(session: "Session", candidate: str, tolerance: float, data: Any, batch: int | None,
                     metric: str, max_steps: int, seed: int, calibration: Any, dims: Mapping[str, int] | None,
                     resume: bool, background: bool, shapes: Mapping[str, Any] | None = None):
    """The smallest set of nodes to pin to FP32 for `metric` <= tolerance; each step stored as it is measured
    and, with resume, taken from the store when an earlier search of the same data and settings measured it.
    The search gets plain callables: score(pins) builds and runs the pinned candidate on the session's backend
    against the FP32 outputs, ranking() runs a layer-wise comparison."""
    from .analysis.find_fp32 import check_search, error_gain_ranking, find_fp32_layers as _find, worst_output_error
    from .analysis.trials import TrialStore
    from .model import all_nodes, subgraphs

    def work(rep: Reporter):
        check_search(tolerance, metric)
        batches = list(lab_batches(session, data, batch, seed, dims, shapes)[0])
        if not batches:
            from .errors import InputError
            raise InputError("no batches: the data iterable yielded nothing")
        b = batch or batch_of(batches[0])
        cand = analysis_config(session, session.make_config(candidate, batch=b, dims=dims, shapes=shapes,
                                                            calibration=calibration))
        store = TrialStore(session.workspace, "find_fp32", "find-fp32", {
            "candidate": cand.to_dict(), "tolerance": tolerance, "metric": metric, "max_steps": max_steps,
            "data": batches_digest(batches)})
        stored = store.start(resume)
        if stored:
            rep.write("info", f"find_fp32_layers resumes {store.id}: {len(stored)} record(s) in {store.folder}",
                      "precision")
        outputs = [o.name for o in session.model.outputs]
        base = {"batch": b, "calibration": calibration, "dims": dims, "shapes": shapes}
        quiet = rep.child("find", events=False)

        def run(spec: dict[str, Any]) -> list[dict[str, np.ndarray]]:
            config, variant = lab_variant(session, spec, rep)
            engine = session.backend.build(session.model, variant, config, quiet)
            try:
                return [engine.run(f, outputs) for f in batches]
            finally:
                engine.close()

        reference: list[dict[str, np.ndarray]] = []  # FP32 outputs, run once the first new step needs them

        def score(pins: list[str]) -> float:
            if not reference:
                reference.extend(run({"precision": "fp32", "batch": b, "dims": dims, "shapes": shapes}))
            return worst_output_error(reference, run({**base, "precision": candidate, "fp32_layers": pins}),
                                      outputs, metric)

        def ranking() -> list[str]:
            comp = session.compare("fp32", {**base, "precision": candidate}, outputs="all", data=batches, batch=b,
                                   dims=dims, shapes=shapes)
            # every node at any depth, so nodes inside If/Loop/Scan bodies rank (and get pinned) by their own error;
            # a control-flow node is left out: its error is its bodies' nodes' doing
            return error_gain_ranking(comp.frame, [n for n in all_nodes(session.model.proto.graph) if not subgraphs(n)])

        with generated_inputs_named(data, lambda: batches[0]):
            result = _find(score, ranking, tolerance, metric, max_steps,
                           progress=lambda i, n, text: rep.update(i, n, text), on_step=store.append, stored=stored)
        note = analysis_note(session, cand)
        if note:
            result.notes.append(note)
        result.converted_fraction = lab_variant(session, {**base, "precision": candidate, "fp32_layers": result.pins},
                                                rep)[1].converted_fraction
        session.workspace.save_result("find_fp32_layers", result.to_dict(), result.steps, result=result)
        rep.write("info", repr(result), "precision")
        return result
    return session._run("find fp32 layers", work, background)


def batches_digest(batches: list[Mapping[str, np.ndarray]]) -> str:
    """sha256 over every batch's input names, dtypes, shapes and bytes: the same data, the same digest."""
    import hashlib
    h = hashlib.sha256()
    for feeds in batches:
        for name in sorted(feeds):
            arr = np.asarray(feeds[name])  # (tobytes is C order; ascontiguousarray would make a 0-d array 1-d)
            h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
            h.update(arr.tobytes())
    return h.hexdigest()


def evaluate(session: "Session", data: Any, labels: Any, metric: Any, precisions: Iterable[Any], output: str | None,
             background: bool, **build_args: Any):
    """Task accuracy per precision over labelled batches; saved as produced."""
    from .analysis.evaluate import evaluate as _evaluate

    def work(rep: Reporter):
        # a dict spec adds to (or overrides) the shared build args: shapes/dims/batch hold for every precision;
        # each engine is the analysis engine of its spec (the same candidate compare and find_fp32_layers run)
        engines = {spec_name(p): analysis_engine(session, {**build_args, "precision": p} if isinstance(p, str) else
                                                 {**build_args, **p} if isinstance(p, Mapping) else p)
                   for p in precisions}
        frame = _evaluate(engines, data, labels, metric, output, rep)
        frame["computed_as"] = ["fp16 storage, fp32 arithmetic (fp16_mode='faithful')"
                                if e.config.option("fp16_mode") == "faithful" else
                                e.measured_precision.summary if e.measured_precision is not None else ""
                                for e in engines.values()]
        for name, e in engines.items():
            if e.measured_precision is not None:
                rep.write("info" if e.measured_precision.faithful else "warning",
                          f"evaluate {name}: {e.measured_precision.summary}", "precision")
        session.workspace.save_result("evaluate", {"metric": metric if isinstance(metric, str) else
                                                   getattr(metric, "__name__", "custom"),
                                                   "rows": frame.to_dict("records")}, frame, result=frame)
        return frame
    return session._run("evaluate", work, background)


def parser_report(session: "Session", precision: str, **build_args: Any):
    """Per ONNX node of the variant: taken by the backend's parser or not, with the parser's reason."""
    backend = session.backend
    variant = None
    if backend.has_parser_report:  # otherwise the base contract refuses, naming the backend
        variant = session._engine_cache.make_variant(session.make_config(precision, **build_args))
    return backend.parser_report(session.model, variant)


def pareto(session: "Session", candidates: Iterable[str], pins: Iterable[int], batch: Iterable[int] | int | None,
           metric: Any, data: Any, labels: Any, objective: str, trial_s: float, warmup: int, max_points: int,
           seed: int, background: bool, **build_args: Any):
    """Accuracy and speed of every (precision, top-k fp32 pins, batch) point, each stored as it is measured;
    the non-dominated ones flagged. Pins are the top-k nodes of find_fp32_layers' ranking (error_gain_ranking
    of a layer-wise compare). Accuracy is compare()'s `metric` on the worst model output against fp32 over
    `data` (or, with labels, evaluate()'s `metric`); speed is a benchmark of `trial_s` seconds. A space of more
    than `max_points` points is sampled by Optuna's NSGA-II (multi-objective), max_points of them."""
    from .analysis.find_fp32 import error_gain_ranking
    from .analysis.pareto import SPEED, ParetoResult
    from .analysis.trials import TrialStore
    if objective not in SPEED:
        from .errors import ConfigError
        raise ConfigError(f"objective must be one of {', '.join(SPEED)}, got {objective!r}")

    def work(rep: Reporter):
        batches = list(lab_batches(session, data, None, seed, None)[0]) if labels is None else None
        b0 = batch_of(batches[0]) if batches else None
        sizes = [int(batch)] if isinstance(batch, int) else [int(x) for x in batch] if batch else [b0 or 1]
        cands = [c for c in candidates if c != "fp32"]
        ks = sorted({int(k) for k in pins})
        space = [("fp32", 0, b) for b in sizes] + [(c, k, b) for c in cands for k in ks for b in sizes]
        accuracy_name = metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")
        goal = "min" if labels is None else "max"
        store = TrialStore(session.workspace, "pareto", "pareto", {
            "space": space, "metric": accuracy_name, "objective": objective, "trial_s": trial_s,
            "data": batches_digest(batches) if batches else None, "seed": seed, "build": build_args})
        store.start(False)
        ranking: dict[str, list[str]] = {}
        accuracy: dict[tuple[str, int], float] = {}

        def spec(prec: str, k: int) -> dict[str, Any]:
            if k and prec not in ranking:
                comp = session.compare({**build_args, "precision": "fp32"}, {**build_args, "precision": prec},
                                       outputs="all", data=batches or data, batch=b0)
                ranking[prec] = error_gain_ranking(comp.frame, session.model.proto.graph.node)
            return {**build_args, "precision": prec, **({"fp32_layers": ranking[prec][:k]} if k else {})}

        def acc(prec: str, k: int) -> float:
            if (prec, k) not in accuracy:
                if labels is not None:
                    frame = session.evaluate(data, labels, metric, precisions=[spec(prec, k)])
                    accuracy[(prec, k)] = float(frame["value"].iloc[0])
                elif prec == "fp32":
                    accuracy[(prec, k)] = 0.0
                else:
                    comp = session.compare({**build_args, "precision": "fp32"}, spec(prec, k), outputs=None,
                                           data=batches, batch=b0)
                    names = [o.name for o in session.model.outputs]
                    accuracy[(prec, k)] = float(comp.frame.set_index("tensor").loc[names, metric].max())
            return accuracy[(prec, k)]
        rows: list[dict[str, Any]] = []

        def measure(point: tuple[str, int, int]) -> dict[str, Any]:
            prec, k, b = point
            rep.update(len(rows), min(len(space), max_points), f"pareto point {prec}, {k} pins, batch {b}")
            s = spec(prec, k)
            a = acc(prec, k)
            res = session.benchmark({**s, "batch": b}, duration=trial_s, warmup=warmup)
            summ = res.summary()
            row = {"label": f"{prec}" + (f" +{k} fp32 pins" if k else "") + f" b{b}", "precision": prec,
                   "pins": k, "fp32_layers": list(s.get("fp32_layers", [])), "batch": b, "accuracy": a,
                   "latency_median_ms": summ["latency_median_ms"], "samples_per_s": res.samples_per_s}
            rows.append(row)
            store.append(row)
            return row
        notes = []
        if len(space) <= max_points:
            for point in space:
                measure(point)
        else:
            from .analysis.tune_optuna import open_study
            col, sgoal, _ = SPEED[objective]
            study = open_study(None, store.id, seed, directions=(
                "minimize" if goal == "min" else "maximize", "minimize" if sgoal == "min" else "maximize"))
            from optuna.distributions import CategoricalDistribution
            dist = {"point": CategoricalDistribution(list(range(len(space))))}
            for i in range(len(sizes)):
                study.enqueue_trial({"point": i})  # the fp32 references first
            seen: dict[int, dict[str, Any]] = {}
            asks = 0
            while len(seen) < max_points and asks < 20 * max_points:
                asks += 1
                t = study.ask(dist)
                i = t.params["point"]
                row = seen.get(i) or measure(space[i])
                seen[i] = row
                study.tell(t, [row["accuracy"], row[col]])
            notes.append(f"{len(space)} points in the space: {len(rows)} sampled by Optuna's NSGA-II")
        result = ParetoResult.of(rows, accuracy_name, goal, objective, notes)
        session.workspace.save_result("pareto", result.to_dict(), result.frame, result=result)
        rep.write("info", repr(result), "precision")
        return result
    return session._run("pareto", work, background)
