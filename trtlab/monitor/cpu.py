"""CPU samples through psutil: overall and per-CPU utilization, system memory."""
from __future__ import annotations

from typing import Any

import psutil

from . import fields as F

_MIB = 1 << 20


class PsutilSource:
    """Reads CPU and memory utilization without blocking (psutil's interval=None counters)."""

    kind = "cpu"
    name = "psutil"
    gpu_name: str | None = None
    driver_version: str | None = None

    def __init__(self, note: str | None = None) -> None:
        self.n_cpus = len(psutil.cpu_percent(percpu=True, interval=None))
        self.columns: tuple[str, ...] = F.cpu_columns(self.n_cpus)
        self._per_cpu_columns = [F.per_cpu_column(i) for i in range(self.n_cpus)]
        self.note = note

    def prime(self) -> None:
        """Reset psutil's counters so the first sample covers the first interval, not the time since import."""
        psutil.cpu_percent(percpu=True, interval=None)

    def read(self) -> dict[str, Any]:
        """One sample: utilization since the previous read (overall = mean of the CPUs) and memory now."""
        per_cpu = psutil.cpu_percent(percpu=True, interval=None)
        vm = psutil.virtual_memory()
        sample: dict[str, Any] = {F.CPU_UTIL: sum(per_cpu) / len(per_cpu) if per_cpu else None}
        sample.update(zip(self._per_cpu_columns, per_cpu))
        sample[F.MEM_USED] = vm.used // _MIB
        sample[F.MEM_TOTAL] = vm.total // _MIB
        sample[F.MEM_UTIL] = vm.percent
        return sample
