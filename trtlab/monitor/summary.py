"""Samples to a pandas DataFrame, and the utilization summary attached to benchmark results and sweep points."""
from __future__ import annotations

import datetime as _dt
import math
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from . import fields as F

if TYPE_CHECKING:
    import pandas as pd


def samples_to_frame(samples: Sequence[Mapping[str, Any]], columns: Sequence[str] = ()) -> "pd.DataFrame":
    """One row per sample: time_s, perf_counter, then `columns` (timestamp as local datetime), then any others."""
    import pandas as pd

    order = [F.TIME_S, F.PERF_COUNTER, *[c for c in columns if c not in (F.TIME_S, F.PERF_COUNTER)]]
    extra = [k for s in samples[:1] for k in s if k not in order]
    frame = pd.DataFrame.from_records(list(samples), columns=order + extra)
    if F.TIMESTAMP in frame:
        frame[F.TIMESTAMP] = pd.to_datetime(
            [_dt.datetime.fromtimestamp(t) if t is not None else None for t in frame[F.TIMESTAMP]])
    return frame


def _numeric(frame: "pd.DataFrame", column: str) -> "pd.Series | None":
    import pandas as pd

    return pd.to_numeric(frame[column], errors="coerce") if column in frame else None


def _stat(series: "pd.Series | None", how: str) -> float:
    if series is None:
        return math.nan
    value = getattr(series, how)()  # pandas skips NaN; an empty or all-NaN series gives NaN
    return float(value) if value == value else math.nan


def summarize(frame: "pd.DataFrame | Iterable[Mapping[str, Any]]") -> dict[str, Any]:
    """Mean/peak utilization (GPU, else CPU), peak memory used [MiB], and mean power [W] / SM clock [MHz] on a GPU.

    Keys: device ("gpu" or "cpu"), samples, duration_s, util_mean_pct, util_peak_pct,
    memory_used_peak_mib, and for a GPU power_mean_w, sm_clock_mean_mhz. Missing values are NaN.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        frame = samples_to_frame(list(frame))
    gpu = F.GPU_UTIL in frame
    util = _numeric(frame, F.GPU_UTIL if gpu else F.CPU_UTIL)
    time_s = _numeric(frame, F.TIME_S)
    out: dict[str, Any] = {
        "device": "gpu" if gpu else "cpu",
        "samples": int(len(frame)),
        "duration_s": _stat(time_s, "max") - _stat(time_s, "min") if len(frame) else math.nan,
        "util_mean_pct": _stat(util, "mean"),
        "util_peak_pct": _stat(util, "max"),
        "memory_used_peak_mib": _stat(_numeric(frame, F.GPU_MEM_USED if gpu else F.MEM_USED), "max"),
    }
    if gpu:
        out["power_mean_w"] = _stat(_numeric(frame, F.POWER_DRAW), "mean")
        out["sm_clock_mean_mhz"] = _stat(_numeric(frame, F.CLOCK_SM), "mean")
    return out
