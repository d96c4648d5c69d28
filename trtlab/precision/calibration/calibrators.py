"""Streaming activation calibrators: MinMax, Entropy (TensorRT's KL method) and Percentile.

Each calibrator receives one array at a time per tensor (``collect(name, array)``, called
once per batch) and keeps only a running maximum or a fixed-size histogram, so memory does
not grow with the number of batches. ``compute_amax()`` returns the clipping threshold
(amax) per tensor.

Why not onnxruntime.quantization.calibrate's calibraters: their ``collect_data`` keeps every
batch's outputs in memory until the data reader is exhausted, and writes an augmented model
file to disk; their entropy method bins signed values symmetrically and merges bins by an
integer stride, not TensorRT's 2048-bin |x| histogram searched from bin 128; their histogram
grows by appending bins of the old width, so one large outlier can create millions of bins;
and they print on every collect. The facts they rest on (GTC 2017 "8-bit inference with
TensorRT") are followed here.
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import CalibrationError, ConfigError
from .thresholds import ALGORITHMS, METHODS, NUM_BINS, NUM_QUANTIZED_BINS, START_BIN, TensorHistogram, entropy_threshold_bins

def _abs_values(name: str, array: np.ndarray) -> tuple[np.ndarray, float]:
    """Flattened |array| and its maximum; refuse NaN/Inf, which no scale can represent."""
    values = np.abs(np.asarray(array).ravel())
    if values.size == 0:
        return values, 0.0
    amax = float(values.max())
    if not math.isfinite(amax):
        raise CalibrationError(
            f"tensor {name!r} has NaN or Inf values, so no INT8/FP8 scale can represent it; "
            "fix the model or the calibration data (check preprocessing) and calibrate again"
        )
    return values, amax


class MinMaxCalibrator:
    """amax = the largest |x| seen over all batches (TensorRT's MinMaxCalibration)."""

    algorithm = "MinMaxCalibration"

    def __init__(self) -> None:
        self._amax: dict[str, float] = {}

    def collect(self, name: str, array: np.ndarray) -> None:
        """Fold one batch of tensor `name` into the running maximum."""
        _, amax = _abs_values(name, array)
        self._amax[name] = max(self._amax.get(name, 0.0), amax)

    def amax(self, name: str) -> float:
        """The largest |x| seen for tensor `name`."""
        return self._amax[name]

    def compute_amax(self) -> dict[str, float]:
        """The running maximum |x| per tensor, in first-collected order."""
        return dict(self._amax)


class _Histogram:
    """A histogram of |x| over [0, range] with a fixed number of bins, widened by merging bins."""

    def __init__(self, num_bins: int) -> None:
        self.counts = np.zeros(num_bins, dtype=np.int64)
        self.range = 0.0  # 0 until a nonzero value arrives
        self.max = 0.0
        self._pending_zeros = 0  # zeros seen before the range is known

    def add(self, values: np.ndarray, amax: float) -> None:
        self.max = max(self.max, amax)
        if self.range == 0.0:
            if amax == 0.0:
                self._pending_zeros += values.size
                return
            self.range = amax
            self.counts[0] += self._pending_zeros
            self._pending_zeros = 0
        elif amax > self.range:
            self._widen(amax)
        # np.histogram's last bin is closed, so values equal to the range land in it.
        self.counts += np.histogram(values, bins=self.counts.size, range=(0.0, self.range))[0]

    def _widen(self, amax: float) -> None:
        # Grow the range by an integer factor k so each new bin is exactly k old bins:
        # re-binning loses resolution but never moves a count across a value boundary, and
        # the bin count (hence the entropy search) stays fixed however large an outlier is.
        k = max(2, math.ceil(amax / self.range))
        while k * self.range < amax:
            k += 1
        n = self.counts.size
        merged = np.bincount(np.arange(n) // k, weights=self.counts, minlength=n)
        self.counts = np.rint(merged[:n]).astype(np.int64)
        self.range *= k

    @property
    def width(self) -> float:
        return self.range / self.counts.size

    def edges(self) -> np.ndarray:
        return np.linspace(0.0, self.range, self.counts.size + 1)


class HistogramCalibrator:
    """One fixed-size |x| histogram per tensor; amax by `method` (see thresholds), read from the histogram.

    Every method reads the same histograms, so `snapshot(name).amax(other_method)` compares methods without
    collecting again.
    """

    def __init__(self, num_bins: int = NUM_BINS, method: str = "entropy", percentile: float = 99.99) -> None:
        if method not in ALGORITHMS:
            raise ConfigError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
        if not 0.0 < percentile <= 100.0:
            raise ConfigError(f"percentile must be in (0, 100], got {percentile}")
        self.num_bins = num_bins
        self.method = method
        self.percentile = percentile
        self._hists: dict[str, _Histogram] = {}

    @property
    def algorithm(self) -> str:
        """The TensorRT cache header's algorithm name for this method."""
        return ALGORITHMS[self.method]

    def collect(self, name: str, array: np.ndarray) -> None:
        """Add one batch of tensor `name` to its histogram (widening the range if needed)."""
        values, amax = _abs_values(name, array)
        hist = self._hists.get(name)
        if hist is None:
            hist = self._hists[name] = _Histogram(self.num_bins)
        hist.add(values, amax)

    def histogram(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(counts, edges) of tensor `name`'s |x| histogram; edges has one more entry."""
        hist = self._hists[name]
        counts = hist.counts.copy()
        counts[0] += hist._pending_zeros
        return counts, hist.edges()

    def snapshot(self, name: str) -> TensorHistogram:
        """Tensor `name`'s statistics as they stand (a copy)."""
        hist = self._hists[name]
        return TensorHistogram(self.histogram(name)[0], hist.range, hist.max)

    def observed_max(self, name: str) -> float:
        """The largest |x| seen for tensor `name`."""
        return self._hists[name].max

    def amax(self, name: str) -> float:
        """The threshold for tensor `name`, capped at the largest |x| seen."""
        return self.snapshot(name).amax(self.method, self.percentile)

    def compute_amax(self) -> dict[str, float]:
        """amax per tensor, in first-collected order."""
        return {name: self.amax(name) for name in self._hists}


class EntropyCalibrator(HistogramCalibrator):
    """amax minimising KL(P||Q) between the |x| histogram and its 128-level quantization.

    This is TensorRT's entropy calibration (EntropyCalibration2) as described in NVIDIA's GTC
    2017 talk "8-bit Inference with TensorRT": 2048 bins, candidate thresholds from bin 128
    to 2048, outliers folded into the last kept bin. amax is the right edge of the last kept
    bin, capped at the largest |x| seen.
    """

    def __init__(
        self,
        num_bins: int = NUM_BINS,
        num_quantized_bins: int = NUM_QUANTIZED_BINS,
        start_bin: int = START_BIN,
    ) -> None:
        super().__init__(num_bins, "entropy")
        self.num_quantized_bins = num_quantized_bins
        self.start_bin = start_bin

    def amax(self, name: str) -> float:
        hist = self._hists[name]
        if hist.range == 0.0:
            return 0.0
        kept = entropy_threshold_bins(hist.counts, self.num_quantized_bins, self.start_bin)
        return min(kept * hist.width, hist.max)


class PercentileCalibrator(HistogramCalibrator):
    """amax = the given percentile of |x| (default 99.99), read from the histogram.

    The value is interpolated linearly inside the bin where the cumulative count crosses the
    percentile, so it is within one bin width (range / 2048) of the exact percentile.
    """

    def __init__(self, percentile: float = 99.99, num_bins: int = NUM_BINS) -> None:
        super().__init__(num_bins, "percentile", percentile)
