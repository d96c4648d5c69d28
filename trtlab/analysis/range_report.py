"""FP16/BF16 range report: each tensor's magnitude distribution from one FP32 run, against the low types' ranges.

Rows are labelled by kind as comparison rows are (compare.tensor_kind): integer tensors are never converted, so
they get no FP16/BF16 counts; weights keep theirs but are counted apart from the activations in the headlines.

Percentiles of |x| come from a log2 histogram (1/16-octave bins from 2^-160 to 2^128, counts only,
accumulated over batches), so they are exact to within one bin, about 4.4% relative.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .compare import range_counts, tensor_kind

PERCENTILES = (50.0, 99.0, 99.9, 99.99)
_BINS_PER_OCTAVE = 16
_LO, _HI = -160, 128
_EDGES = np.exp2(np.arange(_LO * _BINS_PER_OCTAVE, _HI * _BINS_PER_OCTAVE + 1) / _BINS_PER_OCTAVE)

COLUMNS = ["index", "tensor", "kind", "shape", "dtype", "elements", "zeros", "min_abs_nonzero", "max_abs"] + \
    [f"p{p:g}_abs" for p in PERCENTILES] + ["fp16_overflow", "fp16_underflow", "fp16_subnormal",
                                             "bf16_overflow", "bf16_underflow", "bf16_subnormal", "nan", "inf"]


@dataclass
class RangeStats:
    """Running magnitude statistics of one tensor."""

    name: str
    kind: str = "activation"  # activation, weight (computed from constants only) or integer (set from the dtype)
    shape: tuple[int, ...] | None = None
    dtype: str = ""
    n: int = 0
    zeros: int = 0
    nan: int = 0
    inf: int = 0
    min_nz: float = math.inf
    max_abs: float = 0.0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ["fp16_overflow", "fp16_underflow", "fp16_subnormal", "bf16_overflow", "bf16_underflow", "bf16_subnormal"], 0))
    hist: np.ndarray = field(default_factory=lambda: np.zeros(len(_EDGES) + 1, np.int64))

    def update(self, x: np.ndarray) -> None:
        """Fold one batch of the tensor in."""
        self.shape, self.dtype = tuple(x.shape), str(x.dtype)
        self.kind = tensor_kind(x.dtype, self.kind == "weight")
        a = np.abs(np.asarray(x, dtype=np.float32).ravel())
        self.n += a.size
        self.nan += int(np.count_nonzero(np.isnan(a)))
        self.inf += int(np.count_nonzero(np.isinf(a)))
        a = a[np.isfinite(a)]
        nz = a[a > 0]
        self.zeros += a.size - nz.size
        if nz.size:
            self.min_nz = min(self.min_nz, float(nz.min()))
            self.max_abs = max(self.max_abs, float(nz.max()))
            self.hist += np.bincount(np.searchsorted(_EDGES, nz, side="right"), minlength=len(self.hist))
        for p in ("fp16", "bf16") if self.kind != "integer" else ():  # an integer tensor is never converted
            o, u, s = range_counts(a, p)
            self.counts[f"{p}_overflow"] += o
            self.counts[f"{p}_underflow"] += u
            self.counts[f"{p}_subnormal"] += s

    def percentile(self, q: float) -> float:
        """Approximate q-th percentile of |x| over all finite elements (zeros included)."""
        total = self.zeros + int(self.hist.sum())
        if total == 0:
            return math.nan
        rank = q / 100.0 * (total - 1)
        if rank < self.zeros:
            return 0.0
        cum = np.cumsum(self.hist) + self.zeros
        k = int(np.searchsorted(cum, rank, side="right"))
        lo = _EDGES[k - 1] if k >= 1 else 0.0
        hi = _EDGES[k] if k < len(_EDGES) else lo
        value = math.sqrt(lo * hi) if lo > 0 else hi
        return float(min(max(value, self.min_nz), self.max_abs))

    def row(self) -> dict[str, Any]:
        """One table row."""
        return {"tensor": self.name, "kind": self.kind, "shape": list(self.shape) if self.shape else None, "dtype": self.dtype,
                "elements": self.n, "zeros": self.zeros,
                "min_abs_nonzero": self.min_nz if math.isfinite(self.min_nz) else 0.0, "max_abs": self.max_abs,
                **{f"p{p:g}_abs": self.percentile(p) for p in PERCENTILES}, **self.counts,
                "nan": self.nan, "inf": self.inf}


@dataclass
class RangeReport:
    """One row per tensor (graph order): magnitudes and FP16/BF16 overflow, underflow and subnormal counts."""

    frame: Any
    batches: int
    weights: Any = None
    notes: list[str] = field(default_factory=list)

    def to_frame(self):
        """The per-tensor table (a copy)."""
        return self.frame.copy()

    def problems(self, precision: str = "fp16", kinds: tuple[str, ...] = ("activation", "weight")):
        """Rows of `kinds` with any overflow or underflow in `precision` (integer rows never have any)."""
        f = self.frame
        f = f[f["kind"].isin(kinds)]
        return f[(f[f"{precision}_overflow"] > 0) | (f[f"{precision}_underflow"] > 0)]

    @property
    def summary(self) -> dict[str, Any]:
        """Counts of tensors with problems: tensors_with_* over the activations, weights_with_* over the weights
        (integer tensors are counted, never range-checked)."""
        f = self.frame
        kinds = f["kind"].value_counts().to_dict()
        acts, weights = f[f["kind"] == "activation"], f[f["kind"] == "weight"]
        cols = ("fp16_overflow", "fp16_underflow", "fp16_subnormal", "bf16_overflow", "bf16_underflow")
        return {"tensors": int(len(f)), "batches": self.batches,
                **{k + "s": int(kinds.get(k, 0)) for k in ("activation", "weight")},
                "integers": int(kinds.get("integer", 0)),
                **{f"tensors_with_{c}": int((acts[c] > 0).sum()) for c in cols},
                **{f"weights_with_{c}": int((weights[c] > 0).sum()) for c in cols}}

    def to_dict(self) -> dict[str, Any]:
        """JSON payload for the workspace."""
        return {"batches": self.batches, "summary": self.summary, "notes": self.notes}

    def __repr__(self) -> str:
        s = self.summary
        weights = (f"; weights: {s['weights_with_fp16_overflow']} overflow fp16, {s['weights_with_fp16_underflow']} "
                   f"underflow fp16" if s["weights"] else "")
        return (f"<RangeReport {s['tensors']} tensors ({s['activations']} activations, {s['weights']} weights, "
                f"{s['integers']} integer) over {self.batches} batch(es): activations: "
                f"{s['tensors_with_fp16_overflow']} overflow fp16, {s['tensors_with_fp16_underflow']} underflow fp16"
                f"{weights}>")

    def _repr_html_(self) -> str:
        from ..markup import esc
        return f"<b>{esc(repr(self))}</b>" + self.frame.to_html(max_rows=40, float_format=lambda v: f"{v:.4g}")


def range_frame(stats: list[RangeStats]):
    """DataFrame of RangeStats rows in the given order."""
    import pandas as pd
    return pd.DataFrame([dict(index=i, **s.row()) for i, s in enumerate(stats)], columns=COLUMNS)
