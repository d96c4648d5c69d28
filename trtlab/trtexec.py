"""Read trtexec exports (--exportLayerInfo, --exportProfile, --exportTimes) into the tables live engines produce."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .analysis.benchmark import BenchmarkResult
from .errors import TrtexecFormatError
from .nodemap import name_resolver, node_costs
from .tables import (LayerProfile, fold_layers, fused_nodes, make_profile, parse_layer_info, parse_profile,
                     parse_times)
from .trtexec_format import CHECKS, TrtexecOrigin, origin


def _read_json(path: str | Path, what: str) -> Any:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise TrtexecFormatError(f"{p}: cannot read the {what} file ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TrtexecFormatError(f"{p}: not valid JSON ({exc}); expected the {what} file trtexec writes") from None


def _read_log(path: str | Path) -> str:
    p = Path(path)
    try:
        return p.read_bytes().decode("utf-8", "replace")
    except OSError as exc:
        raise TrtexecFormatError(f"{p}: cannot read the trtexec log ({exc.strerror or exc})") from None


def _warmup_ms(meta: dict[str, Any]) -> float:
    dur = str(meta.get("inference_options", {}).get("Duration", ""))
    m = re.search(r"\+\s*([0-9.]+)\s*ms\s*warm", dur)
    return float(m.group(1)) if m else 0.0


@dataclass
class TrtexecReport:
    """trtexec exports of one engine, as the same layer, profile and benchmark tables as a live engine."""

    layer_info: Any = None
    profile_data: Any = None
    times_data: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    name: str = "trtexec"
    origin: TrtexecOrigin = field(default_factory=TrtexecOrigin)  # which TensorRT wrote the exports, and why
    model: Any = None  # the ONNX model (a trtlab Model) trtexec built from: layers fold onto its node ids

    def _proto(self) -> Any:
        return getattr(self.model, "proto", self.model)

    @property
    def tensorrt(self) -> TrtexecOrigin:
        """The TensorRT that produced these exports (major, exact version from a log, or 'unknown'), with the
        evidence it was read from (trtlab.trtexec_format.origin)."""
        return self.origin

    # ---- tables ----------------------------------------------------------------------------
    def layers(self) -> pd.DataFrame:
        """One row per engine layer: type, precision, I/O dims/format/dtype, tactic, origin, is_reformat."""
        if self.layer_info is None:
            raise TrtexecFormatError("this report has no layer information: pass layer_info= "
                                     "(the file trtexec --exportLayerInfo wrote)")
        table = parse_layer_info(self.layer_info, self.paths.get("layer_info", "<layer info>"))
        return fold_layers(table, self._proto()) if self.model is not None else table

    def profile(self) -> LayerProfile:
        """Per-layer times (trtexec --exportProfile) as a LayerProfile, joined with layer info when present."""
        if self.profile_data is None:
            raise TrtexecFormatError("this report has no profile: pass profile= (trtexec --exportProfile)")
        runs, recs = parse_profile(self.profile_data, self.paths.get("profile", "<profile>"))
        info = {r["name"]: r for r in self.layers().to_dict("records")} if self.layer_info is not None else {}
        resolve = name_resolver(self._proto()) if self.model is not None else list  # rows without layer info
        rows = []
        for rec in recs:
            li = info.get(rec["name"], {})
            mean = float(rec.get("averageMs", rec.get("timeMs", 0.0) / max(runs, 1)))
            rows.append({"name": rec["name"], "op_type": li.get("type"), "provider": "TensorRT",
                         "precision": li.get("precision"), "input_shapes": li.get("input_shapes", []),
                         "output_shapes": li.get("output_shapes", []),
                         "median_ms": float(rec.get("medianMs", mean)), "mean_ms": mean,
                         "count": runs, "fused_from": li["fused_from"] if "fused_from" in li
                         else resolve(fused_nodes(rec["name"], {}))})
        meta = {"device": self.device, "total_time_ms": sum(float(r.get("timeMs", 0)) for r in recs)}
        if self.model is not None:
            meta["node_costs"] = node_costs(self._proto(), self.input_shapes or None)
        return make_profile(rows, engine=self.name, runs=runs, batch=self.batch, source="trtexec", meta=meta)

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Dimensions of the engine's I/O bindings that layers read, as the layer information records them."""
        out: dict[str, tuple[int, ...]] = {}
        if isinstance(self.layer_info, dict):
            names = set(self.layer_info.get("Bindings") or [])
            names |= {t.get("Name") for t in self.layer_info.get("I/O Tensors") or [] if isinstance(t, dict)}
            for layer in self.layer_info.get("Layers", []):
                for t in (layer.get("Inputs", []) if isinstance(layer, dict) else []):
                    if isinstance(t, dict) and t.get("Name") in names and t.get("Dimensions"):
                        out.setdefault(t["Name"], tuple(int(d) for d in t["Dimensions"]))
        return out

    def timing(self) -> pd.DataFrame:
        """The raw per-inference records of trtexec --exportTimes (ms), warm-up included."""
        if self.times_data is None:
            raise TrtexecFormatError("this report has no timing records: pass times= (trtexec --exportTimes)")
        return parse_times(self.times_data, self.paths.get("times", "<times>"))

    def benchmark(self, warmup_ms: float | None = None) -> BenchmarkResult:
        """Timing records as a BenchmarkResult; records in the first `warmup_ms` (default: trtexec's) dropped."""
        f = self.timing()
        if warmup_ms is None:
            warmup_ms = _warmup_ms(self.metadata.get("profile", {}))
        start = f["startH2dMs"].to_numpy(float)
        keep = start >= start[0] + warmup_ms if len(f) else np.zeros(0, bool)
        if not keep.any():
            raise TrtexecFormatError(f"{self.paths.get('times', '<times>')}: all {len(f)} timing records fall in "
                                     f"the first {warmup_ms:g} ms (trtexec's warm-up); pass warmup_ms=0 to keep "
                                     f"them, or export a longer run (--duration)")
        k = f[keep]
        begin, end = k["startH2dMs"].to_numpy(float), k["endD2hMs"].to_numpy(float)
        perf = self.metadata.get("profile", {}).get("performance_summary", {})
        wall = float(perf.get("Total Host Walltime", (end.max() - begin.min()) / 1e3 if len(k) else 0.0))
        opts = self.metadata.get("profile", {}).get("inference_options", {})
        mode = "cuda_graph" if str(opts.get("CUDA Graph", "")).lower() == "enabled" else "enqueue"
        return BenchmarkResult(engine=self.name, batch=self.batch or 1, latencies_ms=k["latencyMs"].to_numpy(float),
                               starts_s=begin / 1e3, wall_s=wall, warmup=int((~keep).sum()),
                               device_ms=k["computeMs"].to_numpy(float), config={"source": "trtexec", **opts},
                               device=self.device, mode=mode)

    # ---- breakdowns ------------------------------------------------------------------------
    def precision_breakdown(self) -> pd.DataFrame:
        """Layers per precision (with profiled time when a profile is present), largest first."""
        return self._breakdown("precision")

    def format_breakdown(self) -> pd.DataFrame:
        """Layer outputs per tensor format and dtype (e.g. CHW32 int8): count, share."""
        rows = [{"format": t["format"], "dtype": t["dtype"]} for outs in self.layers()["outputs"] for t in outs]
        f = pd.DataFrame(rows, columns=["format", "dtype"])
        g = f.groupby(["format", "dtype"], dropna=False).size().rename("count").reset_index()
        g["share"] = g["count"] / max(int(g["count"].sum()), 1)
        return g.sort_values("count", ascending=False, kind="stable").reset_index(drop=True)

    def reformat_layers(self) -> pd.DataFrame:
        """The reformat layers TensorRT inserted (not the model's own Q/DQ), with from/to formats."""
        f = self.layers()
        f = f[f["is_reformat"]].copy()
        f["from"] = [" ".join(filter(None, [(t or [{}])[0].get("format"), (t or [{}])[0].get("dtype")]))
                     for t in f["inputs"]]
        f["to"] = [" ".join(filter(None, [(t or [{}])[0].get("format"), (t or [{}])[0].get("dtype")]))
                   for t in f["outputs"]]
        return f.reset_index(drop=True)

    def _breakdown(self, column: str) -> pd.DataFrame:
        f = self.layers()[["name", column]].copy()
        f[column] = f[column].fillna("unknown")
        if self.profile_data is not None:
            t = self.profile().to_frame()[["name", "median_ms"]]
            f = f.merge(t, on="name", how="left")
        else:
            f["median_ms"] = np.nan
        g = f.groupby(column, sort=False).agg(layers=("name", "count"), total_ms=("median_ms", "sum")).reset_index()
        g["share"] = g["total_ms"] / g["total_ms"].sum() if g["total_ms"].sum() > 0 else np.nan
        return g.sort_values(["layers", "total_ms"], ascending=False, kind="stable").reset_index(drop=True)

    # ---- description -----------------------------------------------------------------------
    @property
    def device(self) -> str:
        """The GPU trtexec ran on (from the profile metadata), or 'unknown'."""
        dev = self.metadata.get("profile", {}).get("device_information", {}).get("Selected Device")
        if dev is None and isinstance(self.metadata.get("device"), list) and self.metadata["device"]:
            dev = self.metadata["device"][0].get("Name")
        return str(dev or "unknown")

    @property
    def batch(self) -> int | None:
        """Batch size: first dimension of the first input binding, else trtexec's 'Batch' option."""
        for dims in self.input_shapes.values():
            return int(dims[0])
        b = str(self.metadata.get("profile", {}).get("inference_options", {}).get("Batch", ""))
        return int(b) if b.isdigit() else None

    def summary(self) -> dict[str, Any]:
        """Headline figures: device, layers, reformat layers, precisions, profiled total, median latency."""
        out: dict[str, Any] = {"name": self.name, "device": self.device, "batch": self.batch,
                               "tensorrt": self.origin.label}
        if self.layer_info is not None:
            f = self.layers()
            out.update(layers=len(f), reformat_layers=int(f["is_reformat"].sum()),
                       precisions=f["precision"].value_counts().to_dict())
        if self.profile_data is not None:
            out["profile_total_ms"] = self.profile().total_ms
        if self.times_data is not None:
            out.update({f"latency_{k}_ms": v for k, v in self.benchmark().stats.items()})
        return out

    def __repr__(self) -> str:
        parts = [k for k in ("layer_info", "profile", "times") if self.paths.get(k)]
        return (f"<TrtexecReport {self.name} on {self.device}, TensorRT {self.origin.label}: "
                f"{', '.join(parts) or 'no files'}>")


_FOLDER_NAMES = {"layer_info": ("*.graph.json", "*layerinfo*.json", "*layers*.json"),
                 "profile": ("*.profile.json",), "times": ("*.timing.json", "*.times.json"),
                 "metadata": ("*.profile.metadata.json",), "build_metadata": ("*.build.metadata.json",),
                 "device_metadata": ("*engine.metadata.json",), "log": ("*.log", "*trtexec*.txt")}


def load_trtexec(folder: str | Path | None = None, *, layer_info: str | Path | None = None,
                 profile: str | Path | None = None, times: str | Path | None = None,
                 metadata: str | Path | None = None, build_metadata: str | Path | None = None,
                 device_metadata: str | Path | None = None, log: str | Path | None = None,
                 name: str | None = None, model: Any = None) -> TrtexecReport:
    """Read trtexec export files (or a folder holding *.graph.json, *.profile.json, *.timing.json, ...).

    Every field read is checked first (TrtexecFormatError names the file and key path); report.tensorrt says
    which TensorRT major wrote them: from the trtexec log (log=, or a *.log in the folder), else from the
    layer information and build options, else 'unknown'.

    `model` (a path, bytes, onnx.ModelProto or trtlab Model: the ONNX file trtexec built from) folds the layers
    onto its node ids, so `profile().by_onnx_node()` lines up with any other engine of that model."""
    paths: dict[str, Any] = {"layer_info": layer_info, "profile": profile, "times": times, "metadata": metadata,
                             "build_metadata": build_metadata, "device_metadata": device_metadata, "log": log}
    if folder is not None:
        d = Path(folder)
        if not d.is_dir():
            raise TrtexecFormatError(f"{d}: not a folder; pass a folder of trtexec exports or the files by keyword "
                                     f"(layer_info=, profile=, times=)")
        for key, patterns in _FOLDER_NAMES.items():
            if paths[key] is None:
                found = sorted(p for pat in patterns for p in d.glob(pat)
                               if not (key == "profile" and p.name.endswith(".metadata.json")))
                paths[key] = found[0] if found else None
    if not any(paths[k] for k in ("layer_info", "profile", "times")):
        raise TrtexecFormatError(f"no trtexec export given{f' in {folder}' if folder else ''}: expected layer_info= "
                                 f"(--exportLayerInfo), profile= (--exportProfile) or times= (--exportTimes)")
    loaded = {k: _read_json(p, k.replace("_", " ")) if p else None for k, p in paths.items() if k != "log"}
    for key, data in loaded.items():
        if data is not None:
            CHECKS[key](data, str(paths[key]))
    log_text = _read_log(paths["log"]) if paths["log"] else None
    meta: dict[str, Any] = {}
    for key, slot in (("metadata", "profile"), ("build_metadata", "build"), ("device_metadata", "device")):
        if loaded[key] is not None:
            meta[slot] = loaded[key]
    if "profile" in meta and not isinstance(meta["profile"], dict):
        raise TrtexecFormatError(f"{paths['metadata']}: expected a JSON object with 'performance_summary', "
                                 f"'inference_options' and 'device_information'")
    if name is None:
        built_from = meta.get("build", {}).get("model_options", {}).get("Model") \
            if isinstance(meta.get("build"), dict) else None
        name = Path(built_from).stem if built_from else Path(next(str(p) for p in paths.values() if p)).parent.name
    found = origin(loaded["layer_info"], loaded["build_metadata"], log_text, str(paths["log"]))
    if model is not None:
        from .model import Model
        model = Model.load(model, check_runtime=False)
    report = TrtexecReport(loaded["layer_info"], loaded["profile"], loaded["times"], meta,
                           {k: str(p) for k, p in paths.items() if p}, name, found, model)
    # validate eagerly so a bad file fails at load time, naming the file
    if report.layer_info is not None:
        report.layers()
    if report.profile_data is not None:
        parse_profile(report.profile_data, report.paths["profile"])
    if report.times_data is not None:
        parse_times(report.times_data, report.paths["times"])
    return report


__all__ = ["TrtexecReport", "load_trtexec"]
