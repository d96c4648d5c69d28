"""Parse an ONNX variant into a TensorRT network and build a serialized plan (works on a CPU for TensorRT-RTX)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ...config import BuildConfig, parse_size
from ...errors import BuildError, CancelledError, ConfigError, ParserError
from ._import import TrtApi, host_bytes
from .logger import LogSink, build_figures, capture_log, make_progress_monitor, shared_logger

if TYPE_CHECKING:
    import onnx

    from ...events import Reporter
    from ...model import Model

PARSER_COLUMNS = ["node", "name", "op_type", "code", "message", "file", "line", "function"]
REPORT_COLUMNS = ["node", "name", "op_type", "supported", "subgraph", "code", "reason"]
_DTYPE_NAMES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
                "INT64": "int64", "BOOL": "bool", "UINT8": "uint8", "FP8": "float8", "INT4": "int4", "FP4": "fp4"}


def _error_rows(parser: Any, proto: "onnx.ModelProto") -> list[dict[str, Any]]:
    nodes = list(proto.graph.node)
    rows = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        idx = int(e.node())
        node = nodes[idx] if 0 <= idx < len(nodes) else None
        rows.append({"node": idx, "name": e.node_name() or (node.name if node is not None else ""),
                     "op_type": e.node_operator() or (node.op_type if node is not None else ""),
                     "code": getattr(e.code(), "name", str(e.code())), "message": e.desc(), "file": e.file(),
                     "line": int(e.line()), "function": e.func()})
    return rows


def parser_error(rows: list[dict[str, Any]], what: str) -> ParserError:
    """A ParserError whose message lists the failing nodes and whose .table is the full table."""
    table = pd.DataFrame(rows, columns=PARSER_COLUMNS)
    lines = [f"  node {r['node']} {r['name']!r} ({r['op_type']}): {r['code']}: {r['message']}" for r in rows[:10]]
    more = f"\n  ... {len(rows) - 10} more (see the exception's .table)" if len(rows) > 10 else ""
    return ParserError(f"the TensorRT ONNX parser rejected {what} ({len(rows)} error(s)):\n" + "\n".join(lines) + more
                       + "\nreplace or remove these nodes, or supply a TensorRT plugin for them", table=table)


def parse_network(api: TrtApi, builder: Any, sink: LogSink, proto: "onnx.ModelProto",
                  path: str | None = None, what: str = "the model") -> tuple[Any, Any]:
    """(network, parser) for `proto`; ParserError with a table of failing nodes when parsing fails."""
    network = builder.create_network(api.network_flags())
    parser = api.module.OnnxParser(network, shared_logger(api))
    ok = parser.parse(proto.SerializeToString(), path) if path else parser.parse(proto.SerializeToString())
    if not ok:
        rows = _error_rows(parser, proto)
        if not rows:
            rows = [{"node": -1, "name": "", "op_type": "", "code": "UNKNOWN", "message": "; ".join(sink.errors())
                     or "parse() returned False without an error", "file": "", "line": 0, "function": ""}]
        raise parser_error(rows, what)
    return network, parser


def parser_report(api: TrtApi, proto: "onnx.ModelProto", path: str | None = None) -> pd.DataFrame:
    """One row per ONNX node: supported by the parser or not, with the parser's error code and reason."""
    logger = shared_logger(api)
    with capture_log(None):
        builder = api.module.Builder(logger)
        network = builder.create_network(api.network_flags())
        parser = api.module.OnnxParser(network, logger)
        data = proto.SerializeToString()
        parser.supports_model_v2(data, path) if path else parser.supports_model_v2(data)
    subgraph = {}
    for s in range(parser.num_subgraphs):
        for n in parser.get_subgraph_nodes(s):
            subgraph[int(n)] = (s, bool(parser.is_subgraph_supported(s)))
    errors: dict[int, dict[str, Any]] = {}
    for r in _error_rows(parser, proto):
        errors.setdefault(r["node"], r)
    rows = []
    for i, node in enumerate(proto.graph.node):
        err = errors.get(i)
        sub, sub_ok = subgraph.get(i, (None, None))
        if err is not None:
            ok, code, reason = False, err["code"], err["message"]
        elif sub_ok:
            ok, code, reason = True, "", ""
        else:
            # TensorRT marks a whole subgraph unsupported when any node in the model fails; judge the node itself
            ok = bool(parser.supports_operator(node.op_type))
            code = "" if ok else "UNSUPPORTED_NODE"
            reason = "" if ok else f"no TensorRT importer for op {node.op_type!r}"
        rows.append({"node": i, "name": node.name, "op_type": node.op_type, "supported": ok,
                     "subgraph": sub, "code": code, "reason": reason})
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


def dtype_name(dtype: Any) -> str:
    """trtlab dtype name ('float32', 'bfloat16', 'float8', ...) of a TensorRT DataType."""
    return _DTYPE_NAMES.get(getattr(dtype, "name", str(dtype)).rsplit(".", 1)[-1], str(dtype))


def network_io(network: Any) -> dict[str, list[dict[str, Any]]]:
    """Names, shapes (-1 for dynamic) and dtypes of the network's inputs and outputs."""
    def info(t: Any) -> dict[str, Any]:
        return {"name": t.name, "shape": [int(d) for d in t.shape], "dtype": dtype_name(t.dtype)}
    return {"inputs": [info(network.get_input(i)) for i in range(network.num_inputs)],
            "outputs": [info(network.get_output(i)) for i in range(network.num_outputs)]}


def profile_ranges(model: "Model", config: BuildConfig, io: dict[str, list[dict[str, Any]]]
                   ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """min/opt/max shape of every dynamic network input, from config.batch and config.shapes."""
    dynamic = [i for i in io["inputs"] if any(d < 0 for d in i["shape"])]
    known = {i["name"] for i in io["inputs"]}
    unknown = sorted(k for k, _ in config.shapes if k not in known)
    if unknown:
        raise ConfigError(f"shapes= names {unknown}, which are not inputs of {model.name}; inputs are {sorted(known)}")
    if not dynamic:
        return {}
    ranges = {}
    trio = []
    for k in range(3):
        batch = config.batch[k] if config.batch else None
        shapes = {n: (r.min, r.opt, r.max)[k] for n, r in config.shapes}
        trio.append(model.resolve_input_shapes(batch=batch, shapes=shapes, dims=dict(config.dims)))
    for inp in dynamic:
        lo, opt, hi = (tuple(t[inp["name"]]) for t in trio)
        fixed = [(a, d) for a, d in enumerate(inp["shape"]) if d >= 0 and not (lo[a] == opt[a] == hi[a] == d)]
        if len(lo) != len(inp["shape"]) or fixed:
            raise ConfigError(f"input {inp['name']!r} has shape {inp['shape']} in the network, but the profile asks "
                              f"for {list(lo)}..{list(hi)}: keep fixed dimensions as they are")
        ranges[inp["name"]] = (lo, opt, hi)
    return ranges


@dataclass
class BuildOutput:
    """A serialized plan and what was learnt while building it."""

    plan: bytes
    io: dict[str, list[dict[str, Any]]]
    profile: dict[str, Any]
    targets: list[str]
    settings: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    build_seconds: float = 0.0
    log: str = ""


def timing_cache_path(cache_dir: Path, api: TrtApi, device_key: str) -> Path:
    """Timing cache file keyed by library and version and device (or compute-capability targets)."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in device_key)
    return Path(cache_dir) / f"{api.module_name}-{api.version}-{safe}.cache"


def build_plan(api: TrtApi, proto: "onnx.ModelProto", model: "Model", config: BuildConfig,
               reporter: "Reporter", cache_dir: Path | None = None, device_key: str = "",
               model_path: str | None = None) -> BuildOutput:
    """Parse and build `proto` for `config`: profiles, workspace, opt level, targets, timing cache, progress."""
    with capture_log(reporter) as sink:
        return _build_plan(api, proto, model, config, reporter, sink, cache_dir, device_key, model_path)


def _build_plan(api: TrtApi, proto: "onnx.ModelProto", model: "Model", config: BuildConfig, reporter: "Reporter",
                sink: LogSink, cache_dir: Path | None, device_key: str, model_path: str | None) -> BuildOutput:
    mod = api.module
    builder = mod.Builder(shared_logger(api))
    reporter.update(0, None, "parsing ONNX")
    network, _parser = parse_network(api, builder, sink, proto, model_path, f"{model.name} ({config.precision})")
    io = network_io(network)
    bc = builder.create_builder_config()
    settings: dict[str, Any] = {"strongly_typed": True, "network_flags": api.network_flags()}
    targets = api.set_targets(bc, _as_list(config.option("compute_capability")))
    workspace = config.option("workspace")
    if workspace is not None:
        size = parse_size(workspace)
        bc.set_memory_pool_limit(mod.MemoryPoolType.WORKSPACE, size)
        settings["workspace_bytes"] = int(bc.get_memory_pool_limit(mod.MemoryPoolType.WORKSPACE))
    level = config.option("opt_level")
    if level is not None:
        if not 0 <= int(level) <= 5:
            raise ConfigError(f"opt_level must be 0..5 (TensorRT's builder optimization level), got {level!r}")
        bc.builder_optimization_level = int(level)
        settings["opt_level"] = int(bc.builder_optimization_level)
    bc.profiling_verbosity = mod.ProfilingVerbosity.DETAILED
    ranges = profile_ranges(model, config, io)
    if ranges:
        prof = builder.create_optimization_profile()
        for name, (lo, opt, hi) in ranges.items():
            prof.set_shape(name, lo, opt, hi)
        bc.add_optimization_profile(prof)
    cache = cache_file = None
    if config.option("timing_cache") and cache_dir is not None:
        cache_file = timing_cache_path(cache_dir, api, device_key or "-".join(targets) or "local")
        old = cache_file.read_bytes() if cache_file.exists() else b""
        cache = api.create_timing_cache(bc, old)
        settings["timing_cache"] = {"path": str(cache_file), "loaded_bytes": len(old),
                                    "effective": api.timing_cache_supported()}
    monitor = make_progress_monitor(api, reporter)
    bc.progress_monitor = monitor
    summary = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "timing_cache")
    reporter.write("info", f"building with {api.module_name} {api.version}: {summary}; targets "
                           f"{targets or 'this GPU'}; profile {ranges or 'static shapes'}"
                           + (f"; timing cache {cache_file} ({settings['timing_cache']['loaded_bytes']} bytes loaded"
                              f"{'' if api.timing_cache_supported() else ', a no-op in TensorRT-RTX'})"
                              if cache_file else ""), "tensorrt")
    t0 = time.perf_counter()
    host = builder.build_serialized_network(network, bc)
    seconds = time.perf_counter() - t0
    if host is None:
        if monitor.cancelled:
            raise CancelledError(f"building {model.name} ({config.describe()}) was cancelled")
        errs = sink.errors()
        raise BuildError(f"TensorRT could not build {model.name} ({config.describe()}): "
                         + ("; ".join(errs[-5:]) if errs else "no error was logged; rebuild with the verbose log")
                         + ". A larger workspace= or a lower opt_level= can help when tactics run out of memory")
    if cache is not None and cache_file is not None:
        data = api.serialize_timing_cache(cache)
        from ...workspace import atomic_write
        atomic_write(cache_file, data, root=Path(cache_dir).parent)  # the workspace root holds the cache folder
        settings["timing_cache"]["saved_bytes"] = len(data)
    text = sink.text()
    figures = build_figures(text)
    return BuildOutput(host_bytes(host), io, {k: [list(s) for s in v] for k, v in ranges.items()}, targets,
                       settings, figures, seconds, text)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) and not (len(value) == 2 and all(isinstance(v, int) for v in value)):
        return list(value)
    return [value]


def numpy_dtype(name: str) -> np.dtype:
    """numpy dtype of the bytes TensorRT moves for a network dtype name: bfloat16 and float8 (e4m3) through
    ml_dtypes, so both are read and written as their own type, never as raw uint16/uint8; int4/fp4 (two values
    per byte) as uint8 bytes."""
    import ml_dtypes
    special = {"bfloat16": ml_dtypes.bfloat16, "float8": ml_dtypes.float8_e4m3fn, "int4": np.uint8, "fp4": np.uint8}
    return np.dtype(special.get(name, name))
