"""Sample field names (nvidia-smi's CSV headers) and their formatting as nvidia-smi prints them."""
from __future__ import annotations

import datetime as _dt
import re
from typing import Any, Iterable, Mapping, Sequence

# Bookkeeping keys present in every sample; only "timestamp" (and "index" for a GPU) reach the CSV.
TIME_S = "time_s"
PERF_COUNTER = "perf_counter"
TIMESTAMP = "timestamp"
INDEX = "index"

NA = "[N/A]"
THROTTLE_PREFIX = "clocks_throttle_reasons."

# GPU fields, in the order of the TensorRT FAQ's `nvidia-smi --query-gpu=...` line, then the other
# throttle reasons and the enforced power limit. Names are nvidia-smi's `--format=csv` headers.
GPU_UTIL = "utilization.gpu [%]"
GPU_MEM_UTIL = "utilization.memory [%]"
GPU_MEM_TOTAL = "memory.total [MiB]"
GPU_MEM_FREE = "memory.free [MiB]"
GPU_MEM_USED = "memory.used [MiB]"
CLOCK_GRAPHICS = "clocks.current.graphics [MHz]"
CLOCK_SM = "clocks.current.sm [MHz]"
CLOCK_VIDEO = "clocks.current.video [MHz]"
CLOCK_MEMORY = "clocks.current.memory [MHz]"
POWER_DRAW = "power.draw [W]"
POWER_LIMIT = "power.limit [W]"
ENFORCED_POWER_LIMIT = "enforced.power.limit [W]"
TEMPERATURE = "temperature.gpu"
FAN_SPEED = "fan.speed [%]"
COMPUTE_MODE = "compute_mode"
GPU_OPERATION_MODE = "gpu_operation_mode.current"
PSTATE = "pstate"
THROTTLE_ACTIVE = THROTTLE_PREFIX + "active"

# nvidia-smi reason name -> NVML bit (nvmlClocksThrottleReason* / nvmlClocksEventReason* constants).
THROTTLE_BITS: dict[str, int] = {
    "hw_slowdown": 0x08,
    "gpu_idle": 0x01,
    "applications_clocks_setting": 0x02,
    "sw_power_cap": 0x04,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
}
THROTTLE_REASONS = tuple(THROTTLE_PREFIX + name for name in THROTTLE_BITS)

GPU_COLUMNS: tuple[str, ...] = (
    INDEX, TIMESTAMP, GPU_UTIL, CLOCK_GRAPHICS, CLOCK_SM, CLOCK_VIDEO, CLOCK_MEMORY, GPU_MEM_UTIL,
    GPU_MEM_TOTAL, GPU_MEM_FREE, GPU_MEM_USED, POWER_LIMIT, POWER_DRAW, TEMPERATURE, FAN_SPEED,
    COMPUTE_MODE, GPU_OPERATION_MODE, THROTTLE_ACTIVE, PSTATE, *THROTTLE_REASONS, ENFORCED_POWER_LIMIT,
)

# CPU fields (psutil), named in the same "<name> [<unit>]" style.
CPU_UTIL = "cpu.utilization [%]"
MEM_USED = "memory.used [MiB]"
MEM_TOTAL = "memory.total [MiB]"
MEM_UTIL = "memory.utilization [%]"


# nvidia-smi R535+ accepts the names above as queries but prints newer ones in its header (seen with driver 580).
_EVENT_NAMES = {GPU_OPERATION_MODE: "gom.current",
                **{c: c.replace(THROTTLE_PREFIX, "clocks_event_reasons.") for c in (THROTTLE_ACTIVE, *THROTTLE_REASONS)}}


def header_name(column: str, event_names: bool = False) -> str:
    """The CSV header of a column: the FAQ's query name, or with event_names the name nvidia-smi R535+ prints."""
    return _EVENT_NAMES.get(column, column) if event_names else column


def per_cpu_column(i: int) -> str:
    """Header of CPU core `i`'s utilization, e.g. "cpu3.utilization [%]"."""
    return f"cpu{i}.utilization [%]"


def cpu_columns(n_cpus: int) -> tuple[str, ...]:
    """CSV columns of a psutil sample for a machine with `n_cpus` logical CPUs."""
    return (TIMESTAMP, CPU_UTIL, *(per_cpu_column(i) for i in range(n_cpus)), MEM_USED, MEM_TOTAL, MEM_UTIL)


_UNIT = re.compile(r" \[(.+)\]$")
_TWO_DECIMALS = {POWER_DRAW, POWER_LIMIT, ENFORCED_POWER_LIMIT}


def unit_of(column: str) -> str | None:
    """The unit in a header's brackets ("%", "MiB", "MHz", "W"), or None."""
    m = _UNIT.search(column)
    return m.group(1) if m else None


def format_timestamp(epoch_s: float) -> str:
    """Local wall-clock time the way nvidia-smi prints it: "2024/05/01 12:34:56.789"."""
    t = _dt.datetime.fromtimestamp(epoch_s)
    return t.strftime("%Y/%m/%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def format_value(column: str, value: Any, units: bool = False) -> str:
    """One CSV cell as nvidia-smi prints it: "[N/A]" for missing, Active/Not Active, hex bitmask, 2-decimal watts."""
    if value is None or (isinstance(value, float) and value != value):
        return NA
    if column == TIMESTAMP:
        return format_timestamp(value)
    if column == THROTTLE_ACTIVE:
        return f"0x{int(value):016x}"
    if column.startswith(THROTTLE_PREFIX):
        return "Active" if value else "Not Active"
    if column in _TWO_DECIMALS:
        text = f"{float(value):.2f}"
    elif isinstance(value, float):
        text = f"{value:.1f}"
    else:
        text = str(value)
    unit = unit_of(column)
    return f"{text} {unit}" if units and unit else text


def csv_lines(columns: Sequence[str], samples: Iterable[Mapping[str, Any]], units: bool = False,
              event_names: bool = False) -> Iterable[str]:
    """Header and rows joined with ", " exactly like `nvidia-smi --format=csv[,nounits]`."""
    yield ", ".join(header_name(c, event_names) for c in columns)
    for s in samples:
        yield ", ".join(format_value(c, s.get(c), units) for c in columns)
