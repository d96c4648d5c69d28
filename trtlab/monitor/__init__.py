"""Utilization monitor: GPU fields through NVML (nvidia-smi's names) or CPU and memory through psutil.

    with Monitor(interval=0.1) as m:
        run_benchmark()
    m.to_frame(); m.to_csv("gpu.csv"); m.summary(t0, t1)
"""
from __future__ import annotations

from . import fields
from .fields import GPU_COLUMNS, cpu_columns
from .nvml import decode_throttle_reasons, load_nvml
from .sampler import SOURCES, Monitor
from .summary import samples_to_frame, summarize

__all__ = ["Monitor", "SOURCES", "summarize", "samples_to_frame", "fields", "GPU_COLUMNS", "cpu_columns",
           "decode_throttle_reasons", "load_nvml"]
