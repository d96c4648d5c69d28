"""Whether a calibration cache fits a model, and whether the model changed since the cache was written.

TensorRT 11 and TensorRT-RTX have no implicit INT8 calibration: a cache is the input to Q/DQ insertion, and the
old "Could not find scales for tensor X" (TensorRT FAQ 12) now shows as tensors the Q/DQ inserter
(`precision.graph.quantized_uses`, the one rule for which tensors get quantized) needs that the cache lacks.

Provenance is kept in a sidecar file beside the cache (``<cache>.trtlab.json``), never in the cache: TensorRT's
cache reader is closed source and the one open reader of the format, ONNX Runtime's TensorRT execution provider
(``ReadDynamicRange``), takes every line after the header as a ``name: hex`` entry, so a comment line would become
a tensor. The cache itself stays byte for byte what TensorRT's writeCalibrationCache writes.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from ...errors import CalibrationCacheError
from ..graph import all_tensor_names, as_proto, infer_types, quantized_uses

SIDECAR_SUFFIX = ".trtlab.json"
SIDECAR_KIND = "trtlab calibration cache provenance"


def sidecar_path(cache: str | os.PathLike) -> Path:
    """Where the provenance of the cache at `cache` is kept."""
    return Path(str(cache) + SIDECAR_SUFFIX)


def tensors_fingerprint(names: list[str]) -> str:
    """sha256 (16 hex digits) of the ordered tensor names the Q/DQ inserter quantizes."""
    return hashlib.sha256("\0".join(names).encode()).hexdigest()[:16]


def model_hash(model: Any) -> str:
    """The model identity trtlab keys engines by (trtlab.model.Model.hash) for a Model, ModelProto or path."""
    from ...model import Model
    if isinstance(model, Model):
        return model.hash
    return Model(as_proto(model)).hash


def provenance(model: Any, header: str, library: str, skip_nodes: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the sidecar records: the model's name and hash, its quantized tensors' fingerprint, the header and
    the library the header's version came from."""
    proto = as_proto(model)
    names = list(quantized_uses(infer_types(proto), skip_nodes))
    return {"kind": SIDECAR_KIND, "model": str(getattr(model, "name", "") or proto.graph.name or "model"),
            "model_hash": model_hash(model), "tensors": len(names), "tensors_fingerprint": tensors_fingerprint(names),
            "header": header, "library": library}


def read_sidecar(cache: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance written beside `cache`, None when there is none; CalibrationCacheError when unreadable."""
    p = sidecar_path(cache)
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationCacheError(f"{p}: the cache's trtlab provenance is unreadable ({exc}); delete it (the "
                                    f"cache itself is unaffected) or save the table again") from None
    keys = ("model", "model_hash", "tensors_fingerprint", "header")
    if not isinstance(data, dict) or data.get("kind") != SIDECAR_KIND or \
            not all(isinstance(data.get(k), str) for k in keys):
        raise CalibrationCacheError(f"{p}: not a trtlab calibration provenance file (expected kind "
                                    f"{SIDECAR_KIND!r} with {', '.join(keys)}); delete it or save the table again")
    return data


@dataclass(frozen=True)
class CacheValidation:
    """A cache against a model: tensors the Q/DQ inserter needs that the cache lacks (`missing`, with the nodes
    that consume each and the cache entry each most resembles), entries the model does not have (`extra`), and
    `changed`: why the model is not the one the cache was written for (from its sidecar), else None."""

    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    header: str = ""
    needed: list[str] = field(default_factory=list)
    uses: dict[str, list[str]] = field(default_factory=dict)  # missing tensor -> ["conv0 (Conv) input 0", ...]
    close: dict[str, str] = field(default_factory=dict)  # missing tensor -> the extra entry most like it
    changed: str | None = None
    written_for: str | None = None  # the model the sidecar names

    @property
    def ok(self) -> bool:
        """True when every tensor the model's quantized ops need has a scale."""
        return not self.missing

    @property
    def stale(self) -> bool:
        """True when the sidecar says the cache was written for another version of this model."""
        return self.changed is not None

    def to_frame(self) -> Any:
        """One row per tensor the model quantizes or the cache holds: tensor, needed, in_cache, status
        ('ok', 'missing', 'extra'), consumers, close_match."""
        import pandas as pd
        missing = set(self.missing)
        rows = [{"tensor": t, "needed": True, "in_cache": t not in missing,
                 "status": "missing" if t in missing else "ok", "consumers": self.uses.get(t, []),
                 "close_match": self.close.get(t)} for t in self.needed]
        rows += [{"tensor": t, "needed": False, "in_cache": True, "status": "extra", "consumers": [],
                  "close_match": None} for t in self.extra]
        return pd.DataFrame(rows, columns=["tensor", "needed", "in_cache", "status", "consumers", "close_match"])

    def explain(self) -> str:
        """What the differences mean for a TensorRT build, and what to do."""
        parts = []
        if self.changed:
            parts.append(f"The model changed since the cache was written: {self.changed}. The scales describe "
                         f"the activations of the model it was written for; calibrate again "
                         f"(Session.calibrate(data)) and save the new table.")
        if not self.missing and not self.extra:
            parts.append(f"The cache ({self.header}) has a scale for every tensor the model quantizes.")
            return "\n".join(parts)
        if self.missing:
            first = self.missing[0]
            where = "; ".join(f"{t!r} ({', '.join(self.uses.get(t, [])[:2])})" for t in self.missing[:5])
            more = f" and {len(self.missing) - 5} more" if len(self.missing) > 5 else ""
            renamed = [f"{t!r} ~ {self.close[t]!r}" for t in self.missing if t in self.close][:3]
            parts.append(
                f"{len(self.missing)} of the {len(self.needed)} tensor(s) the Q/DQ inserter quantizes have no "
                f"scale in the cache: {where}{more}. TensorRT would report \"Could not find scales for tensor "
                f"{first}\": the cache came from another network, TensorRT version or platform (TensorRT FAQ 3 "
                f"and 12): a different export of the model (its tensor names differ"
                + (f"; the cache holds look-alikes: {', '.join(renamed)}" if renamed else "")
                + "), a since-edited model, or TensorRT's own implicit-INT8 calibration, whose cache names the "
                "tensors of TensorRT's fused network. So calibrate again (delete the cache so TensorRT's "
                "calibrator runs, or trtlab's calibrate(model, data) / Session.calibrate(data)), or keep those "
                "consumers unquantized with fp32_layers=[...].")
        if self.extra:
            entries = "entry names a tensor" if len(self.extra) == 1 else "entries name tensors"
            parts.append(
                f"{len(self.extra)} cache {entries} this model does not have: {_short_list(self.extra)}. TensorRT "
                "ignores them, but they show the cache was written for a different or since-edited network "
                "(or names TensorRT-internal tensors such as '(Unnamed Layer* N)').")
        if self.ok:
            parts.append("Every tensor the model quantizes has a scale, so the cache is usable.")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.explain()

    def __repr__(self) -> str:
        return (f"CacheValidation(ok={self.ok}, missing={self.missing!r}, extra={self.extra!r}"
                f"{', stale' if self.stale else ''})")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.explain())


def coverage(table: Mapping[str, float], model: onnx.ModelProto | str | os.PathLike | Any,
             skip_nodes: tuple[str, ...] = (), residual_add: bool = True,
             written_for: Mapping[str, Any] | None = None) -> CacheValidation:
    """`table` (a CalibrationTable or {tensor: amax}) against `model`: the tensors quantize() would put Q/DQ on
    (the same rule, skip_nodes being the fp32 pins) that have no scale, and, given the provenance the cache was
    saved with (`written_for`, read from its sidecar), whether the model changed since."""
    proto = as_proto(model)
    inferred = infer_types(proto)
    uses = quantized_uses(inferred, skip_nodes, residual_add)
    needed = list(uses)
    known = all_tensor_names(inferred)
    missing = [t for t in needed if t not in table]
    extra = [t for t in table if t not in known]
    consumers = {t: [f"{n.name or n.op_type} ({n.op_type}) input {i}" for n, i in uses[t]] for t in missing}
    close = {}
    for t in missing:
        match = difflib.get_close_matches(t, extra, n=1, cutoff=0.6)
        if match:
            close[t] = match[0]
    changed = None
    if written_for is not None:
        changed = _changed(written_for, model, needed)
    return CacheValidation(missing=missing, extra=extra, header=str(getattr(table, "header", "")), needed=needed,
                           uses=consumers, close=close, changed=changed,
                           written_for=None if written_for is None else str(written_for.get("model")))


def _changed(written_for: Mapping[str, Any], model: Any, needed: list[str]) -> str | None:
    name = written_for.get("model")
    if written_for.get("tensors_fingerprint") != tensors_fingerprint(needed):
        return (f"it was written for {name!r} with {written_for.get('tensors')} quantized tensors "
                f"(fingerprint {written_for.get('tensors_fingerprint')}); this model quantizes {len(needed)} "
                f"tensors (fingerprint {tensors_fingerprint(needed)})")
    now = model_hash(model)
    if written_for.get("model_hash") != now:
        return (f"it was written for {name!r} (model hash {written_for.get('model_hash')}); this model has the "
                f"same quantized tensors but hash {now} (weights, attributes or other nodes differ)")
    return None


def _short_list(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


__all__ = ["CacheValidation", "SIDECAR_SUFFIX", "coverage", "model_hash", "provenance", "read_sidecar",
           "sidecar_path", "tensors_fingerprint"]
