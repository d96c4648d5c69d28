"""What differs between two calibration caches: header versions and algorithms, tensors only in one, and the
per-tensor scale ratio of the tensors both hold (a DataFrame, largest change first)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .cache import CalibrationTable

COLUMNS = ["tensor", "scale_a", "scale_b", "ratio", "log2_ratio"]


@dataclass(frozen=True)
class CacheDiff:
    """Two caches side by side; `scales` has one row per tensor in both: scale_a, scale_b, ratio = b / a."""

    header_a: str
    header_b: str
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    scales: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COLUMNS))
    source_a: str = ""
    source_b: str = ""

    @property
    def same_tensors(self) -> bool:
        """True when both caches name the same tensors."""
        return not self.only_a and not self.only_b

    def changed(self, tolerance: float = 0.01) -> pd.DataFrame:
        """Rows whose scales differ by more than `tolerance` (relative)."""
        return self.scales[(self.scales["ratio"] - 1.0).abs() > tolerance].reset_index(drop=True)

    def explain(self) -> str:
        """Headers, what only one holds, and the largest scale ratios."""
        out = [f"a: {self.header_a}" + (f" ({self.source_a})" if self.source_a else ""),
               f"b: {self.header_b}" + (f" ({self.source_b})" if self.source_b else "")]
        va, aa = _split(self.header_a)
        vb, ab = _split(self.header_b)
        if va != vb:
            out.append(f"written by different TensorRT versions ({va} vs {vb}): TensorRT FAQ 3 says a cache is "
                       f"not compatible across versions (the fused network and its tensor names change)")
        if aa != ab:
            out.append(f"different calibration algorithms ({aa} vs {ab}): TensorRT reads a cache only through a "
                       f"calibrator of the algorithm its header names")
        out.append(f"{len(self.scales)} tensors in both, {len(self.only_a)} only in a, {len(self.only_b)} only in b")
        if self.only_a:
            out.append(f"only in a: {_names(self.only_a)}")
        if self.only_b:
            out.append(f"only in b: {_names(self.only_b)}")
        if len(self.scales):
            top = self.scales.head(5)
            out.append("largest scale ratios (b / a): " + ", ".join(
                f"{r.tensor!r} x{r.ratio:.4g}" for r in top.itertuples()))
        return "\n".join(out)

    def __str__(self) -> str:
        return self.explain()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.explain())


def _split(header: str) -> tuple[str, str]:
    parts = header.split("-", 2)
    return (parts[1], parts[2]) if len(parts) == 3 else (header, "")


def _names(names: list[str], limit: int = 8) -> str:
    return ", ".join(repr(n) for n in names[:limit]) + (f" and {len(names) - limit} more"
                                                         if len(names) > limit else "")


def diff_tables(a: Mapping[str, float], b: Mapping[str, float]) -> CacheDiff:
    """Compare two CalibrationTables (or {tensor: amax} dicts): scales are each table's own (amax / qmax of its
    dtype), compared as stored in the caches."""
    def scale(t: Mapping[str, float], name: str) -> float:
        return t.scale(name) if isinstance(t, CalibrationTable) else float(np.float32(float(t[name]) / 127.0))

    rows = []
    for n in (n for n in a if n in b):
        sa, sb = scale(a, n), scale(b, n)
        if sa > 0 and sb > 0:
            ratio = sb / sa
            log2 = math.log2(ratio)
        elif sa == sb:  # both zero
            ratio, log2 = 1.0, 0.0
        else:
            ratio, log2 = (math.inf, math.inf) if sa == 0 else (0.0, -math.inf)
        rows.append({"tensor": n, "scale_a": sa, "scale_b": sb, "ratio": ratio, "log2_ratio": log2})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if len(frame):
        order = frame["log2_ratio"].abs().sort_values(ascending=False, kind="stable").index
        frame = frame.loc[order].reset_index(drop=True)
    def about(t: Mapping[str, float]) -> tuple[str, str]:
        return (t.header, t.version_source) if isinstance(t, CalibrationTable) else ("", "")

    (ha, sa_), (hb, sb_) = about(a), about(b)
    return CacheDiff(header_a=ha, header_b=hb, only_a=[n for n in a if n not in b],
                     only_b=[n for n in b if n not in a], scales=frame, source_a=sa_, source_b=sb_)


__all__ = ["CacheDiff", "diff_tables"]
