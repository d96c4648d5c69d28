"""INT8/FP8 calibration: the TensorRT cache format and its check against a model (cache), the streaming
calibrators (calibrators), the clipping thresholds each method picks from a histogram (thresholds), what each
method clips (clipping) and the driver that runs a model over data (driver)."""
from __future__ import annotations

from ..graph import QMAX, quantizable_tensors
from .cache import (FALLBACK_TENSORRT_VERSION, KNOWN_ALGORITHMS, CacheValidation, CalibrationTable,
                    default_tensorrt_version, tensorrt_version_digits)
from .clipping import CalibrationStatistics, ClippingReport
from .driver import DEFAULT_METHOD, RunnerFactory, calibrate, onnxruntime_runner, synthetic_batches
from .thresholds import ALGORITHMS, METHODS, TensorHistogram

__all__ = ["ALGORITHMS", "DEFAULT_METHOD", "FALLBACK_TENSORRT_VERSION", "KNOWN_ALGORITHMS", "METHODS", "QMAX",
           "CacheValidation", "CalibrationStatistics", "CalibrationTable", "ClippingReport", "RunnerFactory",
           "TensorHistogram", "calibrate", "default_tensorrt_version", "onnxruntime_runner", "quantizable_tensors",
           "synthetic_batches", "tensorrt_version_digits"]

# a cache against a model (coverage, provenance sidecar) and two caches against each other (diff)
from .cache import header_version  # noqa: E402
from .coverage import coverage, read_sidecar  # noqa: E402
from .diff import CacheDiff, diff_tables  # noqa: E402

__all__ += ["CacheDiff", "coverage", "diff_tables", "header_version", "read_sidecar"]
