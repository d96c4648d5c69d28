"""Per-layer tables, the same for every backend and for trtexec exports, and the parsers that make them.

`LayerProfile` is one engine's per-layer times (one row per executed layer, each naming the ONNX nodes it covers in
`fused_from`); ONNX Runtime's profiling JSON, TensorRT's engine-inspector layer info and trtexec's exports are parsed
here. This module sits below the backends: backends and analyses import it, it imports neither.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import ConfigError, TrtexecFormatError
from .nodemap import inherit, layer_nodes, name_resolver, split_time, variant_origin

COLUMNS = ["name", "op_type", "provider", "precision", "input_shapes", "output_shapes", "median_ms", "mean_ms",
           "min_ms", "max_ms", "count", "share", "fused_from", "effective_precision", "stored_as"]
# effective_precision: the dtype a layer's arithmetic runs in (fp32, fp16, bf16, int8, ...), or "cast" (a type
# conversion, Q/DQ included), "reformat" (a layout or storage step with no arithmetic of the model), "int" (integer
# and shape work); stored_as: the float dtype its output is kept in once the casts right after it have run


@dataclass
class LayerProfile:
    """Per-layer times of one engine: `to_frame()` (one row per layer) and `by_op_type()`."""

    frame: pd.DataFrame
    engine: str = ""
    runs: int = 0
    batch: int | None = None
    source: str = "onnxruntime"
    meta: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per executed layer, in execution order, with median/mean time and share of total."""
        return self.frame.copy()

    def by_op_type(self) -> pd.DataFrame:
        """Time aggregated by op type: layers, total median ms, share; largest first."""
        f = self.frame
        g = f.groupby("op_type", sort=False).agg(layers=("name", "count"), total_ms=("median_ms", "sum"))
        g["share"] = g["total_ms"] / max(float(f["median_ms"].sum()), 1e-12)
        return g.sort_values("total_ms", ascending=False).reset_index()

    def top(self, n: int = 10) -> pd.DataFrame:
        """The n slowest layers."""
        return self.frame.sort_values("median_ms", ascending=False).head(n).reset_index(drop=True)

    @property
    def total_ms(self) -> float:
        """Sum of median layer times (ms)."""
        return float(self.frame["median_ms"].sum())

    def by_onnx_node(self) -> pd.DataFrame:
        """Time per source ONNX node: each layer's median time split over the nodes it covers (`fused_from`).

        The split follows the nodes' estimated arithmetic (`meta['node_costs']`, `trtlab.nodemap.node_costs`:
        multiply-adds of Conv/MatMul/Gemm, one operation per output element otherwise), in equal parts where a
        cost is unknown or none is given (trtexec imports without a model). Layers that cover no node are kept
        under NO_NODE, so `time_ms` sums to `total_ms`. Columns: time_ms, share, layers (names); index: node."""
        return node_table(self.frame, self.meta.get("node_costs"))

    def node_map(self) -> pd.DataFrame:
        """One row per (layer, ONNX node it covers): the layer table's `fused_from` exploded."""
        f = self.frame[["name", "op_type", "median_ms", "fused_from"]].copy()
        f["fused_from"] = [list(v) if isinstance(v, (list, tuple)) else [] for v in f["fused_from"]]
        return f.explode("fused_from").rename(columns={"fused_from": "onnx_node"}).reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the workspace stores)."""
        return {"kind": "profile", "engine": self.engine, "runs": self.runs, "batch": self.batch,
                "source": self.source, "meta": self.meta, "total_ms": self.total_ms,
                "layers": json.loads(self.frame.to_json(orient="records"))}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LayerProfile":
        """Inverse of to_dict()."""
        return cls(pd.DataFrame(data["layers"], columns=COLUMNS), data.get("engine", ""), data.get("runs", 0),
                   data.get("batch"), data.get("source", ""), data.get("meta", {}))

    def effective_precision(self, named: str | None = None) -> "PrecisionMix":
        """What the layers compute and store in, against the precision the engine is named after (default: the
        engine's precision as the profile recorded it in meta['precision'])."""
        return precision_mix(self.frame, named or str(self.meta.get("precision", "fp32")))

    def __str__(self) -> str:
        top = self.top(15)
        lines = [f"Per-layer profile of {self.engine} ({len(self.frame)} layers, {self.runs} runs, "
                 f"total {self.total_ms:.3f} ms)",
                 f"{'layer':48s} {'op':18s} {'median ms':>10s} {'share':>7s}"]
        for r in top.itertuples():
            lines.append(f"{str(r.name)[:48]:48s} {str(r.op_type)[:18]:18s} {r.median_ms:10.4f} {r.share:7.1%}")
        if len(self.frame) > len(top):
            lines.append(f"... {len(self.frame) - len(top)} more layers")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from .markup import esc
        return (f"<b>Per-layer profile</b> {esc(self.engine)}: {len(self.frame)} layers, {self.runs} runs, total "
                f"{self.total_ms:.3f} ms" + self.top(15)[["name", "op_type", "provider", "median_ms", "share"]]
                .to_html(index=False, float_format=lambda v: f"{v:.4g}"))


NO_NODE = "(no ONNX node)"


def _nodes_of(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple, np.ndarray)) else []


def node_table(frame: pd.DataFrame, costs: dict[str, float] | None = None) -> pd.DataFrame:
    """A layer table's median times per ONNX node (see LayerProfile.by_onnx_node)."""
    time: dict[str, float] = {}
    layers: dict[str, list[str]] = {}
    for name, ms, nodes in zip(frame["name"], frame["median_ms"], frame["fused_from"]):
        ms = 0.0 if pd.isna(ms) else float(ms)
        parts = split_time(ms, _nodes_of(nodes), costs) or {NO_NODE: ms}
        for node, t in parts.items():
            time[node] = time.get(node, 0.0) + t
            layers.setdefault(node, []).append(str(name))
    out = pd.DataFrame({"time_ms": pd.Series(time, dtype=float),
                        "layers": pd.Series(layers, dtype=object)})
    out.index.name = "node"
    total = float(out["time_ms"].sum()) if len(out) else 0.0
    out["share"] = out["time_ms"] / total if total > 0 else 0.0
    return out[["time_ms", "share", "layers"]]


def _frame(p: Any) -> pd.DataFrame:
    return p.frame if isinstance(p, LayerProfile) else p


def _with_nodes(f: pd.DataFrame) -> pd.DataFrame:
    if "fused_from" in f:
        return f
    return f.assign(fused_from=[[str(n)] for n in f["name"]])  # no node lists: a layer stands for its name


def compare_layers(a: Any, b: Any, labels: tuple[str, str] = ("A", "B")) -> pd.DataFrame:
    """Two engines' layers paired by the ONNX nodes they cover, as TensorRT Engine Explorer pairs engines.

    Layers of either engine that cover a common node fall into one group (the union, where the engines fused
    differently), so every group is compared whole. `a`, `b`: LayerProfiles or their frames (trtexec imports
    too). One row per group, slowest first: nodes, layers_a, layers_b, ms_a, ms_b, speedup (ms_a / ms_b) and
    status ('paired', 'only a', 'only b'); `attrs['labels']` keeps the labels."""
    fa, fb = (_with_nodes(_frame(x)) for x in (a, b))
    rows = [("a", k, r) for k, r in enumerate(fa[["name", "median_ms", "fused_from"]].itertuples(index=False))]
    rows += [("b", k, r) for k, r in enumerate(fb[["name", "median_ms", "fused_from"]].itertuples(index=False))]
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, (_side, _k, r) in enumerate(rows):
        for node in _nodes_of(r.fused_from):
            if node in owner:
                parent[find(i)] = find(owner[node])
            else:
                owner[node] = i
    groups: dict[int, list[int]] = {}
    for i in range(len(rows)):
        groups.setdefault(find(i), []).append(i)
    out = []
    for members in groups.values():
        side = {"a": [rows[i] for i in members if rows[i][0] == "a"], "b": [rows[i] for i in members if rows[i][0] == "b"]}
        nodes = list(dict.fromkeys(n for i in members for n in _nodes_of(rows[i][2].fused_from)))
        ms = {s: float(np.nansum([r.median_ms for _, _, r in side[s]])) if side[s] else np.nan for s in "ab"}
        out.append({"nodes": nodes, "layers_a": [str(r.name) for _, _, r in side["a"]],
                    "layers_b": [str(r.name) for _, _, r in side["b"]], "ms_a": ms["a"], "ms_b": ms["b"],
                    "speedup": ms["a"] / ms["b"] if side["a"] and side["b"] and ms["b"] > 0 else np.nan,
                    "status": "paired" if side["a"] and side["b"] else ("only a" if side["a"] else "only b"),
                    "_first": min(members)})
    f = pd.DataFrame(out, columns=["nodes", "layers_a", "layers_b", "ms_a", "ms_b", "speedup", "status", "_first"])
    f["_key"] = f[["ms_a", "ms_b"]].max(axis=1)
    f = f.sort_values(["_key", "_first"], ascending=[False, True], kind="stable").drop(columns=["_key", "_first"])
    f = f.reset_index(drop=True)
    f.index.name = "group"
    f.attrs["labels"] = tuple(str(x) for x in labels)
    return f


def compare_nodes(profiles: list[Any], labels: list[str] | None = None) -> pd.DataFrame:
    """Per-ONNX-node times of any number of engines side by side (LayerProfiles, trtexec ones included): one
    column of ms per engine (named by `labels`, default the engines' names), and `speedup_<label>` = the first
    engine's time over that engine's. Nodes one engine lacks are NaN there."""
    if not profiles:
        return pd.DataFrame()
    labels = list(labels or [p.engine or f"engine {k}" for k, p in enumerate(profiles)])
    if len(labels) != len(profiles) or len(set(labels)) != len(labels):
        raise ConfigError(f"compare_nodes needs one distinct label per profile, got {labels}")
    cols = {lab: p.by_onnx_node()["time_ms"] for lab, p in zip(labels, profiles)}
    order = list(dict.fromkeys(n for c in cols.values() for n in c.index))  # execution order, first engine first
    f = pd.DataFrame({lab: c.reindex(order) for lab, c in cols.items()}, index=order)
    for lab in labels[1:]:
        f[f"speedup_{lab}"] = f[labels[0]] / f[lab].where(f[lab] > 0)
    f.index.name = "node"
    return f


def make_profile(rows: list[dict[str, Any]], **kw: Any) -> LayerProfile:
    """Build a LayerProfile from row dicts (missing columns filled), computing each layer's share."""
    frame = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in frame:
            frame[col] = None if col not in ("median_ms", "mean_ms", "min_ms", "max_ms", "count", "share") else np.nan
    if len(frame):
        # a table that names only a layer's precision (TensorRT layer info, trtexec) computes and stores in it
        frame["effective_precision"] = frame["effective_precision"].where(frame["effective_precision"].notna(),
                                                                          frame["precision"])
        frame["stored_as"] = frame["stored_as"].where(frame["stored_as"].notna(), frame["precision"])
    total = float(frame["median_ms"].sum()) if len(frame) else 0.0
    frame["share"] = frame["median_ms"] / total if total > 0 else 0.0
    return LayerProfile(frame[COLUMNS].reset_index(drop=True), **kw)


_PRECISION = {"float": "fp32", "float16": "fp16", "bfloat16": "bf16", "int8": "int8", "uint8": "int8",
              "double": "fp64", "int64": "int64", "int32": "int32", "bool": "bool"}


def _shapes(entries: list[dict[str, Any]] | None) -> list[list[int]]:
    return [next(iter(e.values())) for e in entries or [] if e]


def parse_ort_profile(events: list[dict[str, Any]], skip_runs: int = 0,
                      coverage: dict[str, list[str]] | None = None, optimized: Any = None, engine: str = "",
                      batch: int | None = None) -> LayerProfile:
    """Turn ONNX Runtime's enable_profiling JSON into a LayerProfile, dropping the first `skip_runs` runs.

    `coverage` ({optimised node name: source ONNX node ids}, `trtlab.backends.ort_optimized.coverage`) fills each
    row's `fused_from`; a row it does not name (or without it) covers the node of its own name. `optimized` (the
    optimised graph the profiled session ran) tells what each layer's output is stored as after its casts."""
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    kept = runs[skip_runs:]

    def run_index(ts: float) -> int | None:
        for k, (a, b) in enumerate(kept):
            if a <= ts <= b:
                return k
        return None

    times: dict[str, list[float]] = {}
    info: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if kept and run_index(e["ts"]) is None:
            continue
        name = e["name"][: -len("_kernel_time")]
        args = e.get("args", {})
        if name not in info:
            order.append(name)
            in_types, out_types = _types(args.get("input_type_shape")), _types(args.get("output_type_shape"))
            info[name] = {"op_type": args.get("op_name"), "provider": args.get("provider"),
                          "input_shapes": _shapes(args.get("input_type_shape")),
                          "output_shapes": _shapes(args.get("output_type_shape")),
                          "precision": out_types[0] if out_types else None,
                          "effective_precision": node_precision(args.get("op_name"), in_types, out_types),
                          "stored_as": next((t for t in out_types if t in FLOATS), None)}
        times.setdefault(name, []).append(e["dur"] / 1000.0)
    if optimized is not None:
        for name, stored in stored_after_casts(optimized, info).items():
            info[name]["stored_as"] = stored
    rows = []
    for name in order:
        t = np.asarray(times[name])
        rows.append({"name": name, **info[name], "median_ms": float(np.median(t)), "mean_ms": float(t.mean()),
                     "min_ms": float(t.min()), "max_ms": float(t.max()), "count": int(t.size),
                     "fused_from": list(coverage[name]) if coverage and name in coverage else [name]})
    return make_profile(rows, engine=engine, runs=len(kept), batch=batch, source="onnxruntime")


FLOATS = ("fp32", "fp16", "bf16", "fp64", "fp8")
_CASTS = {"Cast", "CastLike", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MemcpyToHost",
          "MemcpyFromHost"}
_REFORMATS = {"ReorderInput", "ReorderOutput"}  # ONNX Runtime's NCHWc layout changes (it inserts them)
_INT8 = ("int8",)


def _types(entries: list[dict[str, Any]] | None) -> list[str]:
    return [_PRECISION.get(next(iter(e)), str(next(iter(e)))) for e in entries or [] if e]


def node_precision(op_type: str | None, input_types: list[str], output_types: list[str]) -> str:
    """The dtype an executed node's arithmetic runs in, from the types its kernel reads and writes (as ONNX
    Runtime's profiler records them): its first float input (the data; a Q/DQ-fused kernel reading int8 runs in
    int8), else its float output; conversions are "cast", layout changes "reformat", integer work "int"."""
    if op_type in _CASTS:
        return "cast"
    if op_type in _REFORMATS:
        return "reformat"
    if any(t in _INT8 for t in input_types[:1]) and (op_type or "").startswith(("QLinear", "ConvInteger",
                                                                               "MatMulInteger", "QGemm",
                                                                               "QAttention", "DynamicQuant")):
        return "int8"
    for t in input_types + output_types:
        if t in FLOATS:
            return t
    if any(t in _INT8 for t in input_types):
        return "int8"
    return "int"


def stored_after_casts(optimized: Any, info: dict[str, dict[str, Any]]) -> dict[str, str]:
    """For executed nodes of ONNX Runtime's optimized graph whose float output goes only to Casts (through layout
    reorders), the dtype those Casts store it in: a node that computes in fp32 between an fp16-to-fp32 Cast and an
    fp32-to-fp16 Cast keeps its result in fp16, like an fp16 kernel that accumulates in fp32."""
    nodes = {n.name: n for n in optimized.graph.node}
    consumers: dict[str, list[Any]] = {}
    for n in optimized.graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    graph_outputs = {o.name for o in optimized.graph.output}
    names = {1: "fp32", 10: "fp16", 16: "bf16", 11: "fp64"}

    def cast_types(tensor: str, depth: int = 0) -> set[str] | None:
        """dtypes the Casts reading `tensor` convert to; None when some consumer is not a Cast."""
        if tensor in graph_outputs or depth > 4:
            return None
        found: set[str] = set()
        for c in consumers.get(tensor, []):
            if c.op_type == "Cast":
                to = next((a.i for a in c.attribute if a.name == "to"), None)
                found.add(names.get(to, "other"))
            elif c.op_type in _REFORMATS:
                inner = cast_types(c.output[0], depth + 1)
                if inner is None:
                    return None
                found |= inner
            else:
                return None
        return found or None

    out = {}
    for name, row in info.items():
        node = nodes.get(name)
        if node is None or row.get("effective_precision") in ("cast", "reformat", "int") or not node.output:
            continue
        targets = cast_types(node.output[0])
        if targets and len(targets) == 1 and next(iter(targets)) in FLOATS:
            out[name] = next(iter(targets))
    return out


@dataclass
class PrecisionMix:
    """What an engine's layers compute and store in against the precision it is named after.

    `frame`: one row per executed layer (name, op_type, provider, effective_precision, stored_as); `share`: the
    fraction of its float (and int8) layers that run in the named precision, counting a layer that computes in
    fp32 but stores its result in the named precision (fp32 accumulation, as TensorRT's fp16 kernels do);
    `summary`: one plain sentence saying so."""

    frame: pd.DataFrame
    named: str
    share: float
    summary: str
    layers: int = 0
    casts: int = 0

    @property
    def faithful(self) -> bool:
        """True when most of the float work runs in the precision the engine is named after."""
        return self.share >= 0.5

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready headline (what engine metadata and results keep)."""
        return {"named": self.named, "share": self.share, "summary": self.summary, "layers": self.layers,
                "casts": self.casts, "faithful": self.faithful}

    def __repr__(self) -> str:
        return f"<PrecisionMix {self.summary}>"

    def _repr_html_(self) -> str:
        from .markup import esc
        counts = self.frame.groupby(["effective_precision", "stored_as"], dropna=False).size().reset_index(
            name="layers")
        return f"<b>Effective precision</b>: {esc(self.summary)}" + counts.to_html(index=False)


def named_precisions(precision: str) -> tuple[str, ...]:
    """The dtypes a precision name promises its float work in: 'int8+fp16' -> ('int8', 'fp16')."""
    return tuple(p for p in precision.split("+") if p) or ("fp32",)


def precision_mix(frame: pd.DataFrame, named: str) -> PrecisionMix:
    """A PrecisionMix from a layer table with effective_precision and stored_as columns (see COLUMNS)."""
    cols = [c for c in ("name", "op_type", "provider", "effective_precision", "stored_as", "median_ms") if c in frame]
    f = frame[cols].reset_index(drop=True)
    want = named_precisions(named)
    eff = f["effective_precision"].fillna("unknown").astype(str)
    stored = f["stored_as"].fillna("").astype(str)
    work = eff.isin(FLOATS + _INT8)
    n = int(work.sum())
    math_in = work & eff.isin(want)
    stored_in = work & ~math_in & stored.isin(want)
    k = int(math_in.sum() + stored_in.sum())
    casts = int((eff == "cast").sum())
    share = k / n if n else 1.0
    provider = (f["provider"].dropna().mode().iloc[0] if "provider" in f and f["provider"].notna().any()
                else None)
    where = f" on {provider}" if provider else ""
    name = "+".join(want)
    if not n:
        text = f"{name} engine{where}: no float layers ran"
    elif want == ("fp32",):
        text = f"fp32 engine{where}: {share:.0%} of {n} float layers run in fp32"
    else:
        parts = []
        if int(math_in.sum()):
            parts.append(f"{int(math_in.sum())} with {name} arithmetic")
        if int(stored_in.sum()):
            parts.append(f"{int(stored_in.sum())} as fp32 arithmetic with {name} storage, every output rounded to "
                         f"{name} as TensorRT's fp16 kernels accumulate in fp32")
        rest = work & ~math_in & ~stored_in
        others = eff[rest].value_counts().to_dict()
        detail = f" ({'; '.join(parts)})" if parts else ""
        text = f"{name} engine{where}: {share:.0%} of {n} float layers run in {name}{detail}"
        if others:
            kinds = ", ".join(f"{v} in {p}" for p, v in others.items())
            text += f"; the rest ({kinds}) run and keep their results in {'/'.join(others)}" + \
                (f" between {casts} casts" if casts else "")
        if share < 0.5:
            text += f": this engine is NOT computed in {name}"
    return PrecisionMix(f, named, share, text, n, casts)


def load_profile(path: str | Path) -> LayerProfile:
    """Read a profile JSON written by the workspace."""
    return LayerProfile.from_dict(json.loads(Path(path).read_text()))


# ---- TensorRT engine-inspector layer info and trtexec exports ----------------------------------------
LAYER_COLUMNS = ["name", "type", "precision", "inputs", "outputs", "input_shapes", "output_shapes",
                 "input_formats", "output_formats", "tactic", "origin", "is_reformat", "parameter_type", "fused_from"]

# dtype words in the engine inspector's "Format/Datatype" text, checked in this order
_DTYPES = [("bfloat16", "bf16"), ("bf16", "bf16"), ("fp16", "fp16"), ("half", "fp16"), ("fp32", "fp32"), ("float", "fp32"),
           ("fp8", "fp8"), ("int8", "int8"), ("uint8", "uint8"), ("int32", "int32"), ("int64", "int64"),
           ("int4", "int4"), ("fp4", "fp4"), ("bool", "bool")]
_WIDE = {"two": 2, "four": 4, "eight": 8, "sixteen": 16, "thirty-two": 32}


def parse_format(text: str) -> tuple[str, str]:
    """Split an inspector 'Format/Datatype' text into (TensorFormat name, dtype), e.g. ('CHW32', 'int8')."""
    low = str(text).lower()
    dtype = next((d for word, d in _DTYPES if re.search(rf"\b{word}\b", low)), "unknown")
    m = re.search(r"([a-z-]+) wide channel vectorized", low)
    if m and m.group(1) in _WIDE:
        fmt = f"CHW{_WIDE[m.group(1)]}"
    elif "channel major" in low:
        k = re.search(r"channel\s*%\s*(\d+)", low)
        fmt = f"HWC{k.group(1)}" if k else "HWC"
    elif "row major linear" in low or low.startswith("linear"):
        fmt = "LINEAR"
    elif re.match(r"\s*\((\w+)\)", str(text)):
        fmt = re.match(r"\s*\((\w+)\)", str(text)).group(1).upper()  # build-log style '(Transposed) ...'
    else:
        fmt = re.sub(rf"\s*\b{dtype}\b\s*", " ", str(text), flags=re.I).strip() or "unknown"
    return fmt, dtype


def _tensor(entry: Any, path: str, layer: str) -> dict[str, Any]:
    if isinstance(entry, str):  # non-detailed verbosity lists names only
        return {"name": entry, "dims": None, "format": None, "dtype": None, "format_desc": None}
    if not isinstance(entry, dict) or "Name" not in entry:
        raise TrtexecFormatError(f"{path}: layer {layer!r} has a tensor entry {entry!r}; expected a dict with "
                                 f"'Name', 'Dimensions' and 'Format/Datatype' as trtexec --exportLayerInfo writes")
    desc = entry.get("Format/Datatype")
    fmt, dtype = parse_format(desc) if desc else (None, None)
    dims = entry.get("Dimensions")
    return {"name": entry["Name"], "dims": list(dims) if dims is not None else None, "format": fmt,
            "dtype": dtype, "format_desc": desc}


def parse_layer_info(data: Any, path: str = "<layer info>") -> pd.DataFrame:
    """The engine inspector's JSON (dict with 'Layers', or a list of layers) as one row per engine layer."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise TrtexecFormatError(f"{path}: not JSON ({exc}); expected the engine inspector's output "
                                     f"(trtexec --exportLayerInfo)") from None
    layers = data.get("Layers") if isinstance(data, dict) else data
    if not isinstance(layers, list):
        raise TrtexecFormatError(f"{path}: expected a JSON object with a 'Layers' list (trtexec --exportLayerInfo "
                                 f"with --profilingVerbosity=detailed), got {type(data).__name__} "
                                 f"with keys {sorted(data)[:5] if isinstance(data, dict) else '-'}")
    rows = []
    for k, layer in enumerate(layers):
        if isinstance(layer, str):
            # ProfilingVerbosity LAYER_NAMES_ONLY: each layer is just its name
            rows.append({"name": layer, "type": None, "precision": None, "inputs": [], "outputs": [],
                         "input_shapes": [], "output_shapes": [], "input_formats": [], "output_formats": [],
                         "tactic": None, "origin": None, "is_reformat": False, "parameter_type": None,
                         "fused_from": fused_nodes(layer, {})})
            continue
        if not isinstance(layer, dict) or "Name" not in layer:
            raise TrtexecFormatError(f"{path}: layer {k} is {str(layer)[:80]!r}; expected a layer name or a dict "
                                     f"with 'Name', 'LayerType', 'Inputs', 'Outputs'")
        name = layer["Name"]
        ins = [_tensor(t, path, name) for t in layer.get("Inputs", [])]
        outs = [_tensor(t, path, name) for t in layer.get("Outputs", [])]
        typ, origin = layer.get("LayerType"), layer.get("Origin")
        fused = fused_nodes(name, {"type": typ}, layer.get("Metadata"))
        # the math precision: a compute layer's input type (int8 convs often write fp32); a reformat's target type
        first = ((outs if typ == "Reformat" else ins) or outs or ins or [{}])[0]
        rows.append({
            "name": name, "type": typ, "precision": first.get("dtype"), "inputs": ins, "outputs": outs,
            "input_shapes": [t["dims"] for t in ins], "output_shapes": [t["dims"] for t in outs],
            "input_formats": [t["format"] for t in ins], "output_formats": [t["format"] for t in outs],
            "tactic": layer.get("TacticName") or layer.get("TacticValue"), "origin": origin,
            # Reformat layers from Q/DQ nodes are the model's own quantize steps, not layers TensorRT inserted;
            # Myelin's layout 'Move' kernels (no ONNX origin) are reformats it inserted
            "is_reformat": (typ == "Reformat" and origin != "QDQ")
                           or (not fused and re.search(r"(^|_)Move(_|$)", name) is not None),
            "parameter_type": layer.get("ParameterType"), "fused_from": fused})
    return pd.DataFrame(rows, columns=LAYER_COLUMNS)


def parse_profile(data: Any, path: str = "<profile>") -> tuple[int, list[dict[str, Any]]]:
    """trtexec --exportProfile JSON -> (number of profiled runs, one dict per layer with times in ms)."""
    if not isinstance(data, list) or not data:
        raise TrtexecFormatError(f"{path}: expected a JSON list [{{'count': N}}, {{'name', 'timeMs', 'averageMs', "
                                 f"'medianMs', 'percentage'}}, ...] as trtexec --exportProfile writes")
    head, rest = (data[0], data[1:]) if isinstance(data[0], dict) and "count" in data[0] else ({}, data)
    out = []
    for k, rec in enumerate(rest):
        if not isinstance(rec, dict) or "name" not in rec or not ("averageMs" in rec or "timeMs" in rec):
            raise TrtexecFormatError(f"{path}: entry {k + 1} is {str(rec)[:80]!r}; expected a dict with 'name' and "
                                     f"'averageMs' (trtexec --exportProfile)")
        out.append(rec)
    return int(head.get("count", 0)), out


def fused_nodes(name: str, layer: dict[str, Any], metadata: str | None = None) -> list[str]:
    """ONNX nodes a layer covers as its own record says: its '[ONNX Layer: a]' metadata, else its name unwrapped
    (`trtlab.nodemap.layer_nodes`); `fold_layers` resolves them against a model."""
    return layer_nodes(name, metadata, layer.get("type"))


def fold_layers(layers: pd.DataFrame, source: Any, variant: Any = None) -> pd.DataFrame:
    """A layer table (parse_layer_info) with `fused_from` as source node ids: names resolved against the source
    model (`variant` maps what trtlab inserted, e.g. fp16 Casts, to the node each serves), and layers covering
    none (reformats, Myelin moves) given the nodes of the layer they serve, found through their tensors."""
    resolve = name_resolver(source, variant_origin(source, variant) if variant is not None else None)
    rows = [{"name": r["name"], "nodes": resolve(_nodes_of(r["fused_from"])),
             "inputs": [t["name"] for t in r["inputs"] or []], "outputs": [t["name"] for t in r["outputs"] or []]}
            for r in layers.to_dict("records")]
    out = layers.copy()
    out["fused_from"] = [r["nodes"] for r in inherit(rows)]
    return out


_TIME_KEYS = ("startH2dMs", "endD2hMs", "computeMs")


def parse_times(data: Any, path: str = "<times>") -> pd.DataFrame:
    """trtexec --exportTimes JSON -> one row per inference with its timestamps and durations (ms)."""
    if not isinstance(data, list):
        raise TrtexecFormatError(f"{path}: expected a JSON list of per-inference records (trtexec --exportTimes), "
                                 f"got {type(data).__name__}")
    for k, rec in enumerate(data):
        if not isinstance(rec, dict) or any(key not in rec for key in _TIME_KEYS):
            raise TrtexecFormatError(f"{path}: record {k} is {str(rec)[:80]!r}; expected a dict with "
                                     f"{', '.join(_TIME_KEYS)} (trtexec --exportTimes)")
    f = pd.DataFrame(data)
    if "latencyMs" not in f:
        f["latencyMs"] = f["endD2hMs"] - f["startH2dMs"]  # trtexec's latency: H2D start to D2H end
    return f
