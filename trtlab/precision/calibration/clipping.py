"""What a calibration clips: per tensor and per method, read from the histograms collected once by calibrate().

For each tensor and method: the chosen amax, the largest |x| seen, the share of calibration values clipped
(|x| > amax), the share of the L2 energy (sum of x^2) those values carry, the relative RMS error the clipping
alone causes (clip_rel_rms), the quantization step, and the
estimated relative RMS error of quantizing the tensor with that amax (thresholds.quantization_mse over the
tensor's mean square). All are estimated from the 2048-bin |x| histogram: values inside the bin holding amax are
taken as spread evenly over the bin, energies at bin centres, so figures are within one bin width (absmax / 2048)
of the exact ones.

Warnings (CalibrationWarning, on the table as `warnings` and through the session log):
- too few samples for the histogram methods. TensorRT's developer guide says about 500 images suffice to
  calibrate ImageNet classifiers; the histogram methods read the tail of each distribution (entropy weighs its
  last bins, percentile 99.99 is the 1-in-10,000 value), and a tail seen in a handful of inputs is the tail of
  those inputs, not of the data. trtlab warns below MIN_SAMPLES = 500 samples (the batch dimension summed over
  batches), the guide's figure: a lower bar for other tasks would be a guess.
- heavy clipping: a tensor whose clipping alone gives it a relative RMS error above HEAVY_CLIP_RMS = 0.05
  (clip_rel_rms: sqrt(sum over |x| > amax of (|x| - amax)^2 / sum x^2)). That is more than the int8 rounding
  error of a tensor quantized over its whole range when its absmax is 20x its RMS (20 / 127 / sqrt(12) = 0.045),
  so the clipping, not the rounding, dominates. On the corpus (docs/calibration.md) it flags 5 to 26 tensors of
  each model (of 7 to 97) under entropy and at most one under auto. The share of L2 energy in clipped values
  (clipped_energy) is reported too, but it counts the part of each clipped value that is kept, so a percentile
  threshold just below a lone maximum looks worse by it than it is.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import CalibrationWarning, ConfigError
from .thresholds import METHODS, TensorHistogram, quantization_mse

MIN_SAMPLES = 500
HEAVY_CLIP_RMS = 0.05
# The methods compared by default in a clipping report.
REPORT_METHODS = ("minmax", "percentile", "entropy", "mse", "auto")


@dataclass(frozen=True, eq=False)
class CalibrationStatistics:
    """What calibrate() collected: each tensor's |x| histogram, how many batches and samples it saw."""

    histograms: Mapping[str, TensorHistogram]
    batches: int
    samples: int
    percentile: float = 99.99
    qmax: float = 127.0

    def choose(self, method: str, percentile: float | None = None) -> tuple[dict[str, float], dict[str, str]]:
        """({tensor: amax}, {tensor: method used}) for `method` (`auto` names its choice per tensor)."""
        if method not in METHODS:
            raise ConfigError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
        pct = self.percentile if percentile is None else percentile
        amax, used = {}, {}
        for name, hist in self.histograms.items():
            amax[name], used[name] = hist.choose(method, pct, self.qmax)
        return amax, used


def clipping_row(hist: TensorHistogram, amax: float, qmax: float = 127.0) -> dict[str, float]:
    """clipped_fraction, clipped_energy, clip_rel_rms, step and est_rel_rms of quantizing `hist`'s values with
    `amax`."""
    counts = hist.counts.astype(np.float64)
    total = counts.sum()
    step = amax / qmax
    if total == 0 or hist.range == 0.0:
        return {"clipped_fraction": 0.0, "clipped_energy": 0.0, "clip_rel_rms": 0.0, "step": step, "est_rel_rms": 0.0}
    width = hist.width
    centres = (np.arange(counts.size) + 0.5) * width
    # share of each bin above amax, values spread evenly over the bin
    above = np.clip((np.arange(1, counts.size + 1) * width - amax) / width, 0.0, 1.0)
    if amax >= hist.max:
        above[:] = 0.0
    energy = counts * centres ** 2
    total_energy = energy.sum()
    mse = float(quantization_mse(counts, hist.range, amax, qmax)[0])
    mean_square = total_energy / total
    lost = np.where(centres > amax, (centres - amax) ** 2, 0.0) @ counts if amax < hist.max else 0.0
    return {
        "clipped_fraction": float(above @ counts / total),
        "clipped_energy": float(above @ energy / total_energy) if total_energy else 0.0,
        "clip_rel_rms": float(np.sqrt(lost / total_energy)) if total_energy else 0.0,
        "step": step,
        "est_rel_rms": float(np.sqrt(mse / mean_square)) if mean_square else 0.0,
    }


def clipping_frame(stats: CalibrationStatistics, table_amax: Mapping[str, float],
                   methods: Iterable[str] = REPORT_METHODS) -> Any:
    """One row per (tensor, method): amax, absmax, clipped_fraction, clipped_energy, clip_rel_rms, step, est_rel_rms, in_table
    (True where that amax is the one the table holds), and for `auto` the method it picked (`picks`)."""
    import pandas as pd

    methods = list(methods)
    rows = []
    for method in methods:
        amax, used = stats.choose(method)
        for name, hist in stats.histograms.items():
            row = {"tensor": name, "method": method, "amax": amax[name], "absmax": hist.max}
            row.update(clipping_row(hist, amax[name], stats.qmax))
            row["in_table"] = name in table_amax and np.float32(table_amax[name]) == np.float32(amax[name])
            row["picks"] = used[name]
            rows.append(row)
    columns = ["tensor", "method", "amax", "absmax", "clipped_fraction", "clipped_energy", "clip_rel_rms", "step",
               "est_rel_rms", "in_table", "picks"]
    return pd.DataFrame(rows, columns=columns)


def heavy_clipping(stats: CalibrationStatistics, table_amax: Mapping[str, float]) -> list[tuple[str, float, float]]:
    """(tensor, clip_rel_rms, clipped value share) of the table's tensors whose clipping error exceeds
    HEAVY_CLIP_RMS, worst first."""
    heavy = []
    for name, hist in stats.histograms.items():
        if name not in table_amax:
            continue
        row = clipping_row(hist, table_amax[name], stats.qmax)
        if row["clip_rel_rms"] > HEAVY_CLIP_RMS:
            heavy.append((name, row["clip_rel_rms"], row["clipped_fraction"]))
    return sorted(heavy, key=lambda r: -r[1])


def calibration_warnings(stats: CalibrationStatistics, method: str, table_amax: Mapping[str, float],
                         stacklevel: int = 3) -> list[str]:
    """The warnings a table of `method` with `table_amax` earns (see the module docstring), each also issued as a
    CalibrationWarning (`stacklevel` counted from this function's caller's caller)."""
    found = _warnings(stats, method, table_amax)
    for message in found:
        warnings.warn(message, CalibrationWarning, stacklevel=stacklevel)
    return found


def _warnings(stats: CalibrationStatistics, method: str, table_amax: Mapping[str, float]) -> list[str]:
    found = []
    if method != "minmax" and stats.samples < MIN_SAMPLES:
        found.append(
            f"calibration saw {stats.samples} sample(s) in {stats.batches} batch(es); the {method} method reads "
            f"each tensor's histogram tail, which needs representative data: TensorRT's guide suggests about "
            f"{MIN_SAMPLES} images for ImageNet classifiers. Pass more batches, or compare methods with "
            f"table.clipping() before trusting this table")
    heavy = heavy_clipping(stats, table_amax)
    if heavy:
        shown = ", ".join(f"{name!r} (clipping error {err:.2f} rel RMS, {frac:.3%} of its values clipped)"
                          for name, err, frac in heavy[:3])
        more = f" and {len(heavy) - 3} more" if len(heavy) > 3 else ""
        found.append(
            f"{method} calibration clips {len(heavy)} tensor(s) heavily (clipping alone costs more than "
            f"{HEAVY_CLIP_RMS} relative RMS error): {shown}{more}; compare methods with table.clipping(), or use "
            f"table.with_method('auto' or 'minmax')")
    return found


class ClippingReport:
    """A clipping report: `frame` (clipping_frame's rows), `headline()` naming the worst tensors, `side_by_side()`."""

    def __init__(self, frame: Any, method: str) -> None:
        self.frame = frame
        self.method = method

    def side_by_side(self, value: str = "clipped_energy") -> Any:
        """A tensor x method table of one column (e.g. "clipped_energy", "amax", "est_rel_rms")."""
        if value not in self.frame.columns:
            raise ConfigError(f"no column {value!r} in the clipping report; use one of {', '.join(self.frame.columns)}")
        wide = self.frame.pivot(index="tensor", columns="method", values=value)
        order = list(dict.fromkeys(self.frame["tensor"]))
        return wide.loc[order, list(dict.fromkeys(self.frame["method"]))]

    def worst(self, method: str | None = None, n: int = 3) -> Any:
        """The `n` rows of `method` (default: the table's) with the largest clipping error."""
        rows = self.frame[self.frame["method"] == (method or self.method)]
        return rows.sort_values(["clip_rel_rms", "clipped_energy"], ascending=False).head(n)

    def headline(self) -> str:
        """One line per method: the tensors it clips most and its worst estimated error."""
        lines = []
        for method in dict.fromkeys(self.frame["method"]):
            rows = self.worst(method, 3)
            mark = " (this table)" if method == self.method else ""
            if rows.empty:
                continue
            clipped = rows[rows["clipped_fraction"] > 0]
            if clipped.empty:
                what = "clips nothing"
            else:
                what = "clips most: " + ", ".join(
                    f"{r.tensor!r} error {r.clip_rel_rms:.3g} rel RMS, {r.clipped_fraction:.2%} of values "
                    f"(amax {r.amax:.4g} of {r.absmax:.4g})" for r in clipped.itertuples())
            every = self.frame[self.frame["method"] == method]
            worst_err = every.loc[every["est_rel_rms"].idxmax()]
            lines.append(f"{method}{mark}: {what}; largest estimated error {worst_err.est_rel_rms:.3g} rel RMS "
                         f"({worst_err.tensor!r})")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<ClippingReport {self.frame['tensor'].nunique()} tensors x {self.frame['method'].nunique()} methods>\n" \
               + self.headline()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))
