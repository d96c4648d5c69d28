"""A deserialised engine's own I/O and optimization profiles, checked against the metadata saved beside the plan.

The engine is the authority: names, modes, dtypes, formats and shapes come from `num_io_tensors`,
`get_tensor_name/mode/dtype/format/shape` and `is_shape_inference_io`; a metadata file that says otherwise belongs
to another plan and is refused. Profiles come from `get_tensor_profile_shape` per profile; `select_profile` picks
the first whose ranges hold every input shape, or says which input fits none and what each profile takes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import ml_dtypes
import numpy as np

from ...errors import InputError, LossyCastError, PlanMetadataError
from .builder import dtype_name, numpy_dtype

# I/O types trtlab moves as numpy arrays (bfloat16 and float8 through ml_dtypes); int4/fp4 pack two per byte
MOVABLE = ("float32", "float16", "bfloat16", "float8", "int8", "uint8", "int32", "int64", "bool")

Range = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True)
class IOTensor:
    """One I/O tensor as the engine declares it (shape with -1 for a dimension known only at run time)."""

    name: str
    is_input: bool
    dtype: str
    shape: tuple[int, ...]
    host: bool  # a shape tensor (is_shape_inference_io): TensorRT reads or writes it in host memory
    format: str

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype of the bytes TensorRT reads or writes (ml_dtypes for bfloat16 and float8)."""
        return numpy_dtype(self.dtype)

    @property
    def dynamic(self) -> bool:
        return any(d < 0 for d in self.shape)


def _enum_name(value: Any) -> str:
    return getattr(value, "name", str(value)).rsplit(".", 1)[-1]


def read_io(engine: Any, where: str) -> list[IOTensor]:
    """Every I/O tensor of the deserialised engine, in the engine's order; PlanMetadataError for I/O that trtlab
    cannot lay out as numpy arrays (a vectorized format, a packed type)."""
    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = _enum_name(engine.get_tensor_mode(name))
        t = IOTensor(name, mode == "INPUT", dtype_name(engine.get_tensor_dtype(name)),
                     tuple(int(d) for d in engine.get_tensor_shape(name)), bool(engine.is_shape_inference_io(name)),
                     _enum_name(engine.get_tensor_format(name)))
        if t.format != "LINEAR":
            raise PlanMetadataError(f"{where}: I/O tensor {name!r} has format {t.format}; trtlab passes I/O as "
                                    f"linear (row-major) arrays: rebuild without vectorized I/O formats")
        if t.dtype not in MOVABLE:
            raise PlanMetadataError(f"{where}: I/O tensor {name!r} is {t.dtype}, which numpy cannot hold; keep the "
                                    f"network's I/O in a wider type (quantize inside the network with Q/DQ)")
        out.append(t)
    return out


def check_metadata(io: Sequence[IOTensor], meta_io: Mapping[str, Any] | None, where: str) -> None:
    """PlanMetadataError naming the first tensor on which the metadata's io and the engine disagree."""
    if not meta_io:
        return
    fix = "the metadata file does not belong to this plan: save the engine again (engine.save) or rebuild it"
    engine = {t.name: t for t in io}
    listed = {}
    for kind, is_input in (("inputs", True), ("outputs", False)):
        for m in meta_io.get(kind, []):
            listed[m["name"]] = (is_input, m)
    for name in sorted(set(engine) | set(listed)):
        if name not in listed:
            raise PlanMetadataError(f"{where}: the engine has {'input' if engine[name].is_input else 'output'} "
                                    f"{name!r}, which its metadata does not list; {fix}")
        is_input, m = listed[name]
        kind = "input" if is_input else "output"
        if name not in engine:
            raise PlanMetadataError(f"{where}: the metadata lists {kind} {name!r}, which the engine does not have "
                                    f"(it has {sorted(engine)}); {fix}")
        t = engine[name]
        if t.is_input != is_input:
            raise PlanMetadataError(f"{where}: the metadata lists {name!r} as an {kind}, the engine has it as an "
                                    f"{'input' if t.is_input else 'output'}; {fix}")
        if m.get("dtype") != t.dtype:
            raise PlanMetadataError(f"{where}: {kind} {name!r} is {m.get('dtype')} in the metadata and {t.dtype} in "
                                    f"the engine; {fix}")
        shape = tuple(int(d) for d in m.get("shape", ()))
        if len(shape) != len(t.shape) or any(a != b and a >= 0 and b >= 0 for a, b in zip(shape, t.shape)):
            raise PlanMetadataError(f"{where}: {kind} {name!r} has shape {list(shape)} in the metadata and "
                                    f"{list(t.shape)} in the engine; {fix}")


def read_profiles(engine: Any, io: Sequence[IOTensor]) -> list[dict[str, Range]]:
    """(min, opt, max) of each dynamic device input, per optimization profile."""
    names = [t.name for t in io if t.is_input and t.dynamic and not t.host]
    count = int(getattr(engine, "num_optimization_profiles", 1) or 1)
    return [{n: tuple(tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(n, p))  # type: ignore[misc]
             for n in names} for p in range(count)]


def fits(shape: Sequence[int], rng: Range) -> bool:
    lo, _, hi = rng
    return len(shape) == len(lo) and all(l <= s <= h for s, l, h in zip(shape, lo, hi))


def select_profile(profiles: Sequence[Mapping[str, Range]], shapes: Mapping[str, Sequence[int]], where: str) -> int:
    """Index of the first profile whose ranges hold every input shape; InputError naming the inputs that fit no
    profile, their shapes and every profile's ranges otherwise."""
    for p, ranges in enumerate(profiles):
        if all(fits(shapes[n], r) for n, r in ranges.items() if n in shapes):
            return p
    bad = [n for n in profiles[0] if n in shapes and not any(fits(shapes[n], pr[n]) for pr in profiles)]
    names = bad or [n for n in profiles[0] if n in shapes]
    got = ", ".join(f"{n!r} has shape {list(shapes[n])}" for n in names)
    ranges = "; ".join(f"profile {p}: " + ", ".join(f"{n} {list(r[0])}..{list(r[2])}" for n, r in pr.items())
                       for p, pr in enumerate(profiles))
    what = "no optimization profile takes it" if bad else "no single optimization profile takes these shapes together"
    raise InputError(f"{where}: input {got}; {what} ({ranges}); rebuild with a wider batch=(min, opt, max) or "
                     f"shapes=")


def to_engine(arr: np.ndarray, t: IOTensor, where: str) -> np.ndarray:
    """A feed (float32 for bfloat16/float8 inputs, as trtlab.feeds takes them) as the contiguous bytes TensorRT
    reads for `t`: rounded to bfloat16 or float8 e4m3 through ml_dtypes, so a 2-byte tensor gets 2-byte values."""
    want = t.numpy
    if arr.dtype == want:
        return np.ascontiguousarray(arr)
    if t.dtype == "float8":
        limit = float(ml_dtypes.finfo(want).max)
        with np.errstate(invalid="ignore"):
            over = np.isfinite(arr) & (np.abs(arr) > limit)
        if over.any():
            raise LossyCastError(f"{where}: input {t.name!r} has {int(over.sum())} value(s) beyond float8 e4m3's "
                                 f"largest finite value {limit:g}, which would become NaN; scale the data")
    return np.ascontiguousarray(arr.astype(want))
