"""Layer-wise comparison of two engines (e.g. FP32 reference vs FP16 candidate), streamed over batches.

Per tensor, statistics are accumulated batch by batch as running sums, never as stored tensors: both
tensors are taken in float32 (the candidate's float16 converted exactly), elementwise errors are float32,
squares, products and every sum float64; the work goes in steps of CHUNK elements through buffers
reused from step to step and tensor to tensor (Scratch). Relative error is |ref - cand| / |ref|; its max and mean are over elements with ref != 0.
The deviation ratio is the TensorRT FAQ's: elements whose relative error exceeds 10% (an element with
ref == 0 and cand != 0 counts as over) over all elements. SNR = 10 log10(sum ref^2 / sum (ref - cand)^2).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..precision.lowp import RANGES
from .divergence import FACTOR, activations, first_divergence, nonfinite_text, sensitivity

COLUMNS = ["index", "tensor", "kind", "shape", "ref_dtype", "cand_dtype", "max_abs_err", "mean_abs_err", "max_rel_err",
           "mean_rel_err", "elements_over_10pct", "total_elements", "ratio", "cosine", "snr_db", "rel_rms_err",
           "ref_nan", "ref_inf", "cand_nan", "cand_inf", "cand_overflow_inf", "finite_elements", "ref_max_abs",
           "overflow", "underflow", "subnormal"]


# float32 relative errors exceed 0.1 (a float64) exactly when they are >= float32(0.1), which rounds up; comparing
# with 0.1 in float32 would drop the errors equal to float32(0.1)
_OVER_10PCT = np.float32(0.1)
CHUNK = 1 << 17  # elements per statistics step: the step's buffers (a few MiB) stay in cache whatever the tensor size


class Scratch:
    """Reusable buffers for one statistics step, so a step allocates nothing (fresh multi-MiB temporaries are
    mmapped and page-faulted on every step, which cost more than the arithmetic). One per thread of work."""

    def __init__(self, size: int = CHUNK) -> None:
        self.size = size
        self.r32, self.c32, self.d32, self.ra32, self.rel32 = (np.empty(size, np.float32) for _ in range(5))
        self.r64, self.c64, self.d64 = (np.empty(size, np.float64) for _ in range(3))
        self.mask, self.mask2 = np.empty(size, np.bool_), np.empty(size, np.bool_)
        # float16 -> float32 by bit arithmetic needs subnormal arithmetic: a thread that flushes denormals to
        # zero gets numpy's conversion instead
        self.halves_by_bits = halves_by_bits_exact()

    def convert(self, a: np.ndarray, out: np.ndarray) -> np.ndarray:
        """`a` converted into the preallocated `out` (same size)."""
        if a.dtype == np.float16 and out.dtype == np.float32 and self.halves_by_bits:
            return half_to_float(a, out)
        np.copyto(out, a, casting="unsafe")
        return out


def range_counts(a: np.ndarray, precision: str = "fp16") -> tuple[int, int, int]:
    """(overflow |x| > max, underflow-to-zero 0 < |x| < min subnormal, subnormal min_sub <= |x| < min_normal)."""
    r = RANGES[precision]
    return (int(np.count_nonzero(a > r["max"])),
            int(np.count_nonzero((a > 0) & (a < r["min_subnormal"]))),
            int(np.count_nonzero((a >= r["min_subnormal"]) & (a < r["min_normal"]))))


def tensor_kind(dtype: Any, weight: bool) -> str:
    """The kind of a compared tensor: "integer" for any integer or bool dtype (never converted, so never in fp16
    range statistics), else "weight" when it is computed from constants only (precision.graph.weight_tensors),
    else "activation". Comparison rows and range report rows are labelled by this one rule."""
    return "integer" if np.dtype(dtype).kind in "iub" else ("weight" if weight else "activation")


@dataclass
class TensorStats:
    """Running per-tensor error statistics of candidate against reference."""

    name: str
    range_precision: str = "fp16"
    kind: str = "activation"  # activation, weight (computed from constants only) or integer (any integer dtype)
    shape: tuple[int, ...] | None = None
    ref_dtype: str = ""
    cand_dtype: str = ""
    n: int = 0
    n_rel: int = 0
    sum_abs: float = 0.0
    max_abs: float = 0.0
    sum_rel: float = 0.0
    max_rel: float = 0.0
    over10: int = 0
    sum_ref2: float = 0.0
    sum_cand2: float = 0.0
    sum_err2: float = 0.0
    dot: float = 0.0
    ref_nan: int = 0
    ref_inf: int = 0
    cand_nan: int = 0
    cand_inf: int = 0
    ref_max_abs: float = 0.0
    overflow: int = 0
    underflow: int = 0
    subnormal: int = 0
    cand_overflow_inf: int = 0  # elements where the reference is finite and the candidate is +-inf
    n_finite: int = 0  # elements where both are finite: the error statistics are over these only

    def update(self, ref: np.ndarray, cand: np.ndarray, scratch: Scratch | None = None) -> None:
        """Fold one batch of both tensors into the sums (in chunks, so temporaries stay small)."""
        self.shape = tuple(ref.shape)
        self.ref_dtype, self.cand_dtype = str(ref.dtype), str(cand.dtype)
        if ref.shape != cand.shape:
            raise ConfigError(f"tensor {self.name!r}: reference shape {ref.shape} != candidate shape {cand.shape}; "
                              f"compare engines built for the same batch and input shapes")
        r_all, c_all = ref.reshape(-1), cand.reshape(-1)
        self.kind = tensor_kind(ref.dtype, self.kind == "weight")
        buf = scratch or Scratch(max(1, min(CHUNK, r_all.size)))
        for start in range(0, r_all.size, buf.size):
            r, c = r_all[start:start + buf.size], c_all[start:start + buf.size]
            n = r.size
            if r.dtype != np.float32:
                r = buf.convert(r, buf.r32[:n])
            if c.dtype != np.float32:
                c = buf.convert(c, buf.c32[:n])
            if not self._update_finite(r, c, buf):
                self._update(r, c)

    def _update_finite(self, r: np.ndarray, c: np.ndarray, buf: Scratch) -> bool:
        """The step for a chunk where every element of both is finite, the common case: the same quantities as
        _update (float32 errors, float64 products and sums) in preallocated buffers and without boolean
        indexing (a masked copy or assignment costs fifty times an arithmetic pass). Returns False, having
        changed nothing, when some element is not finite (or r - c overflows), for _update to take the chunk."""
        n = r.size
        with np.errstate(invalid="ignore", over="ignore"):
            d = np.subtract(r, c, out=buf.d32[:n])
        np.abs(d, out=d)
        max_abs = float(np.max(d))
        if not math.isfinite(max_abs):  # a NaN or inf in either (or an overflowing difference)
            return False
        self.n += n
        self.n_finite += n
        self.max_abs = max(self.max_abs, max_abs)
        ra = np.abs(r, out=buf.ra32[:n])
        self.ref_max_abs = max(self.ref_max_abs, float(np.max(ra)))
        lim, mask = RANGES[self.range_precision], buf.mask[:n]
        zeros = 0
        below_normal = int(np.count_nonzero(np.less(ra, lim["min_normal"], out=mask)))
        if below_normal:  # counts of nested ranges by differences: no mask is combined or applied
            zeros = int(np.count_nonzero(np.equal(ra, 0, out=mask)))
            if self.kind != "integer":
                below_sub = int(np.count_nonzero(np.less(ra, lim["min_subnormal"], out=mask)))
                self.underflow += below_sub - zeros
                self.subnormal += below_normal - below_sub
        if self.kind != "integer" and self.ref_max_abs > lim["max"]:
            self.overflow += int(np.count_nonzero(np.greater(ra, lim["max"], out=mask)))
        r64, c64, d64 = buf.convert(r, buf.r64[:n]), buf.convert(c, buf.c64[:n]), buf.convert(d, buf.d64[:n])
        self.sum_abs += float(np.sum(d64))
        # float32 values and their products are exact in float64; einsum sums the products without a temporary
        # per quantity and, unlike np.dot (BLAS), without waking a thread pool per call, which on a busy CPU
        # costs a hundred times the arithmetic
        self.sum_err2 += float(np.einsum("i,i->", d64, d64))
        self.sum_ref2 += float(np.einsum("i,i->", r64, r64))
        self.sum_cand2 += float(np.einsum("i,i->", c64, c64))
        self.dot += float(np.einsum("i,i->", r64, c64))
        rel = buf.rel32[:n]
        num = d
        if zeros:
            # where ref == 0 the relative error is inf (over 10%) if d > 0; those stay out of the sums: the
            # numerator is zeroed there and the denominator made 1, so rel is 0 there
            zero = np.equal(ra, 0, out=mask)
            self.over10 += int(np.count_nonzero(np.greater(np.multiply(d, zero, out=rel), 0, out=buf.mask2[:n])))
            np.add(ra, zero, out=ra)  # 1 where ref == 0, |ref| elsewhere
            num = np.multiply(d, np.logical_not(zero, out=mask), out=rel)
        np.divide(num, ra, out=rel)
        self.over10 += int(np.count_nonzero(np.greater_equal(rel, _OVER_10PCT, out=mask)))
        self.n_rel += n - zeros
        if n > zeros:
            self.sum_rel += float(np.sum(buf.convert(rel, d64)))
            self.max_rel = max(self.max_rel, float(np.max(rel)))
        return True

    def _update(self, r: np.ndarray, c: np.ndarray) -> None:
        self.n += r.size
        ref_fin = np.isfinite(r)
        self.ref_nan += int(np.count_nonzero(np.isnan(r)))
        self.ref_inf += int(np.count_nonzero(np.isinf(r)))
        self.cand_nan += int(np.count_nonzero(np.isnan(c)))
        self.cand_inf += int(np.count_nonzero(np.isinf(c)))
        self.cand_overflow_inf += int(np.count_nonzero(ref_fin & np.isinf(c)))
        fin = ref_fin & np.isfinite(c)
        # an element the candidate made non-finite is over 10% off; it stays out of every sum below
        self.over10 += int(np.count_nonzero(ref_fin & ~fin))
        rf = np.abs(r[ref_fin]) if not ref_fin.all() else np.abs(r)  # range statistics: every finite reference
        if rf.size:
            self.ref_max_abs = max(self.ref_max_abs, float(np.max(rf)))
        if self.kind != "integer":  # an integer tensor is never converted: no fp16 range statistics
            o, u, s = range_counts(rf, self.range_precision)
            self.overflow += o
            self.underflow += u
            self.subnormal += s
        if not fin.all():
            r, c = r[fin], c[fin]
        self.n_finite += r.size
        ra = np.abs(r)
        d = np.abs(r - c)
        if d.size:
            self.max_abs = max(self.max_abs, float(np.max(d)))
        f64 = np.float64
        self.sum_abs += float(np.sum(d, dtype=f64))
        self.sum_err2 += float(np.sum(np.square(d, dtype=f64)))
        self.sum_ref2 += float(np.sum(np.square(r, dtype=f64)))
        self.sum_cand2 += float(np.sum(np.square(c, dtype=f64)))
        self.dot += float(np.sum(np.multiply(r, c, dtype=f64)))
        nz = ra > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(nz, d / np.where(nz, ra, 1.0), np.where(d > 0, np.inf, 0.0))
        self.over10 += int(np.count_nonzero(rel > 0.1))
        rel_nz = rel[nz]
        self.n_rel += rel_nz.size
        if rel_nz.size:
            self.sum_rel += float(np.sum(rel_nz, dtype=f64))
            self.max_rel = max(self.max_rel, float(np.max(rel_nz)))

    def row(self) -> dict[str, Any]:
        """The statistics as one table row. Errors are over the elements where both tensors are finite; a
        statistic those do not define (none finite, a zero reference with an error) is None, never inf."""
        def finite(v: float) -> float | None:
            return v if math.isfinite(v) else None
        has = self.n_finite > 0
        denom = math.sqrt(self.sum_ref2 * self.sum_cand2)
        snr = (10 * math.log10(self.sum_ref2 / self.sum_err2) if self.sum_err2 > 0 and self.sum_ref2 > 0 else None)
        return {"tensor": self.name, "kind": self.kind, "shape": list(self.shape) if self.shape else None,
                "ref_dtype": self.ref_dtype, "cand_dtype": self.cand_dtype, "max_abs_err": self.max_abs if has else None,
                "mean_abs_err": self.sum_abs / self.n_finite if has else None,
                "max_rel_err": finite(self.max_rel) if has else None,
                "mean_rel_err": finite(self.sum_rel / self.n_rel) if self.n_rel else (0.0 if has else None),
                "elements_over_10pct": self.over10, "total_elements": self.n,
                "ratio": self.over10 / self.n if self.n else 0.0,
                "cosine": (self.dot / denom if denom > 0 else (1.0 if self.sum_err2 == 0 else 0.0)) if has else None,
                "snr_db": finite(snr) if snr is not None else None,
                "rel_rms_err": (math.sqrt(self.sum_err2 / self.sum_ref2) if self.sum_ref2 > 0
                                else (0.0 if self.sum_err2 == 0 else None)) if has else None,
                "ref_nan": self.ref_nan, "ref_inf": self.ref_inf, "cand_nan": self.cand_nan,
                "cand_inf": self.cand_inf, "cand_overflow_inf": self.cand_overflow_inf,
                "finite_elements": self.n_finite, "ref_max_abs": self.ref_max_abs, "overflow": self.overflow,
                "underflow": self.underflow, "subnormal": self.subnormal}

    @property
    def introduced_nonfinite(self) -> bool:
        """Whether the candidate has NaN/inf beyond the reference's."""
        return self.cand_nan > self.ref_nan or self.cand_inf > self.ref_inf


def half_to_float(h: np.ndarray, out: np.ndarray) -> np.ndarray:
    """float16 -> float32 by integer and float arithmetic on the bits (exact, NaN payloads kept): numpy converts
    float16 one element at a time, at twenty times the cost of an arithmetic pass. The magnitude bits shifted
    into float32 position and scaled by 2**112 give every finite value (subnormals renormalised by the
    multiplication); inf/NaN get the all-ones exponent back; then the sign."""
    bits = h.view(np.uint16)
    o = out.view(np.uint32)
    np.bitwise_and(bits, 0x7FFF, out=o)
    np.left_shift(o, 13, out=o)
    np.multiply(out, np.float32(2.0**112), out=out)
    if float(np.max(out)) >= 65536.0:  # inf or NaN in the input
        np.bitwise_or(o, np.where(out >= 65536.0, np.uint32(0x7F800000), np.uint32(0)), out=o)
    np.bitwise_or(o, np.left_shift(np.bitwise_and(bits, 0x8000).astype(np.uint32), 16), out=o)
    return out


def halves_by_bits_exact() -> bool:
    """Whether half_to_float gives numpy's float32 for zeros, subnormals, normals, the largest half, inf and NaN
    in this thread (tests compare it with numpy on every float16)."""
    h = np.array([0.0, -0.0, 2.0**-24, -3 * 2.0**-24, 1023 * 2.0**-24, 2.0**-14, 1.0, -1.5, 65504.0, np.inf, -np.inf,
                  np.nan], np.float16)
    with np.errstate(all="ignore"):
        ours = half_to_float(h, np.empty(h.size, np.float32))
    return bool(np.array_equal(ours.view(np.uint32), h.astype(np.float32).view(np.uint32)))


@dataclass
class ComparisonResult:
    """One row per compared tensor in graph order (with the node that produced it and the compared tensors it
    reads); `sensitivity()` is the error each node adds to its inputs', `first_divergence()` where error starts."""

    frame: Any
    reference: str
    candidate: str
    batches: int
    range_precision: str = "fp16"
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    precision: str | None = None  # the candidate's precision (its unit roundoff); range_precision when not given

    def to_frame(self):
        """The per-tensor table (a copy)."""
        return self.frame.copy()

    def sensitivity(self):
        """Per activation: its node, input error, output error, added error and gain (divergence.sensitivity)."""
        return sensitivity(self.frame, self.precision or self.range_precision)

    def first_divergence(self, factor: float = FACTOR, floor: float | None = None) -> dict[str, Any] | None:
        """Where the candidate's error starts, and by which rule (divergence.first_divergence)."""
        return first_divergence(self.frame, factor, floor, self.precision or self.range_precision)

    @property
    def summary(self) -> dict[str, Any]:
        """Headline numbers over the activations (weights and integer tensors are counted, not ranked): worst
        tensor, first divergence, tensors the candidate overflowed to inf, range problems."""
        f = self.frame
        acts = activations(f)
        # a tensor the candidate made non-finite is the worst there is; then the largest finite error
        worst = None
        if len(acts):
            bad = acts[(acts["cand_nan"] > acts["ref_nan"]) | (acts["cand_inf"] > acts["ref_inf"])]
            pool = bad if len(bad) else acts
            key = (pool["cand_inf"] + pool["cand_nan"]) if len(bad) else pool["rel_rms_err"].astype(float).fillna(-1.0)
            worst = pool.loc[key.idxmax()]
        div = self.first_divergence()
        err = None if worst is None else worst["rel_rms_err"]
        kinds = f["kind"].value_counts().to_dict() if "kind" in f else {"activation": len(f)}
        over = acts[acts["cand_overflow_inf"] > 0] if "cand_overflow_inf" in acts else acts.iloc[:0]
        integer_free = f[f["kind"] != "integer"] if "kind" in f else f
        return {"reference": self.reference, "candidate": self.candidate, "tensors": int(len(f)),
                "batches": self.batches,
                "activations": int(kinds.get("activation", 0)), "weights": int(kinds.get("weight", 0)),
                "integers": int(kinds.get("integer", 0)),
                "worst_tensor": None if worst is None else worst["tensor"],
                "worst_rel_rms_err": None if err is None or err != err else float(err),
                "first_divergence": None if div is None else div["tensor"],
                f"tensors_overflowed_to_inf_{self.range_precision}": int(len(over)),
                f"elements_overflowed_to_inf_{self.range_precision}": int(over["cand_overflow_inf"].sum())
                if len(over) else 0,
                f"tensors_overflowing_{self.range_precision}": int((integer_free["overflow"] > 0).sum()) if len(f) else 0,
                f"tensors_underflowing_{self.range_precision}": int((integer_free["underflow"] > 0).sum())
                if len(f) else 0}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready payload for the workspace."""
        return {"reference": self.reference, "candidate": self.candidate, "batches": self.batches,
                "range_precision": self.range_precision, "precision": self.precision, "notes": self.notes, "summary": self.summary,
                "first_divergence": self.first_divergence(), **self.meta}

    def __repr__(self) -> str:
        s = self.summary
        p = self.range_precision
        div = s["first_divergence"] or "none"
        err = s["worst_rel_rms_err"]
        worst = f"worst {s['worst_tensor']}"
        if s["worst_tensor"] is not None:
            row = self.frame.loc[self.frame["tensor"] == s["worst_tensor"]].iloc[0]
            bad = row["cand_nan"] > row["ref_nan"] or row["cand_inf"] > row["ref_inf"]
            worst += f" ({nonfinite_text(row, p)})" if bad else f" (rel RMS {err:.3g})" if err is not None else ""
        over = s[f"tensors_overflowed_to_inf_{p}"]
        overflow = (f", {over} tensor(s) overflowed to inf in {p} ({s[f'elements_overflowed_to_inf_{p}']} "
                    f"elements)" if over else "")
        # how the candidate computed fp16 (the analysis engine: fp16_mode='faithful' on ONNX Runtime's CPU provider)
        faithful = ("; fp16 stored in fp16 (faithful)" if any("fp16_mode='faithful'" in n for n in self.notes) else
                    "; candidate NOT computed in its precision (see notes)" if any("NOT computed in" in n
                                                                                 for n in self.notes) else "")
        return (f"<ComparisonResult {self.candidate} vs {self.reference}: {s['tensors']} tensors "
                f"({s['activations']} activations, {s['weights']} weights, {s['integers']} integer), "
                f"{self.batches} batch(es), {worst}, first divergence {div}{overflow}{faithful}>")

    def _repr_html_(self) -> str:
        from ..markup import esc
        cols = ["tensor", "kind", "max_abs_err", "mean_rel_err", "ratio", "cosine", "snr_db", "cand_inf", "cand_nan",
                "overflow", "underflow", "subnormal"]
        return (f"<b>{esc(repr(self))}</b>" + "".join(f"<br><i>{esc(n)}</i>" for n in self.notes)
                + self.frame[cols].to_html(max_rows=40, float_format=lambda v: f"{v:.4g}"))


def stats_frame(stats: Iterable[TensorStats]):
    """A DataFrame of TensorStats rows, numbered in the given order."""
    import pandas as pd
    rows = [dict(index=i, **s.row()) for i, s in enumerate(stats)]
    return pd.DataFrame(rows, columns=COLUMNS)


def with_sources(frame: Any, sources: Mapping[str, tuple[str, str, tuple[str, ...]]]):
    """The frame with the columns node, op_type and inputs (after kind) from `sources` ({tensor: (node name, op type,
    compared tensors it reads)}, precision.graph.compared_sources); None where a tensor has no producing node."""
    out = frame.copy()
    at = list(out.columns).index("kind" if "kind" in out else "tensor") + 1
    got = [sources.get(t) for t in out["tensor"]]
    for k, col in enumerate(("node", "op_type", "inputs")):
        out.insert(at + k, col, [None if g is None else (list(g[k]) if col == "inputs" else g[k]) for g in got])
    return out


def compare_streaming(reference: Any, candidate: Any, names: list[str], batches: Iterable[Mapping[str, np.ndarray]],
                      total: int | None, range_precision: str = "fp16", reporter: Any = None,
                      labels: tuple[str, str] = ("reference", "candidate"),
                      weights: Iterable[str] = ()) -> tuple[list[TensorStats], int]:
    """Accumulate TensorStats for `names` over batches; `reference`/`candidate` are SegmentedRunners; the tensors
    `weights` (computed from constants only) are labelled kind "weight"."""
    from ..errors import InputError
    weights = set(weights)
    stats = {n: TensorStats(n, range_precision, "weight" if n in weights else "activation") for n in names}
    scratch = Scratch()
    done = 0
    steps = len(reference.segments)
    for feeds in batches:
        if not isinstance(feeds, Mapping):
            raise InputError(f"batch {done} is a {type(feeds).__name__}, not a dict of input name -> array")
        cand_iter = candidate.run(feeds)
        for si, ref_vals in reference.run(feeds):
            cand_vals = _next_with(cand_iter, ref_vals)
            for name in list(ref_vals):
                if name in stats:
                    stats[name].update(ref_vals.pop(name), cand_vals.pop(name), scratch)
            del ref_vals, cand_vals
            if reporter is not None:
                reporter.update(done * steps + si + 1, total * steps if total else None,
                                f"batch {done + 1}, segment {si + 1}/{steps}")
        for _ in cand_iter:
            pass
        done += 1
    if done == 0:
        raise InputError("no batches: the data iterable yielded nothing; pass a non-empty iterable of dicts")
    return [stats[n] for n in names], done


def _next_with(cand_iter: Any, ref_vals: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Advance the candidate runner until it has produced every tensor in `ref_vals`."""
    got: dict[str, np.ndarray] = {}
    need = set(ref_vals)
    while not need <= set(got):
        step = next(cand_iter, None)
        if step is None:
            from ..errors import CompareError
            lacking = sorted(need - set(got))
            raise CompareError(f"the candidate produces no tensor {', '.join(map(repr, lacking[:5]))}"
                               f"{' ...' if len(lacking) > 5 else ''} that the reference has: compare engines "
                               f"built from the same model, or pass outputs=[...] naming tensors both have")
        got.update(step[1])
    return got


def marking_effect(marked: Any, plain: Any) -> dict[str, Any]:
    """Compare the executed (optimized) graphs of a marked engine and the same engine unmarked."""
    a, b = marked.layers(), plain.layers()
    ops_a, ops_b = a["op_type"].value_counts().to_dict(), b["op_type"].value_counts().to_dict()
    fused = sorted(op for op in set(ops_b) - set(ops_a))
    changed = len(a) != len(b) or ops_a != ops_b
    note = (f"marking outputs changed the executed graph: {len(a)} nodes marked vs {len(b)} unmarked"
            + (f"; fused ops lost: {', '.join(fused)}" if fused else "")
            + " (marked tensors block fusions, as TensorRT FAQ 9 warns; time the unmarked engine)"
            if changed else f"marking outputs left the executed graph unchanged ({len(a)} nodes)")
    return {"changed": changed, "marked_nodes": len(a), "unmarked_nodes": len(b), "marked_op_types": ops_a,
            "unmarked_op_types": ops_b, "fused_ops_lost": fused, "note": note}
