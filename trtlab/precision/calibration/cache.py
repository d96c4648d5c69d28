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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ...errors import CalibrationCacheError, CalibrationError, ConfigError
from ..graph import QMAX
from .clipping import REPORT_METHODS, CalibrationStatistics, ClippingReport, calibration_warnings, clipping_frame
from .coverage import CacheValidation, coverage, provenance, read_sidecar, sidecar_path
from .thresholds import ALGORITHMS

# The algorithm names TensorRT writes in cache headers (ALGORITHMS: which one each trtlab method writes).
KNOWN_ALGORITHMS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")

# trtlab's declared default header version, used when neither TensorRT nor TensorRT-RTX is installed (10.3.0).
FALLBACK_TENSORRT_VERSION = "100300"
# distributions whose version a header takes, in order: full TensorRT, then TensorRT-RTX (which writes no cache
# itself: strongly typed only; a header then names the RTX version that trtlab ran with)
_LIBRARIES = (("tensorrt", ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11")),
              ("tensorrt_rtx", ("tensorrt-rtx", "tensorrt_rtx_cu13_bindings", "tensorrt_rtx_cu12_bindings",
                                "tensorrt-rtx-cu13-bindings", "tensorrt-rtx-cu12-bindings")))

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


def header_version() -> tuple[str, str]:
    """(version digits, where they came from) for a new cache header: the installed TensorRT, else the installed
    TensorRT-RTX (read from package metadata, nothing imported), else trtlab's default FALLBACK_TENSORRT_VERSION."""
    for library, dists in _LIBRARIES:
        for dist in dists:
            try:
                version = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
            return tensorrt_version_digits(version), f"{library} {version}"
    return FALLBACK_TENSORRT_VERSION, "trtlab's default (TensorRT 10.3.0; no TensorRT installed)"


def default_tensorrt_version() -> str:
    """The version digits a new cache header gets (see header_version)."""
    return header_version()[0]


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
        method: str | None = None,
        statistics: CalibrationStatistics | None = None,
        warnings: Iterable[str] = (),
    ) -> None:
        if dtype not in QMAX:
            raise ConfigError(f"calibration dtype {dtype!r} is not supported; use 'int8' or 'fp8'")
        self._amax = {str(k): float(v) for k, v in amax.items()}
        self.algorithm = algorithm
        self.version, self.version_source = (version, "given") if version is not None else header_version()
        # the model the cache was written for (coverage.provenance), from its sidecar or save(model=); else None
        self.provenance: dict[str, Any] | None = None
        self.dtype = dtype
        self.method = method  # trtlab's method name when calibrate() made the table, else None
        self.statistics = statistics  # the histograms calibrate() collected (None for a table read from a cache)
        self.warnings = list(warnings)

    def _statistics(self, what: str) -> CalibrationStatistics:
        if self.statistics is None:
            raise CalibrationError(
                f"{what} needs the histograms that calibrate() collects; this table has only ranges (it was read "
                "from a cache or made from a dict): calibrate again with Session.calibrate(data)")
        return self.statistics

    def clipping(self, methods: Iterable[str] | None = None) -> ClippingReport:
        """Per tensor and method (default: every method): amax, absmax, the share of values and of L2 energy
        clipped, the quantization step and the estimated error, from the histograms collected once (the model
        is not run again). `print(table.clipping())` names the worst tensors; `.frame` is the DataFrame,
        `.side_by_side("clipped_energy")` a tensor x method table."""
        stats = self._statistics("clipping()")
        frame = clipping_frame(stats, self._amax, REPORT_METHODS if methods is None else methods)
        return ClippingReport(frame, self.method or "")

    def with_method(self, method: str, percentile: float | None = None) -> CalibrationTable:
        """The table `method` gives on the same histograms (no model run), with its own warnings."""
        stats = self._statistics("with_method()")
        amax, _ = stats.choose(method, percentile)
        if percentile is not None:
            stats = replace(stats, percentile=percentile)
        table = CalibrationTable(amax, algorithm=ALGORITHMS[method], version=self.version, dtype=self.dtype,
                                 method=method, statistics=stats, warnings=calibration_warnings(stats, method, amax))
        table.version_source, table.provenance = self.version_source, self.provenance  # same data, same model
        return table

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
        method = f", method={self.method!r}" if self.method else ""
        warned = f", {len(self.warnings)} warning(s)" if self.warnings else ""
        return f"CalibrationTable({len(self)} tensors, {self.header}, dtype={self.dtype!r}{method}{warned})"

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

    def save(self, path: str | os.PathLike, model: Any = None) -> Path:
        """Write the cache to `path` atomically (no half-written file on failure), in TensorRT's format only.

        With `model` (the model it was calibrated on), or when the table knows it, also write its provenance
        beside the cache (`<path>.trtlab.json`), so validate() can tell when the model changed since."""
        from ...workspace import atomic_write, dumps
        if model is not None:
            self.provenance = provenance(model, self.header, self.version_source)
        out = atomic_write(Path(path), self.to_text())
        if self.provenance is not None:
            atomic_write(sidecar_path(path), dumps(self.provenance))
        return out

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
        table = cls.from_text(text, source=str(path), dtype=dtype)
        table.version_source = f"the cache file {path.name}"
        table.provenance = read_sidecar(path)
        return table

    def validate(self, model: onnx.ModelProto | str | os.PathLike | Any,
                 skip_nodes: tuple[str, ...] = ()) -> CacheValidation:
        """Compare the cache with `model` (coverage.coverage): tensors the Q/DQ inserter needs but the cache
        lacks, entries the model does not have, and whether the model changed since the cache was saved."""
        return coverage(self, model, tuple(skip_nodes), written_for=self.provenance)
