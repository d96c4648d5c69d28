"""The knee of a throughput-vs-batch curve: where larger batches stop paying (TensorRT FAQ 6)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ConfigError

KNEE_FRACTION = 0.9


@dataclass(frozen=True)
class Knee:
    """Where a throughput-vs-batch curve stops growing.

    Definition: the smallest batch whose throughput reaches `fraction` (0.9) of the curve's best. When that is
    the largest batch swept, throughput was still growing (`saturated` False): the device was not full yet.
    `last_gain` is the relative gain of the last step to the largest batch (0.05 = +5%).
    """

    batch: int | None
    throughput: float
    best_batch: int | None
    best_throughput: float
    max_batch: int | None
    saturated: bool
    last_gain: float
    fraction: float = KNEE_FRACTION


def find_knee(batch: Sequence[float], throughput: Sequence[float], fraction: float = KNEE_FRACTION) -> Knee:
    """The knee of one curve (NaN points ignored); see Knee for the definition."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"knee fraction must be in (0, 1], got {fraction}")
    b = np.asarray(batch, dtype=float)
    t = np.asarray(throughput, dtype=float)
    ok = ~np.isnan(t) & ~np.isnan(b)
    b, t = b[ok], t[ok]
    if not b.size:
        return Knee(None, math.nan, None, math.nan, None, False, math.nan, fraction)
    order = np.argsort(b, kind="stable")
    b, t = b[order], t[order]
    ib = int(np.argmax(t))
    k = int(np.argmax(t >= fraction * t[ib]))
    gain = float(t[-1] / t[-2] - 1) if b.size > 1 and t[-2] > 0 else math.nan
    saturated = bool(b.size > 1 and k < b.size - 1)
    return Knee(int(b[k]), float(t[k]), int(b[ib]), float(t[ib]), int(b[-1]), saturated, gain, fraction)


def knee_sentence(knee: Knee, label: str = "", util_pct: float = math.nan, util_source: str | None = None) -> str:
    """The knee in words, citing TensorRT FAQ 6 (batching) and 4 (utilization)."""
    who = f"{label}: " if label else ""
    if knee.batch is None:
        return f"{who}no successful points, so no knee"
    if math.isnan(knee.last_gain):
        return f"{who}only batch {knee.batch} was swept: sweep several batch sizes to find the knee"
    if not knee.saturated:
        s = (f"{who}throughput is still growing at the largest batch {knee.max_batch} "
             f"({knee.throughput:,.0f} samples/s, +{knee.last_gain * 100:.0f}% over the previous batch): the device "
             f"is not saturated yet, so larger batches would still pay (TensorRT FAQ 6)")
    else:
        s = (f"{who}throughput stops growing after batch {knee.batch} ({knee.throughput:,.0f} samples/s, "
             f"{knee.throughput / knee.best_throughput * 100:.0f}% of the best {knee.best_throughput:,.0f} at batch "
             f"{knee.best_batch}): the device is saturated, so larger batches add latency, not throughput "
             f"(TensorRT FAQ 6)")
    if not math.isnan(util_pct):
        what = "GPU" if util_source == "gpu" else "CPU"
        s += f"; mean {what} utilization at the knee {util_pct:.0f}%"
        if util_source == "gpu" and util_pct < 60:
            s += " — low: the GPU is starved by small batches or host-side work (TensorRT FAQ 4)"
    return s
