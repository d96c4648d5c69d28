"""Feed validation: the one check that input data matches what a model (or engine) takes.

Names must match, ranks and fixed dimensions must agree, and a dtype is converted only when the
conversion keeps the actual values: int64 ids that fit int32, float64 that stay finite in float32,
Python ints and floats. A conversion that would change values (wrap an integer around, turn a finite
float into inf, round an integer) is refused with the input's name and its value range.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .errors import InputError, LossyCastError, RunError
from .model import TensorInfo

# dtypes engines take in place of types numpy has no native form for
_FEED_DTYPES = {"bfloat16": "float32", "float8": "float32"}


def feed_dtype(dtype: str) -> np.dtype | None:
    """The numpy dtype a feed for a tensor of `dtype` (a TensorInfo dtype name) must have; None when any goes."""
    try:
        return np.dtype(_FEED_DTYPES.get(dtype, dtype))
    except TypeError:
        return None


def describe(info: TensorInfo) -> str:
    """'float32 [batch, 3, 224, 224]': dtype and shape, '?' for an unknown dimension."""
    if info.shape is None:
        return info.dtype
    return f"{info.dtype} [{', '.join('?' if d is None or (isinstance(d, int) and d < 0) else str(d) for d in info.shape)}]"


def _range(arr: np.ndarray) -> str:
    finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
    if not finite.size:
        return "no finite values"
    return f"values in [{finite.min().item()!r}, {finite.max().item()!r}]"


def cast_feed(arr: np.ndarray, want: np.dtype, name: str, where: str, expected: str | None = None) -> np.ndarray:
    """`arr` as `want` when that keeps every value; LossyCastError (or InputError) naming the input otherwise."""
    src = arr.dtype
    if src == want:
        return arr
    if np.can_cast(src, want, casting="safe"):
        return arr.astype(want)
    label = f"{where}: input {name!r}"
    fix = f"pass {want.name} data yourself (.astype(np.{want.name})) if that change is what you want"
    if src.kind in "iu" and want.kind in "iu":
        info = np.iinfo(want)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise LossyCastError(f"{label} is {src.name} with {_range(arr)}, outside {want.name}'s range "
                                 f"[{info.min}, {info.max}]: casting would wrap those values around; {fix}")
        return arr.astype(want)
    if src.kind in "iu" and want.kind == "f":
        out = arr.astype(want)
        with np.errstate(invalid="ignore", over="ignore"):
            exact = np.isfinite(out).all() and np.array_equal(out.astype(src), arr)
        if not exact:
            raise LossyCastError(f"{label} is {src.name} with {_range(arr)}, which {want.name} cannot hold exactly "
                                 f"(its integers are exact only up to 2**{np.finfo(want).nmant + 1}); {fix}")
        return out
    if src.kind == "f" and want.kind == "f":
        with np.errstate(over="ignore"):
            out = arr.astype(want)
        overflow = np.isfinite(arr) & ~np.isfinite(out)
        if overflow.any():
            raise LossyCastError(f"{label} is {src.name} with {_range(arr)}; {int(overflow.sum())} value(s) lie "
                                 f"beyond {want.name}'s largest finite value {float(np.finfo(want).max):g} and would "
                                 f"become inf; scale the data, or {fix}")
        return out
    raise InputError(f"{label} has dtype {src.name}, which cannot be cast safely to the model's {want.name}"
                     + (f"; expected {expected}, got {src.name} {list(arr.shape)}" if expected else ""))


def check_feeds(inputs: Sequence[TensorInfo], feeds: Any, where: str) -> dict[str, np.ndarray]:
    """Validate one feed dict against `inputs` and return contiguous arrays of the dtypes they take.

    `where` begins every message ("mlp onnxruntime fp32", "calibration batch 3"). Raises InputError
    (LossyCastError for a conversion that would change values) naming the input and the fix."""
    expected = {i.name: i for i in inputs}
    if not isinstance(feeds, Mapping):
        raise InputError(f"{where} is a {type(feeds).__name__}, expected a dict of input name -> numpy array "
                         f"(inputs: {list(expected)})")
    unknown = [k for k in feeds if k not in expected]
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        raise InputError(f"{where}: {names} {'is' if len(unknown) == 1 else 'are'} not an input of the model; its "
                         f"inputs are {list(expected)}. Rename the key or check the model.")
    out = {}
    for name, info in expected.items():
        if name not in feeds:
            raise InputError(f"{where}: input {name!r} is missing; expected {describe(info)}, got keys {list(feeds)}")
        arr = np.asarray(feeds[name])
        want = feed_dtype(info.dtype)
        if want is not None and arr.dtype != want:
            arr = cast_feed(arr, want, name, where, describe(info))
        if info.shape is not None:
            detail = None
            if arr.ndim != len(info.shape):
                detail = f"rank {len(info.shape)}"
            else:
                for axis, (d, got) in enumerate(zip(info.shape, arr.shape)):
                    if isinstance(d, int) and d > 0 and d != got:
                        detail = f"size {d} at axis {axis}"
                        break
            if detail:
                raise InputError(f"{where}: input {name!r} has shape {list(arr.shape)}, but the model expects "
                                 f"{describe(info)} ({detail}; '?' or named dimensions are free)")
        out[name] = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)  # (ascontiguousarray makes 0-d 1-d)
    return out


def summarize_feeds(feeds: Mapping[str, np.ndarray]) -> str:
    """"input float32 [4, 576], sr int64 [] = 16000": each feed's dtype and shape, and the values of small
    integer ones (what decides a branch or an index)."""
    parts = []
    for name, arr in feeds.items():
        arr = np.asarray(arr)
        text = f"{name} {arr.dtype.name} {list(arr.shape)}"
        if arr.dtype.kind in "iub" and arr.size:
            text += f" = {arr.reshape(-1)[0].item()!r}" if arr.size == 1 else f" ({_range(arr)})"
        parts.append(text)
    return ", ".join(parts)


def generated_feeds_failed(exc: InputError, feeds: Mapping[str, np.ndarray]) -> RunError:
    """The error for a run on inputs trtlab generated: says so, shows them, and points to data=/--data."""
    shown = summarize_feeds(feeds)
    shown = "" if shown in str(exc) else f" ({shown})"
    return RunError(f"{exc} -- these inputs were random ones trtlab generated{shown}, which "
                    f"this model may not accept (an integer input can select a branch or index a table); pass "
                    f"real inputs with data={{name: array}} (CLI: --data inputs.npz, arrays saved by input name)")


def is_generated(data: Any) -> bool:
    """True when `data` asks trtlab to make the inputs: None (one random batch) or an int N (N random batches)."""
    return data is None or (isinstance(data, int) and not isinstance(data, bool))


@contextmanager
def generated_inputs_named(data: Any, example: Callable[[], Mapping[str, np.ndarray]]) -> Iterator[None]:
    """Around a run on `data`: a RunError on inputs trtlab generated becomes generated_feeds_failed, showing
    `example()` (the first generated batch); a failure on the caller's own data passes unchanged."""
    try:
        yield
    except RunError as exc:
        if not is_generated(data):
            raise
        raise generated_feeds_failed(exc, example()) from None
