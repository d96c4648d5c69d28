"""Per-layer profiles: one row per executed layer, the same table for every backend and for trtexec exports."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

COLUMNS = ["name", "op_type", "provider", "precision", "input_shapes", "output_shapes", "median_ms", "mean_ms",
           "min_ms", "max_ms", "count", "share", "fused_from"]


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
        return (f"<b>Per-layer profile</b> {self.engine}: {len(self.frame)} layers, {self.runs} runs, total "
                f"{self.total_ms:.3f} ms" + self.top(15)[["name", "op_type", "provider", "median_ms", "share"]]
                .to_html(index=False, float_format=lambda v: f"{v:.4g}"))


def make_profile(rows: list[dict[str, Any]], **kw: Any) -> LayerProfile:
    """Build a LayerProfile from row dicts (missing columns filled), computing each layer's share."""
    frame = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in frame:
            frame[col] = None if col not in ("median_ms", "mean_ms", "min_ms", "max_ms", "count", "share") else np.nan
    total = float(frame["median_ms"].sum()) if len(frame) else 0.0
    frame["share"] = frame["median_ms"] / total if total > 0 else 0.0
    return LayerProfile(frame[COLUMNS].reset_index(drop=True), **kw)


_PRECISION = {"float": "fp32", "float16": "fp16", "bfloat16": "bf16", "int8": "int8", "uint8": "int8",
              "double": "fp64", "int64": "int64", "int32": "int32", "bool": "bool"}


def _shapes(entries: list[dict[str, Any]] | None) -> list[list[int]]:
    return [next(iter(e.values())) for e in entries or [] if e]


def fused_coverage(original: Any, optimized: Any) -> dict[str, list[str]]:
    """For each node ONNX Runtime created by fusion, the original nodes it covers (traced through tensors)."""
    orig_outputs = {n.name: list(n.output) for n in original.graph.node}
    producer = {o: n for n in original.graph.node for o in n.output if o}
    opt_tensors = {t for n in optimized.graph.node for t in list(n.input) + list(n.output)}
    opt_tensors |= {i.name for i in optimized.graph.input} | {i.name for i in optimized.graph.initializer}
    cover: dict[str, list[str]] = {}
    for node in optimized.graph.node:
        if orig_outputs.get(node.name) == list(node.output):
            continue  # the original node, unchanged
        seen: list[str] = []
        stack = [o for o in node.output if o in producer]
        while stack:
            src = producer[stack.pop()]
            if src.name in seen:
                continue
            seen.append(src.name)
            # walk back until a tensor that also exists in the optimized graph: that is this node's boundary
            stack.extend(i for i in src.input if i in producer and i not in opt_tensors)
        order = {n.name: k for k, n in enumerate(original.graph.node)}
        cover[node.name] = sorted(seen, key=order.get)
    return cover


def parse_ort_profile(events: list[dict[str, Any]], skip_runs: int = 0, original: Any = None,
                      optimized: Any = None, engine: str = "", batch: int | None = None) -> LayerProfile:
    """Turn ONNX Runtime's enable_profiling JSON into a LayerProfile, dropping the first `skip_runs` runs."""
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
            info[name] = {"op_type": args.get("op_name"), "provider": args.get("provider"),
                          "input_shapes": _shapes(args.get("input_type_shape")),
                          "output_shapes": _shapes(args.get("output_type_shape")),
                          "precision": _PRECISION.get(next(iter((args.get("output_type_shape") or [{}])[0]), None))}
        times.setdefault(name, []).append(e["dur"] / 1000.0)
    cover = fused_coverage(original, optimized) if original is not None and optimized is not None else {}
    rows = []
    for name in order:
        t = np.asarray(times[name])
        rows.append({"name": name, **info[name], "median_ms": float(np.median(t)), "mean_ms": float(t.mean()),
                     "min_ms": float(t.min()), "max_ms": float(t.max()), "count": int(t.size),
                     "fused_from": cover.get(name, [])})
    return make_profile(rows, engine=engine, runs=len(kept), batch=batch, source="onnxruntime")


def load_profile(path: str | Path) -> LayerProfile:
    """Read a profile JSON written by the workspace."""
    return LayerProfile.from_dict(json.loads(Path(path).read_text()))
