"""Clipping thresholds (amax) from an |x| histogram: one pure function per calibration method.

Every method reads the same equal-width histogram of |x| over [0, range] (2048 bins) and the largest |x| seen,
so one pass of the model over the data serves all of them and they can be compared side by side afterwards.

- minmax: the largest |x| seen (TensorRT's MinMaxCalibration).
- percentile: the given percentile of |x|, interpolated inside its bin.
- entropy: TensorRT's KL-divergence search (EntropyCalibration2, GTC 2017 "8-bit Inference with TensorRT"):
  2048 bins, 128 quantization levels, candidate thresholds from bin 128 to 2048, outliers folded into the last
  kept bin. `entropy_kl_curve` evaluates every candidate at once (see its docstring); it gives the same
  divergences as the one-candidate-at-a-time loop it replaced, to rounding.
- mse: the bin edge minimising the estimated quantization mean squared error (`quantization_mse`).
- auto: per tensor, whichever of minmax and percentile has the smallest estimated quantization MSE. Entropy is
  left out: with few calibration samples its thresholds clip far into the tails, and a tensor's own MSE does not
  see what that clipping does downstream (on the corpus, letting auto pick entropy for 3 of ppocr_cls's 97
  tensors raised the int8 output error from 0.08 to 0.50; docs/calibration.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import CalibrationError, ConfigError

NUM_BINS = 2048
NUM_QUANTIZED_BINS = 128  # int8's positive levels
START_BIN = 128
# Count moved onto empty bins before the KL divergence, as the open implementations of this
# algorithm do (MXNet, ONNX Runtime, TVM): without it a candidate whose last quantization
# level holds only folded-in outliers has an infinite divergence, and a few far outliers
# would force amax up to the outlier itself.
SMOOTHING_EPS = 1e-4
# The methods `auto` chooses between (see the module docstring for why not entropy).
AUTO_CANDIDATES = ("minmax", "percentile")


def percentile_from_histogram(counts: np.ndarray, hist_range: float, percentile: float) -> float:
    """The `percentile` of the values in an equal-width histogram over [0, hist_range]."""
    counts = np.asarray(counts, dtype=np.float64)
    cumulative = np.cumsum(counts)
    total = cumulative[-1]
    if total == 0:
        return 0.0
    target = total * percentile / 100.0
    index = int(np.searchsorted(cumulative, target, side="left"))
    index = min(index, counts.size - 1)
    below = cumulative[index - 1] if index > 0 else 0.0
    fraction = (target - below) / counts[index] if counts[index] else 1.0
    return (index + fraction) * hist_range / counts.size


def entropy_kl_curve(
    counts: np.ndarray,
    num_quantized_bins: int = NUM_QUANTIZED_BINS,
    start_bin: int = START_BIN,
    eps: float = SMOOTHING_EPS,
) -> tuple[np.ndarray, np.ndarray]:
    """(candidates, KL divergence of each): every i in [start_bin, len(counts)] at once.

    For each i: P is counts[:i] with the counts of bins i.. added to its last bin; Q merges counts[:i] into
    `num_quantized_bins` levels (bin b goes to level b * levels // i, i.e. level j holds bins
    ceil(j*i/levels) .. ceil((j+1)*i/levels) - 1), then spreads each level's count evenly over the bins of that
    level where P is nonzero. Both are smoothed (SMOOTHING_EPS moved onto every empty bin, taken evenly from the
    nonempty ones), normalised, and KL(P||Q) computed. NaN where the smoothing makes a value negative (as the
    loop's log would), inf where Q is empty.

    Computed without a loop over candidates: with T the total count, P's smoothed sum is T and Q's is
    counts[:i].sum(), so KL = (sum ps log ps - sum ps log qs) / T + log(sum q / T), where empty bins of P (also
    empty in Q) contribute eps log eps to both sums and cancel. Q is constant within a level, so the cross sum is
    one term per (candidate, level), read from prefix sums of counts and of nonzero bins. The self sum
    sum (c - a) log(c - a) over the nonempty bins, with a the smoothing taken from each nonempty bin, is the
    series c log c - a (log c + 1) + sum_k a^k / (k (k-1) c^(k-1)), each term a prefix sum over bins, summed until
    (a / min c)^k is below 1e-18 (a / c <= 0.2 for integer counts, so it converges fast); histograms where
    a / min c > 0.5 are evaluated bin by bin instead. Counts are histogram counts: a smoothing larger than a
    bin's count (possible only for counts below 0.21) makes that candidate NaN.
    """
    c = np.asarray(counts, dtype=np.float64)
    n = c.size
    total = float(c.sum())
    cand = np.arange(start_bin, n + 1)
    cum = np.concatenate([[0.0], np.cumsum(c)])                          # cum[k] = counts[:k].sum()
    full = c > 0
    nfull = np.concatenate([[0.0], np.cumsum(full, dtype=np.float64)])  # nonempty bins among counts[:k]
    outliers = total - cum[cand]
    last = c[cand - 1]
    p_last = last + outliers                                             # P's last bin
    last_full = p_last > 0
    nf_p = nfull[cand - 1] + last_full
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        a = eps * (cand - nf_p) / nf_p                                   # taken from each nonempty bin of P
        # level boundaries ceil(j * i / levels): exact in float64 for these small integers
        bounds = np.ceil(np.arange(num_quantized_bins + 1, dtype=np.float64)
                         * (cand[:, None] / num_quantized_bins)).astype(np.intp)
        at = np.take(cum, bounds)
        mass = at[:, 1:] - at[:, :-1]                                    # Q's count per level (counts, not P)
        at = np.take(nfull, bounds)
        used = at[:, 1:] - at[:, :-1]                                    # P's nonempty bins per level
        # the last level holds P's last bin, where the outliers were folded in
        m_last = mass[:, -1]
        u_last = used[:, -1] + last_full - (last > 0)
        edge = (m_last == 0) & last_full                                 # P > 0 but Q = 0 in that bin
        nf_q = nf_p - edge
        a_q = eps * (cand - nf_q) / nf_q
        mass, used = mass[:, :-1], used[:, :-1]
        q = mass / np.maximum(used, 1.0)
        q[mass == 0] = 1.0                                               # their weight below is 0
        cross = ((mass - a[:, None] * used) * np.log(q - a_q[:, None])).sum(axis=1)
        cross += np.where(m_last > 0, (m_last + outliers - a * u_last)
                          * np.log(m_last / np.maximum(u_last, 1.0) - a_q), 0.0)
        cross += np.where(edge, (p_last - a) * math.log(eps), 0.0)
        self_ = _shifted_xlogx_prefix(c, full, cand - 1, a)
        self_ += np.where(last_full, (p_last - a) * np.log(p_last - a), 0.0)
        q_sum = cum[cand]
        kl = (self_ - cross) / total + np.log(q_sum / total)
    kl[(q_sum <= 0) | (nf_q <= 0) | (nf_p <= 0)] = np.inf
    return cand, kl


def _shifted_xlogx_prefix(c: np.ndarray, full: np.ndarray, prefix: np.ndarray, a: np.ndarray) -> np.ndarray:
    """For each k: the sum over the nonempty bins of c[:prefix[k]] of (c - a[k]) log(c - a[k])."""
    def prefix_sum(values: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(values)])[prefix]

    cmin = float(c[full].min()) if full.any() else 1.0
    finite = a[np.isfinite(a)]
    ratio = float(finite.max()) / cmin if finite.size else 0.0
    if ratio > 0.5:  # the series converges slowly or not at all: bin by bin
        out = np.empty(prefix.size)
        for k, (m, shift) in enumerate(zip(prefix, a)):
            kept = c[:m][full[:m]] - shift
            out[k] = float(np.sum(kept * np.log(kept)))
        return out
    safe = np.where(full, c, 1.0)
    logc = np.log(safe)
    out = prefix_sum(np.where(full, c * logc, 0.0)) - a * prefix_sum(np.where(full, logc + 1.0, 0.0))
    inv = np.where(full, 1.0 / safe, 0.0)
    power, a_k, k = inv, a * a, 2
    while True:
        out = out + a_k / (k * (k - 1)) * prefix_sum(power)
        if ratio ** k < 1e-18 or ratio == 0.0:
            return out
        k += 1
        power = power * inv
        a_k = a_k * a


def entropy_threshold_bins(
    counts: np.ndarray,
    num_quantized_bins: int = NUM_QUANTIZED_BINS,
    start_bin: int = START_BIN,
) -> int:
    """How many leading bins to keep: the candidate i in [start_bin, len(counts)] minimising KL (entropy_kl_curve).
    Ties keep the smallest i; when no candidate has a finite divergence, every bin is kept."""
    counts = np.asarray(counts, dtype=np.float64)
    num_bins = counts.size
    if num_bins < start_bin or start_bin < num_quantized_bins:
        raise CalibrationError(
            f"entropy calibration needs at least {start_bin} bins and start_bin >= "
            f"{num_quantized_bins}; got {num_bins} bins and start_bin={start_bin}"
        )
    if counts.sum() == 0:
        return num_bins
    cand, kl = entropy_kl_curve(counts, num_quantized_bins, start_bin)
    kl = np.where(np.isnan(kl), np.inf, kl)
    best = int(np.argmin(kl))
    return int(cand[best]) if np.isfinite(kl[best]) else num_bins


def quantization_mse(counts: np.ndarray, hist_range: float, amax: np.ndarray | float, qmax: float = 127.0) -> np.ndarray:
    """Estimated mean squared error of quantizing the histogram's values with each clipping threshold in `amax`.

    Each bin's values are taken at the bin centre x: clipped values (x > amax) cost (x - amax)^2; kept values
    cost the rounding error of a uniform grid of step s = amax / qmax, s^2 / 12, or x^2 when x is small enough
    to round to zero with less error (min(x^2, s^2 / 12)). The uniform step models int8; for fp8 it is the
    coarsest step, so the estimate is pessimistic there.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    amax = np.atleast_1d(np.asarray(amax, dtype=np.float64))
    if total == 0 or hist_range <= 0:
        return np.zeros(amax.shape)
    centres = (np.arange(counts.size) + 0.5) * (hist_range / counts.size)
    n0 = np.concatenate([[0.0], np.cumsum(counts)])                    # prefix sums of n, n x, n x^2
    n1 = np.concatenate([[0.0], np.cumsum(counts * centres)])
    n2 = np.concatenate([[0.0], np.cumsum(counts * centres ** 2)])
    step2 = (amax / qmax) ** 2 / 12.0
    kept = np.searchsorted(centres, amax, side="right")                # bins [0, kept) are not clipped
    small = np.minimum(np.searchsorted(centres, np.sqrt(step2), side="right"), kept)  # x^2 < s^2 / 12
    clip = (n2[-1] - n2[kept]) - 2 * amax * (n1[-1] - n1[kept]) + amax ** 2 * (n0[-1] - n0[kept])
    rounding = n2[small] + (n0[kept] - n0[small]) * step2
    return np.maximum(clip, 0.0) / total + rounding / total


def mse_amax(counts: np.ndarray, hist_range: float, qmax: float = 127.0) -> float:
    """The bin edge (1 .. all bins) with the smallest quantization_mse; ties keep the smallest."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.sum() == 0 or hist_range <= 0:
        return 0.0
    edges = np.arange(1, counts.size + 1) * (hist_range / counts.size)
    return float(edges[int(np.argmin(quantization_mse(counts, hist_range, edges, qmax)))])


# TensorRT cache header per method. TensorRT has no percentile, mse or auto calibrator; its IInt8LegacyCalibrator
# takes ranges chosen elsewhere (its own picks a quantile of the histogram), so tables of those methods carry the
# LegacyCalibration header; TensorRT accepts a cache only from a calibrator of the same algorithm type, so feed
# such a cache through an IInt8LegacyCalibrator.
ALGORITHMS = {
    "entropy": "EntropyCalibration2",
    "minmax": "MinMaxCalibration",
    "percentile": "LegacyCalibration",
    "mse": "LegacyCalibration",
    "auto": "LegacyCalibration",
}
METHODS = tuple(ALGORITHMS)


@dataclass(frozen=True, eq=False)
class TensorHistogram:
    """One tensor's calibration statistics: the |x| histogram (`counts` over [0, range]) and the largest |x|."""

    counts: np.ndarray
    range: float
    max: float

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @property
    def width(self) -> float:
        return self.range / self.counts.size

    def amax(self, method: str, percentile: float = 99.99, qmax: float = 127.0) -> float:
        """The clipping threshold `method` picks, capped at the largest |x| seen."""
        return self.choose(method, percentile, qmax)[0]

    def choose(self, method: str, percentile: float = 99.99, qmax: float = 127.0) -> tuple[float, str]:
        """(amax, the method that gave it): `auto` names the method it chose, the others themselves."""
        if method not in ALGORITHMS:
            raise ConfigError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
        if self.range == 0.0 or self.max == 0.0:
            return 0.0, method if method != "auto" else "minmax"
        if method == "auto":
            options = {m: self.amax(m, percentile, qmax) for m in AUTO_CANDIDATES}
            errors = quantization_mse(self.counts, self.range, np.array(list(options.values())), qmax)
            best = list(options)[int(np.argmin(errors))]
            return options[best], best
        if method == "minmax":
            value = self.max
        elif method == "percentile":
            value = percentile_from_histogram(self.counts, self.range, percentile)
        elif method == "entropy":
            value = entropy_threshold_bins(self.counts) * self.width
        else:
            value = mse_amax(self.counts, self.range, qmax)
        return min(value, self.max), method
