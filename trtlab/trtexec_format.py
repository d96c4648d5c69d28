"""The shape of trtexec's export files, checked field by field, and which TensorRT major wrote them.

Every field trtlab reads from --exportLayerInfo, --exportProfile, --exportTimes and the metadata files is checked
for its JSON type and range before any table is made, so a malformed export fails with TrtexecFormatError naming
the file and the key path (``Layers[3].Outputs[0].Dimensions[1]``, ``[17].computeMs``) instead of a KeyError or
TypeError from deep inside pandas. Fields trtlab does not read (layer parameters such as Kernel or Groups, which
differ by layer type and version) are left alone.

Which TensorRT wrote an export, from what the exports hold (`origin`):
- a trtexec log beside them: its banner ``&&&& RUNNING TensorRT.trtexec [TensorRT v100300]`` or its
  ``TensorRT version: 10.3.0`` line gives the exact version;
- the layer information: TensorRT 11's engine inspector lists ``I/O Tensors`` (objects), where 8.x to 10.x
  list ``Bindings`` (names) (NVIDIA's "Migrating IEngineInspector Usage from TensorRT 10.x to 11.x");
- the build metadata: a ``Precision`` build option with FP16/INT8/BF16/FP8 means trtexec's precision flags,
  which TensorRT 11 removed (networks are strongly typed), so 10.x or older.
The profile and times JSON have the same shape in 8.x, 10.x and 11.x, so they are no evidence.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import TrtexecFormatError

MAX_MS = 1e10  # about 115 days: no trtexec run lasts longer, so a larger time is a corrupt value
MAX_DIM = 1 << 62


def key_path(path: tuple[Any, ...]) -> str:
    """A JSON key path as errors write it: Layers[3].Outputs[0]['Format/Datatype'], [5].latencyMs."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p):
            out += f".{p}" if out else p
        else:
            out += f"[{p!r}]"
    return out


class _Check:
    """Type and range checks of one file's JSON, each failure naming the file and the key path."""

    def __init__(self, file: str, what: str) -> None:
        self.file, self.what = file, what

    def fail(self, path: tuple[Any, ...], problem: str) -> TrtexecFormatError:
        where = key_path(path) or "the top level"
        return TrtexecFormatError(f"{self.file}: {where}: {problem}; this is not the {self.what} file trtexec "
                                  f"writes (re-export it, or fix that field)")

    def got(self, value: Any) -> str:
        text = repr(value)
        return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"

    def dict_(self, value: Any, path: tuple[Any, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a JSON object, got {self.got(value)}")
        return value

    def list_(self, value: Any, path: tuple[Any, ...], nonempty: bool = False) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a JSON list, got {self.got(value)}")
        if nonempty and not value:
            raise self.fail(path, "expected at least one entry, got an empty list")
        return value

    def str_(self, value: Any, path: tuple[Any, ...]) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {self.got(value)}")
        return value

    def number(self, value: Any, path: tuple[Any, ...], lo: float = 0.0, hi: float = MAX_MS,
               above: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"expected a number, got {self.got(value)}")
        if not math.isfinite(value):
            raise self.fail(path, f"expected a finite number, got {value!r}")
        if value < lo or value > hi or (above and value <= lo):
            rel = ">" if above else ">="
            raise self.fail(path, f"expected a number {rel} {lo:g} and <= {hi:g}, got {value!r}")
        return float(value)

    def integer(self, value: Any, path: tuple[Any, ...], lo: int = 0, hi: int = MAX_DIM) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {self.got(value)}")
        if value < lo or value > hi:
            raise self.fail(path, f"expected an integer from {lo} to {hi}, got {value!r}")
        return value

    def optional(self, d: dict[str, Any], key: str, path: tuple[Any, ...], check: Any, *args: Any) -> None:
        if key in d:
            check(d[key], path + (key,), *args)

    def required(self, d: dict[str, Any], key: str, path: tuple[Any, ...]) -> Any:
        if key not in d:
            raise self.fail(path, f"missing {key!r}")
        return d[key]


# ---- one check per export file ------------------------------------------------------------------------------------
def _tensor(c: _Check, t: Any, path: tuple[Any, ...]) -> None:
    if isinstance(t, str):  # ProfilingVerbosity LAYER_NAMES_ONLY: names only
        return
    t = c.dict_(t, path)
    c.str_(c.required(t, "Name", path), path + ("Name",))
    if "Dimensions" in t:
        for i, d in enumerate(c.list_(t["Dimensions"], path + ("Dimensions",))):
            c.integer(d, path + ("Dimensions", i), lo=-1)  # -1: a dynamic dimension
    for key in ("Format/Datatype", "Format", "DataType", "Location"):
        c.optional(t, key, path, c.str_)


def check_layer_info(data: Any, file: str) -> None:
    """trtexec --exportLayerInfo: {'Layers': [...], 'Bindings' | 'I/O Tensors': [...]} or a list of layers."""
    c = _Check(file, "layer information (--exportLayerInfo)")
    if isinstance(data, dict):
        layers, base = c.list_(c.required(data, "Layers", ()), ("Layers",)), ("Layers",)
        if "Bindings" in data:
            for i, b in enumerate(c.list_(data["Bindings"], ("Bindings",))):
                c.str_(b, ("Bindings", i))
        if "I/O Tensors" in data:
            for i, t in enumerate(c.list_(data["I/O Tensors"], ("I/O Tensors",))):
                _tensor(c, t, ("I/O Tensors", i))
    elif isinstance(data, list):
        layers, base = data, ()
    else:
        raise c.fail((), f"expected a JSON object with a 'Layers' list, got {c.got(data)}")
    for k, layer in enumerate(layers):
        path = base + (k,)
        if isinstance(layer, str):
            continue
        layer = c.dict_(layer, path)
        c.str_(c.required(layer, "Name", path), path + ("Name",))
        for key in ("LayerType", "TacticName", "Origin", "ParameterType", "Metadata"):
            c.optional(layer, key, path, c.str_)
        if "TacticValue" in layer and not isinstance(layer["TacticValue"], str):
            c.integer(layer["TacticValue"], path + ("TacticValue",), lo=-(1 << 63), hi=(1 << 64) - 1)
        for key in ("Inputs", "Outputs"):
            if key in layer:
                for i, t in enumerate(c.list_(layer[key], path + (key,))):
                    _tensor(c, t, path + (key, i))


def check_profile(data: Any, file: str) -> None:
    """trtexec --exportProfile: [{'count': N}, {'name', 'timeMs', 'averageMs', 'medianMs', 'percentage'}, ...]."""
    c = _Check(file, "profile (--exportProfile)")
    records = c.list_(data, (), nonempty=True)
    start = 0
    if isinstance(records[0], dict) and "count" in records[0]:
        c.integer(records[0]["count"], (0, "count"), hi=1 << 40)
        start = 1
    for k in range(start, len(records)):
        rec = c.dict_(records[k], (k,))
        c.str_(c.required(rec, "name", (k,)), (k, "name"))
        if "averageMs" not in rec and "timeMs" not in rec:
            raise c.fail((k,), "missing 'averageMs' (and 'timeMs'): no time for this layer")
        for key in ("timeMs", "averageMs", "medianMs"):
            c.optional(rec, key, (k,), c.number)
        c.optional(rec, "percentage", (k,), c.number, 0.0, 100.0 + 1e-6)


TIME_FIELDS = ("startEnqMs", "endEnqMs", "startH2dMs", "endH2dMs", "startComputeMs", "endComputeMs", "startD2hMs",
               "endD2hMs", "h2dMs", "computeMs", "d2hMs", "latencyMs")
REQUIRED_TIMES = ("startH2dMs", "endD2hMs", "computeMs")


def check_times(data: Any, file: str) -> None:
    """trtexec --exportTimes: one object per inference with its start/end timestamps and durations in ms."""
    c = _Check(file, "timing records (--exportTimes)")
    records = c.list_(data, (), nonempty=True)
    first = set(c.dict_(records[0], (0,))) & set(TIME_FIELDS)
    for k, rec in enumerate(records):
        rec = c.dict_(rec, (k,))
        for key in REQUIRED_TIMES:
            c.required(rec, key, (k,))
        for key in TIME_FIELDS:
            if key in rec:
                c.number(rec[key], (k, key))
            elif key in first:  # trtexec writes the same fields in every record
                raise c.fail((k,), f"missing {key!r}, which record 0 has")


def check_profile_metadata(data: Any, file: str) -> None:
    """trtexec's *.profile.metadata.json: performance_summary, inference_options, device_information."""
    c = _Check(file, "profile metadata")
    d = c.dict_(data, ())
    if "performance_summary" in d:
        perf = c.dict_(d["performance_summary"], ("performance_summary",))
        for key, v in perf.items():
            path = ("performance_summary", key)
            if isinstance(v, list):
                for i, x in enumerate(v):
                    c.number(x, path + (i,), hi=1e12)
            else:
                c.number(v, path, hi=1e12, above=key == "Total Host Walltime")
    if "inference_options" in d:
        for key, v in c.dict_(d["inference_options"], ("inference_options",)).items():
            c.str_(v, ("inference_options", key))
    if "device_information" in d:
        info = c.dict_(d["device_information"], ("device_information",))
        c.optional(info, "Selected Device", ("device_information",), c.str_)


def check_build_metadata(data: Any, file: str) -> None:
    """trtexec's *.build.metadata.json: model_options and build_options, string values."""
    c = _Check(file, "build metadata")
    d = c.dict_(data, ())
    for section in ("model_options", "build_options"):
        if section in d:
            for key, v in c.dict_(d[section], (section,)).items():
                c.str_(v, (section, key))


def check_device_metadata(data: Any, file: str) -> None:
    """The build machine's CUDA device properties: a list of objects with 'Name'."""
    c = _Check(file, "device metadata")
    for k, dev in enumerate(c.list_(data, ())):
        c.optional(c.dict_(dev, (k,)), "Name", (k,), c.str_)


CHECKS = {"layer_info": check_layer_info, "profile": check_profile, "times": check_times,
          "metadata": check_profile_metadata, "build_metadata": check_build_metadata,
          "device_metadata": check_device_metadata}


# ---- which TensorRT wrote it --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrtexecOrigin:
    """The TensorRT that produced an export: exact version (from a log), major, or the majors still possible."""

    major: int | None = None
    version: str | None = None
    majors: tuple[int, ...] = ()  # possible majors when the exact one is unknown (empty: nothing known)
    evidence: tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        """'10.3.0', '11', '8.x-10.x' or 'unknown'."""
        if self.version:
            return self.version
        if self.major is not None:
            return str(self.major)
        if self.majors:
            return f"{self.majors[0]}.x-{self.majors[-1]}.x"
        return "unknown"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"major": self.major, "version": self.version, "majors": list(self.majors), "label": self.label,
                "evidence": list(self.evidence)}


_BANNER = re.compile(r"&&&& RUNNING TensorRT\.trtexec \[TensorRT v(\d+(?:\.\d+)*)\]")
_VERSION_LINE = re.compile(r"TensorRT version:\s*(\d+\.\d+(?:\.\d+)*)")


def version_from_banner(digits: str) -> str:
    """trtexec's banner number as a version: '100300' -> '10.3.0', '8601' -> '8.6.1', '11.1.0.106' kept."""
    if "." in digits:
        return digits
    if len(digits) >= 6:  # TensorRT 10 and later: MMmmpp
        return f"{int(digits[:-4])}.{int(digits[-4:-2])}.{int(digits[-2:])}"
    return f"{int(digits[0])}.{int(digits[1:-2] or 0)}.{int(digits[-2:])}"  # 8.x: Mmpp


KNOWN_MAJORS = (8, 9, 10, 11)


def origin(layer_info: Any = None, build_metadata: Any = None, log: str | None = None,
           log_name: str = "the trtexec log") -> TrtexecOrigin:
    """Which TensorRT wrote these exports (see the module docstring for the evidence used)."""
    evidence = []
    if log:
        m = _BANNER.search(log) or _VERSION_LINE.search(log)
        if m:
            version = version_from_banner(m.group(1))
            return TrtexecOrigin(int(version.split(".")[0]), version, (int(version.split(".")[0]),),
                                 (f"{log_name}: {m.group(0).strip()}",))
    possible = set(KNOWN_MAJORS)
    if isinstance(layer_info, dict):
        if "I/O Tensors" in layer_info:
            possible &= {m for m in KNOWN_MAJORS if m >= 11}
            evidence.append("layer information lists 'I/O Tensors' (TensorRT 11's engine inspector)")
        elif "Bindings" in layer_info:
            possible &= {m for m in KNOWN_MAJORS if m <= 10}
            evidence.append("layer information lists 'Bindings' (TensorRT 11 replaced it with 'I/O Tensors')")
    if isinstance(build_metadata, dict) and isinstance(build_metadata.get("build_options"), dict):
        precision = str(build_metadata["build_options"].get("Precision", ""))
        if re.search(r"FP16|INT8|BF16|FP8|INT4", precision, re.I):
            possible &= {m for m in KNOWN_MAJORS if m <= 10}
            evidence.append(f"build option Precision: {precision} (trtexec's precision flags, removed in "
                            f"TensorRT 11)")
    if not evidence:
        return TrtexecOrigin()
    if not possible:
        return TrtexecOrigin(evidence=tuple(evidence + ["the evidence contradicts itself"]))
    majors = tuple(sorted(possible))
    return TrtexecOrigin(majors[0] if len(majors) == 1 else None, None, majors, tuple(evidence))


__all__ = ["CHECKS", "TrtexecOrigin", "key_path", "origin", "version_from_banner"]
