"""Calibration tables: read and write TensorRT's calibration-cache text format, and check a cache against a model.

Cache format (what TensorRT's writeCalibrationCache produces): a header line
``TRT-<version>-<Algorithm>`` then one line per tensor, ``<name>: <scale>``, the scale as a
big-endian IEEE float32 in 8 lowercase hex digits, every line ending in ``\\n``.
"""
from __future__ import annotations

import math
import os
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ...errors import CalibrationCacheError, ConfigError
from ..graph import QMAX, all_tensor_names, as_proto, infer_types, quantizable_tensors

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
        from ...workspace import atomic_write
        return atomic_write(Path(path), self.to_text())

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
        model = as_proto(model)
        inferred = infer_types(model)
        needed = quantizable_tensors(inferred)
        known = all_tensor_names(inferred)
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
