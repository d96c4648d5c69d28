"""INT8/FP8 calibration: run a model over data, collect activation ranges, read and write
TensorRT's calibration-cache text format, and check a cache against a model.

Cache format (what TensorRT's writeCalibrationCache produces): a header line
``TRT-<version>-<Algorithm>`` then one line per tensor, ``<name>: <scale>``, the scale as a
big-endian IEEE float32 in 8 lowercase hex digits, every line ending in ``\\n``.
"""
from __future__ import annotations

import itertools
import math
import os
import re
import struct
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from trtlab.errors import (
    CalibrationCacheError,
    CalibrationError,
    CancelledError,
    ConfigError,
    InputError,
    ModelError,
)
from trtlab.model import Model
from trtlab.precision.calibrators import make_calibrator

# The largest magnitude each quantized type represents: scale = amax / QMAX[dtype].
QMAX = {"int8": 127.0, "fp8": 448.0}  # fp8 is E4M3, the format TensorRT uses for activations

# TensorRT's CalibrationAlgoType names as they appear in cache headers. TensorRT has no
# "percentile" calibrator; its IInt8LegacyCalibrator picks each tensor's range from a
# quantile of its histogram (getQuantile), which is what the percentile method does, so a
# percentile table carries the LegacyCalibration header. TensorRT accepts a cache only from
# a calibrator of the same algorithm type, so feed it through an IInt8LegacyCalibrator.
ALGORITHMS = {
    "entropy": "EntropyCalibration2",
    "minmax": "MinMaxCalibration",
    "percentile": "LegacyCalibration",
}
KNOWN_ALGORITHMS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")

# Used when no TensorRT is installed to take the version from (TensorRT 10.3.0).
FALLBACK_TENSORRT_VERSION = "100300"

QUANTIZABLE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")
# Which inputs of each op carry activations worth a scale (not Conv/Gemm biases).
_QUANTIZABLE_INPUTS = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2, "MatMul": 2, "Add": 2}
_FLOAT_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.BFLOAT16,
    onnx.TensorProto.DOUBLE,
}

_HEADER = re.compile(r"TRT-(\d+)-([A-Za-z0-9]+)")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_FIX = (
    "calibrate again (trtlab.precision.calibration.calibrate, then save()), or use a cache "
    "written by TensorRT's writeCalibrationCache"
)


def tensorrt_version_digits(version: str) -> str:
    """TensorRT's version number as cache headers spell it: "8.6.1" -> "8601", "10.3.0" -> "100300"."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]] + [0, 0, 0]
    major, minor, patch = parts[:3]
    if major >= 10:
        return str(major * 10000 + minor * 100 + patch)
    return str(major * 1000 + minor * 100 + patch)


def default_tensorrt_version() -> str:
    """The installed TensorRT's version digits (without importing it), else FALLBACK_TENSORRT_VERSION."""
    for dist in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11"):
        try:
            return tensorrt_version_digits(metadata.version(dist))
        except metadata.PackageNotFoundError:
            continue
    return FALLBACK_TENSORRT_VERSION


def _scale_hex(scale: float) -> str:
    return struct.pack(">f", scale).hex()


def _hex_scale(text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(text))[0]


class CalibrationTable(Mapping[str, float]):
    """Tensor name -> amax (the clipping threshold), with scales and TensorRT-cache I/O."""

    def __init__(
        self,
        amax: Mapping[str, float],
        *,
        algorithm: str = "EntropyCalibration2",
        version: str | None = None,
        dtype: str = "int8",
    ) -> None:
        if dtype not in QMAX:
            raise ConfigError(f"calibration dtype {dtype!r} is not supported; use 'int8' or 'fp8'")
        self._amax = {str(k): float(v) for k, v in amax.items()}
        self.algorithm = algorithm
        self.version = version if version is not None else default_tensorrt_version()
        self.dtype = dtype

    @classmethod
    def from_amax(
        cls,
        amax: Mapping[str, float],
        *,
        algorithm: str = "EntropyCalibration2",
        version: str | None = None,
        dtype: str = "int8",
    ) -> CalibrationTable:
        """A table from a plain {tensor: amax} dict."""
        return cls(amax, algorithm=algorithm, version=version, dtype=dtype)

    def __getitem__(self, name: str) -> float:
        return self._amax[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._amax)

    def __len__(self) -> int:
        return len(self._amax)

    def __repr__(self) -> str:
        return f"CalibrationTable({len(self)} tensors, {self.header}, dtype={self.dtype!r})"

    @property
    def header(self) -> str:
        """The cache's first line, e.g. ``TRT-8601-EntropyCalibration2``."""
        return f"TRT-{self.version}-{self.algorithm}"

    def scale(self, name: str, dtype: str | None = None) -> float:
        """amax / 127 (int8) or amax / 448 (fp8 E4M3), rounded to float32 as stored in a cache."""
        dtype = dtype or self.dtype
        if dtype not in QMAX:
            raise ConfigError(f"calibration dtype {dtype!r} is not supported; use 'int8' or 'fp8'")
        return float(np.float32(self._amax[name] / QMAX[dtype]))

    def scales(self, dtype: str = "int8") -> dict[str, float]:
        """{tensor: scale} for `dtype` ("int8" or "fp8"), in table order."""
        return {name: self.scale(name, dtype) for name in self._amax}

    def to_frame(self) -> Any:
        """A pandas DataFrame with columns tensor, amax, scale (in table order)."""
        import pandas as pd

        return pd.DataFrame(
            {
                "tensor": list(self._amax),
                "amax": list(self._amax.values()),
                "scale": [self.scale(n) for n in self._amax],
            }
        )

    def to_text(self) -> str:
        """The table in TensorRT's calibration-cache text format (scales of `self.dtype`)."""
        lines = [self.header]
        lines += [f"{name}: {_scale_hex(self.scale(name))}" for name in self._amax]
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike) -> Path:
        """Write the cache to `path` atomically (no half-written file on failure)."""
        path = Path(path)
        data = self.to_text().encode("utf-8")
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent or ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def from_text(cls, text: str, *, source: str = "<text>", dtype: str = "int8") -> CalibrationTable:
        """Parse TensorRT calibration-cache text; `source` names the file in error messages."""
        if not text.strip():
            raise CalibrationCacheError(f"{source}: the calibration cache is empty; {_FIX}")
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()  # the newline that ends the last line
        header = lines[0].rstrip("\r")
        match = _HEADER.fullmatch(header)
        if match is None:
            raise CalibrationCacheError(
                f"{source}, line 1: bad header {header[:80]!r}; a TensorRT calibration cache starts "
                f"with 'TRT-<version digits>-<algorithm>', e.g. 'TRT-8601-EntropyCalibration2'; {_FIX}"
            )
        version, algorithm = match.groups()
        if algorithm not in KNOWN_ALGORITHMS:
            raise CalibrationCacheError(
                f"{source}, line 1: unknown calibration algorithm {algorithm!r} in header {header!r}; "
                f"TensorRT writes one of {', '.join(KNOWN_ALGORITHMS)}; {_FIX}"
            )
        qmax = QMAX[dtype] if dtype in QMAX else None
        if qmax is None:
            raise ConfigError(f"calibration dtype {dtype!r} is not supported; use 'int8' or 'fp8'")
        amax: dict[str, float] = {}
        for number, raw in enumerate(lines[1:], start=2):
            line = raw.rstrip("\r")
            name, sep, value = line.rpartition(":")
            value = value.strip()
            where = f"{source}, line {number}"
            if not sep or not name:
                raise CalibrationCacheError(
                    f"{where}: {line[:80]!r} is not '<tensor name>: <8 hex digits>'; {_FIX}"
                )
            if not _HEX8.fullmatch(value):
                if value and all(c in "0123456789abcdefABCDEF" for c in value):
                    problem = (
                        f"the value {value!r} has {len(value)} hex digits, expected 8 "
                        "(the file looks truncated or edited)"
                    )
                else:
                    problem = f"the value {value[:40]!r} for tensor {name!r} is not 8 hex digits"
                raise CalibrationCacheError(f"{where}: {problem}; {_FIX}")
            scale = _hex_scale(value)
            if not math.isfinite(scale) or scale < 0:
                raise CalibrationCacheError(
                    f"{where}: tensor {name!r} has scale {scale} (hex {value}), not a finite "
                    f"non-negative number; {_FIX}"
                )
            if name in amax:
                raise CalibrationCacheError(f"{where}: tensor {name!r} appears twice; {_FIX}")
            amax[name] = float(scale) * qmax  # exact: a float32 times 127 or 448 fits a double
        return cls(amax, algorithm=algorithm, version=version, dtype=dtype)

    @classmethod
    def load(cls, path: str | os.PathLike, *, dtype: str = "int8") -> CalibrationTable:
        """Read a TensorRT calibration cache file."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CalibrationCacheError(f"{path}: calibration cache file not found; {_FIX}") from None
        except OSError as exc:
            raise CalibrationCacheError(f"{path}: cannot read the calibration cache ({exc})") from exc
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise CalibrationCacheError(
                f"{path}, line {line}: not text (a binary file or another format); {_FIX}"
            ) from None
        return cls.from_text(text, source=str(path), dtype=dtype)

    def validate(self, model: onnx.ModelProto | str | os.PathLike) -> CacheValidation:
        """Compare the cache with `model`: tensors it needs but lacks, entries it no longer has."""
        model = _as_model(model)
        inferred = _infer(model)
        needed = quantizable_tensors(inferred)
        known = _all_tensor_names(inferred)
        missing = [name for name in needed if name not in self._amax]
        extra = [name for name in self._amax if name not in known]
        return CacheValidation(missing=missing, extra=extra, header=self.header)


@dataclass(frozen=True)
class CacheValidation:
    """What a calibration cache lacks for a model (`missing`) and holds in excess (`extra`)."""

    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    header: str = ""

    @property
    def ok(self) -> bool:
        """True when every tensor the model's quantizable ops need has a scale."""
        return not self.missing

    def explain(self) -> str:
        """What the differences mean for a TensorRT build, and what to do."""
        if not self.missing and not self.extra:
            return f"The cache ({self.header}) has a scale for every tensor the model quantizes."
        parts = []
        if self.missing:
            first = self.missing[0]
            parts.append(
                f"{len(self.missing)} tensor(s) the model quantizes have no scale in the cache: "
                f"{_short_list(self.missing)}. TensorRT would report \"Could not find scales for "
                f"tensor {first}\": the cache came from another network, TensorRT version or "
                "platform (TensorRT FAQ 3 and 12), so calibrate again (delete the cache so "
                "TensorRT's calibrator runs, or trtlab's calibrate(model, data))."
            )
        if self.extra:
            entries = "entry names a tensor" if len(self.extra) == 1 else "entries name tensors"
            parts.append(
                f"{len(self.extra)} cache {entries} "
                f"this model does not have: {_short_list(self.extra)}. TensorRT ignores them, but "
                "they show the cache was written for a different or since-edited network "
                "(or names TensorRT-internal tensors such as '(Unnamed Layer* N)')."
            )
        if self.ok:
            parts.append("Every tensor the model quantizes has a scale, so the cache is usable.")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.explain()

    def __repr__(self) -> str:
        return f"CacheValidation(ok={self.ok}, missing={self.missing!r}, extra={self.extra!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.explain())


def _short_list(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# --- model inspection -------------------------------------------------------------------


def _as_model(model: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(getattr(model, "proto", None), onnx.ModelProto):  # a trtlab.model.Model
        return model.proto
    try:
        return onnx.load(str(model))
    except Exception as exc:
        raise ModelError(f"{model}: cannot load the ONNX model ({exc})") from exc


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with inferred value_info, so every tensor's dtype is known where it can be."""
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception as exc:
        raise ModelError(
            f"ONNX shape inference failed on the model ({exc}); fix the model (onnx.checker) "
            "before calibrating"
        ) from exc


def _elem_types(graph: onnx.GraphProto) -> dict[str, int]:
    types: dict[str, int] = {init.name: init.data_type for init in graph.initializer}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for node in graph.node:  # Constant outputs may lack value_info
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t is not None:
                    types.setdefault(node.output[0], attr.t.data_type)
    return types


def _constant_names(graph: onnx.GraphProto) -> set[str]:
    names = {init.name for init in graph.initializer}
    names.update(o for node in graph.node if node.op_type == "Constant" for o in node.output)
    return names


def _all_tensor_names(model: onnx.ModelProto) -> set[str]:
    graph = model.graph
    names = {vi.name for vi in (*graph.input, *graph.output, *graph.value_info)}
    names.update(init.name for init in graph.initializer)
    for node in graph.node:
        names.update(n for n in (*node.input, *node.output) if n)
    return names


def quantizable_tensors(model: onnx.ModelProto) -> list[str]:
    """Float activations needing a scale: graph inputs, and inputs of Conv, ConvTranspose,
    Gemm, MatMul and Add that are not weights or constants, in graph order.

    Pass a shape-inferred model (onnx.shape_inference) so intermediate dtypes are known;
    tensors whose dtype is unknown are left out.
    """
    graph = model.graph
    types = _elem_types(graph)
    constants = _constant_names(graph)
    names: dict[str, None] = {}
    for vi in graph.input:
        if vi.name not in constants and types.get(vi.name) in _FLOAT_TYPES:
            names[vi.name] = None
    for node in graph.node:
        if node.op_type not in _QUANTIZABLE_INPUTS:
            continue
        for name in node.input[: _QUANTIZABLE_INPUTS[node.op_type]]:
            if name and name not in constants and types.get(name) in _FLOAT_TYPES:
                names[name] = None
    return list(names)


@dataclass(frozen=True)
class _InputSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...] | None  # None: rank unknown; str/None entries: dynamic

    def describe(self) -> str:
        if self.shape is None:
            return f"{self.dtype}"
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype} [{dims}]"


def _input_specs(model: onnx.ModelProto) -> list[_InputSpec]:
    constants = {init.name for init in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in constants:
            continue
        tensor_type = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            raise ModelError(f"model input {vi.name!r} is not a tensor; calibration feeds tensors only")
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        except Exception as exc:
            raise ModelError(
                f"model input {vi.name!r} has ONNX element type {tensor_type.elem_type}, which has "
                "no numpy equivalent for calibration data"
            ) from exc
        shape = None
        if tensor_type.HasField("shape"):
            shape = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in tensor_type.shape.dim
            )
        specs.append(_InputSpec(vi.name, dtype, shape))
    return specs


# --- data ---------------------------------------------------------------------------------


def synthetic_batches(
    model: onnx.ModelProto,
    n: int,
    *,
    batch: int = 1,
    seed: int = 0,
    dynamic_dim: int = 16,
) -> Iterator[dict[str, np.ndarray]]:
    """`n` seeded random batches for `model`'s inputs, made one at a time.

    Float inputs are standard normal, integer inputs uniform in the model's declared range (default
    [0, 100): token or class ids), bool inputs random. A dynamic first dimension becomes `batch`,
    other dynamic dimensions `dynamic_dim`. The same seed gives the same batches.
    """
    proto = _as_model(model)
    specs = _input_specs(proto)
    shapes = {}
    for spec in specs:
        if spec.shape is None:
            raise InputError(
                f"model input {spec.name!r} has no shape in the model, so synthetic data cannot be "
                "made; pass your own batches (an iterable of dicts name -> array)"
            )
        if spec.dtype.kind not in "fiub":
            raise InputError(
                f"model input {spec.name!r} has dtype {spec.dtype}, for which trtlab makes no "
                "synthetic data; pass your own batches"
            )
        shapes[spec.name] = tuple(
            d if isinstance(d, int) and d > 0 else (batch if axis == 0 else dynamic_dim)
            for axis, d in enumerate(spec.shape)
        )
    source = Model(proto)  # the one random-feed generator, continued over the n batches
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield source.random_inputs(shapes, seed=rng)


def _check_batch(batch: Any, index: int, specs: list[_InputSpec]) -> dict[str, np.ndarray]:
    """The batch as {name: array of the model's dtype}, or InputError naming what is wrong."""
    where = f"calibration batch {index}"
    if not isinstance(batch, Mapping):
        raise InputError(
            f"{where} is a {type(batch).__name__}, expected a dict of input name -> numpy array "
            f"(inputs: {[s.name for s in specs]})"
        )
    by_name = {s.name: s for s in specs}
    for name in batch:
        if name not in by_name:
            raise InputError(
                f"{where}: {name!r} is not an input of the model; its inputs are "
                f"{list(by_name)}. Rename the key or check the model."
            )
    feed = {}
    for spec in specs:
        if spec.name not in batch:
            raise InputError(
                f"{where}: input {spec.name!r} is missing; expected {spec.describe()}, "
                f"got keys {list(batch)}"
            )
        array = np.asarray(batch[spec.name])
        if array.dtype != spec.dtype:
            if not np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
                raise InputError(
                    f"{where}: input {spec.name!r} has dtype {array.dtype}, which cannot be cast "
                    f"safely to the model's {spec.dtype}; expected {spec.describe()}, got "
                    f"{array.dtype} {list(array.shape)}"
                )
            array = array.astype(spec.dtype)
        if spec.shape is not None:
            static_ok = len(array.shape) == len(spec.shape) and all(
                not isinstance(d, int) or d <= 0 or d == got for d, got in zip(spec.shape, array.shape)
            )
            if not static_ok:
                raise InputError(
                    f"{where}: input {spec.name!r} has shape {list(array.shape)}, but the model "
                    f"expects {spec.describe()} (rank {len(spec.shape)}; '?' or names are free)"
                )
        feed[spec.name] = array
    return feed


# --- the driver ---------------------------------------------------------------------------


def _select_tensors(inferred: onnx.ModelProto, tensors: Iterable[str] | None) -> list[str]:
    if tensors is None:
        return quantizable_tensors(inferred)
    types = _elem_types(inferred.graph)
    known = _all_tensor_names(inferred)
    chosen = []
    for name in tensors:
        if name not in known:
            raise ConfigError(f"tensor {name!r} is not in the model; check the name (names are exact)")
        if types.get(name) not in _FLOAT_TYPES:
            raise ConfigError(
                f"tensor {name!r} is not a float tensor (ONNX type {types.get(name)}); only float "
                "activations are calibrated"
            )
        if name not in chosen:
            chosen.append(name)
    return chosen


def _session(inferred: onnx.ModelProto, outputs: list[str], providers: list[str] | None) -> Any:
    """An ONNX Runtime session of a copy of the model whose outputs include `outputs`."""
    import onnxruntime as ort

    augmented = onnx.ModelProto()
    augmented.CopyFrom(inferred)
    existing = {o.name for o in augmented.graph.output}
    types = _elem_types(augmented.graph)
    for name in outputs:
        if name not in existing:
            augmented.graph.output.append(onnx.helper.make_tensor_value_info(name, types[name], None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(
            augmented.SerializeToString(), options, providers=providers or ["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise ModelError(f"ONNX Runtime cannot load the model for calibration: {exc}") from exc


def _batches(model: onnx.ModelProto, data: Any) -> tuple[Iterable[Any], int | None]:
    if isinstance(data, bool) or data is None:
        raise CalibrationError(
            f"calibration data must be an iterable of dicts name -> array or an int (synthetic "
            f"batches), got {data!r}"
        )
    if isinstance(data, int):
        if data <= 0:
            raise CalibrationError(
                f"no calibration batches: asked for {data} synthetic batches; pass a positive int"
            )
        return synthetic_batches(model, data), data
    if isinstance(data, Mapping):
        data = [data]  # one batch given as a dict
    if not isinstance(data, Iterable):
        raise CalibrationError(
            f"calibration data must be an iterable of dicts name -> array or an int, got "
            f"{type(data).__name__}"
        )
    try:
        total = len(data)  # type: ignore[arg-type]
    except TypeError:
        total = None
    return data, total


def _check_cancel(cancel: threading.Event | None, done: int) -> None:
    if cancel is not None and cancel.is_set():
        raise CancelledError(f"calibration cancelled after {done} batch(es); no table was produced")


def calibrate(
    model: onnx.ModelProto | str | os.PathLike,
    data: Iterable[Mapping[str, np.ndarray]] | int,
    method: str = "entropy",
    tensors: Iterable[str] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    cancel: threading.Event | None = None,
    num_batches: int | None = None,
    percentile: float = 99.99,
    providers: list[str] | None = None,
    *,
    dtype: str = "int8",
    version: str | None = None,
) -> CalibrationTable:
    """Run `model` on ONNX Runtime over `data` and return each activation's amax.

    `data` is an iterable of {input name: array} dicts (consumed one batch at a time) or an
    int N for N seeded synthetic batches. `tensors` defaults to quantizable_tensors(model).
    `progress(done, total)` is called after each batch (total None when unknown); setting
    `cancel` stops before the next batch with CancelledError.
    """
    if method not in ALGORITHMS:
        raise ConfigError(f"unknown calibration method {method!r}; use 'entropy', 'minmax' or 'percentile'")
    if dtype not in QMAX:
        raise ConfigError(f"calibration dtype {dtype!r} is not supported; use 'int8' or 'fp8'")
    model = _as_model(model)
    inferred = _infer(model)
    names = _select_tensors(inferred, tensors)
    if not names:
        raise CalibrationError(
            "the model has no float activations feeding Conv, ConvTranspose, Gemm, MatMul or "
            "Add, so there is nothing to calibrate; pass tensors=[...] to choose some"
        )
    specs = _input_specs(inferred)
    input_names = {s.name for s in specs}
    run_outputs = [n for n in names if n not in input_names]
    session = _session(inferred, run_outputs, providers) if run_outputs else None
    calibrator = make_calibrator(method, percentile)
    batches, total = _batches(model, data)
    if num_batches is not None:
        if num_batches <= 0:
            raise ConfigError(f"num_batches must be a positive int or None, got {num_batches}")
        batches = itertools.islice(batches, num_batches)
        total = num_batches if total is None else min(total, num_batches)

    done = 0
    if progress is not None:
        progress(0, total)
    for batch in batches:
        _check_cancel(cancel, done)
        feed = _check_batch(batch, done, specs)
        values = dict.fromkeys(names)
        if session is not None:
            try:
                outputs = session.run(run_outputs, feed)
            except Exception as exc:
                raise CalibrationError(
                    f"ONNX Runtime failed on calibration batch {done}: {exc}"
                ) from exc
            values.update(zip(run_outputs, outputs))
            del outputs
        values.update((n, feed[n]) for n in names if n in feed)
        try:
            for name in names:
                calibrator.collect(name, values[name])
        except CalibrationError as exc:
            raise CalibrationError(f"calibration batch {done}: {exc}") from exc
        del values, feed
        done += 1
        if progress is not None:
            progress(done, total)
    _check_cancel(cancel, done)
    if done == 0:
        raise CalibrationError(
            "no calibration batches: the data iterable yielded nothing; pass a non-empty "
            "iterable of dicts name -> array, or an int N for N synthetic batches"
        )
    ordered = {}
    for name in names:  # entropy takes ~0.1 s a tensor, so stay cancellable
        _check_cancel(cancel, done)
        ordered[name] = calibrator.amax(name)
    return CalibrationTable(ordered, algorithm=ALGORITHMS[method], version=version, dtype=dtype)
