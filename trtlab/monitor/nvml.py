"""GPU samples through NVML (nvidia-ml-py's `pynvml`), each field read on its own so one unsupported field is None."""
from __future__ import annotations

import importlib
import logging
import math
import threading
import time
from types import ModuleType
from typing import Any, Callable, Sequence

from ..errors import BackendUnavailableError, ConfigError
from . import fields as F

_log = logging.getLogger("trtlab.monitor")

_MIB = 1 << 20
_COMPUTE_MODES = {0: "Default", 1: "Exclusive_Thread", 2: "Prohibited", 3: "Exclusive_Process"}
_OPERATION_MODES = {0: "All On", 1: "Compute", 2: "Low Double Precision"}
_PSTATE_UNKNOWN = 32
# Administrative settings (power limit, compute and operation mode) are re-read this often, not every sample.
SETTINGS_REFRESH_S = 5.0
# NVML errors that will not go away on the next read (NOT_SUPPORTED, FUNCTION_NOT_FOUND, ARGUMENT_VERSION_MISMATCH):
# try the next way of reading the field, or stop asking and report None (keeps the sampler cheap).
_PERMANENT_ERRORS = (3, 13, 25)

_init_lock = threading.Lock()
_init_results: dict[int, tuple[ModuleType, str | None]] = {}


def _mib(n_bytes: int) -> int:
    """Bytes to MiB rounded up, as nvidia-smi prints them (seen on an H100, driver 580: 620.812 MiB -> 621)."""
    return -(-n_bytes // _MIB)


def _text(value: Any) -> str:
    """NVML strings arrive as str (nvidia-ml-py >= 11.5) or bytes (older releases)."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _failure_reason(nvml: ModuleType, exc: BaseException) -> str:
    """Why nvmlInit failed, in words a user can act on."""
    code = getattr(exc, "value", None)
    if code == getattr(nvml, "NVML_ERROR_LIBRARY_NOT_FOUND", 12):
        return f"{exc} (libnvidia-ml.so.1 not found: no NVIDIA driver on this machine)"
    if code == getattr(nvml, "NVML_ERROR_DRIVER_NOT_LOADED", 9):
        return f"{exc} (the NVIDIA kernel driver is not running)"
    return str(exc) or type(exc).__name__


def load_nvml() -> ModuleType:
    """Import pynvml and nvmlInit once per process; raise BackendUnavailableError saying why NVML is unusable."""
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError as exc:
        raise BackendUnavailableError(
            f"NVML unavailable: nvidia-ml-py is not installed ({exc}); install it with `pip install nvidia-ml-py`"
        ) from exc
    with _init_lock:
        cached = _init_results.get(id(nvml))
        if cached is None or cached[0] is not nvml:
            reason = None
            try:
                nvml.nvmlInit()
                if nvml.nvmlDeviceGetCount() < 1:
                    reason = "the NVIDIA driver reports no GPU"
            except nvml.NVMLError as exc:
                reason = _failure_reason(nvml, exc)
            cached = _init_results[id(nvml)] = (nvml, reason)
    if cached[1] is not None:
        raise BackendUnavailableError(f"NVML unavailable: {cached[1]}")
    return nvml


class _Group:
    """Columns filled by one NVML query; candidates are tried in order until one is supported.

    `refresh_s` > 0 re-reads at most that often and repeats the last values in between: for settings that
    rarely change but are slow to query (nvmlDeviceGetPowerManagementLimit took ~170 us on an H100 where
    the other queries took ~2 us).
    """

    def __init__(self, columns: Sequence[str], candidates: Sequence[Callable[[Any], dict[str, Any]]],
                 refresh_s: float = 0.0) -> None:
        self.columns = tuple(columns)
        self.candidates = list(candidates)
        self.refresh_s = refresh_s
        self.warned = False
        self._cached: dict[str, Any] | None = None
        self._cached_at = -math.inf

    def read(self, nvml: ModuleType, handle: Any) -> dict[str, Any] | None:
        """The group's values, or None when the query failed (unsupported ones are dropped for good)."""
        if self.refresh_s > 0:
            now = time.monotonic()
            if self._cached is None or now - self._cached_at >= self.refresh_s:
                self._cached, self._cached_at = self._query(nvml, handle), now
            return self._cached
        return self._query(nvml, handle)

    def _query(self, nvml: ModuleType, handle: Any) -> dict[str, Any] | None:
        while self.candidates:
            try:
                return self.candidates[0](handle)
            except nvml.NVMLError as exc:
                if getattr(exc, "value", None) in _PERMANENT_ERRORS:
                    self.candidates.pop(0)
                    continue
                if not self.warned:
                    self.warned = True
                    _log.warning("NVML could not read %s: %s; reporting [N/A]", ", ".join(self.columns), exc)
                return None
        return None


def decode_throttle_reasons(mask: int | None) -> dict[str, Any]:
    """The active bitmask and one Active/Not-Active boolean per nvidia-smi throttle reason (None when unknown)."""
    out: dict[str, Any] = {F.THROTTLE_ACTIVE: mask}
    for name, bit in F.THROTTLE_BITS.items():
        out[F.THROTTLE_PREFIX + name] = None if mask is None else bool(mask & bit)
    return out


def decode_pstate(value: int | None) -> str | None:
    """NVML performance state 0..15 as nvidia-smi's "P0".."P15"; unknown (32) as None."""
    return None if value is None or value == _PSTATE_UNKNOWN else f"P{int(value)}"


class NvmlSource:
    """Reads one GPU's nvidia-smi fields through NVML; `read()` is cheap enough for 10 Hz."""

    kind = "gpu"
    name = "nvml"

    def __init__(self, device: int = 0) -> None:
        nvml = load_nvml()
        count = nvml.nvmlDeviceGetCount()
        if not 0 <= device < count:
            raise ConfigError(
                f"GPU index {device} does not exist: NVML sees {count} GPU(s), indices 0..{count - 1}; "
                "pass Monitor(device=<index>)"
            )
        self._nvml = nvml
        self.device = device
        self.handle = nvml.nvmlDeviceGetHandleByIndex(device)
        self.gpu_name = self._optional(lambda: _text(nvml.nvmlDeviceGetName(self.handle)))
        self.driver_version = self._optional(lambda: _text(nvml.nvmlSystemGetDriverVersion()))
        self.columns: tuple[str, ...] = F.GPU_COLUMNS
        self.note: str | None = None
        self._groups = self._build_groups()

    def _optional(self, fn: Callable[[], str]) -> str | None:
        try:
            return fn()
        except self._nvml.NVMLError:
            return None

    def _build_groups(self) -> list[_Group]:
        nvml = self._nvml

        def util(h: Any) -> dict[str, Any]:
            u = nvml.nvmlDeviceGetUtilizationRates(h)
            return {F.GPU_UTIL: u.gpu, F.GPU_MEM_UTIL: u.memory}

        def memory(m: Any) -> dict[str, Any]:
            return {F.GPU_MEM_TOTAL: _mib(m.total), F.GPU_MEM_FREE: _mib(m.free), F.GPU_MEM_USED: _mib(m.used)}

        memory_readers = []
        if hasattr(nvml, "nvmlMemory_v2"):
            # v2 excludes driver-reserved memory from "used", as nvidia-smi does since R510.
            memory_readers.append(lambda h: memory(nvml.nvmlDeviceGetMemoryInfo(h, version=nvml.nvmlMemory_v2)))
        memory_readers.append(lambda h: memory(nvml.nvmlDeviceGetMemoryInfo(h)))

        def clock(column: str, clock_type: int) -> _Group:
            return _Group([column], [lambda h: {column: nvml.nvmlDeviceGetClockInfo(h, clock_type)}])

        def watts(column: str, fn_name: str, refresh_s: float = 0.0) -> _Group:
            fn = getattr(nvml, fn_name)
            return _Group([column], [lambda h: {column: fn(h) / 1000.0}], refresh_s)

        pstate_fns = [getattr(nvml, n) for n in ("nvmlDeviceGetPerformanceState", "nvmlDeviceGetPowerState")
                      if hasattr(nvml, n)]
        throttle_fns = [getattr(nvml, n) for n in ("nvmlDeviceGetCurrentClocksEventReasons",
                                                   "nvmlDeviceGetCurrentClocksThrottleReasons") if hasattr(nvml, n)]
        return [
            _Group([F.GPU_UTIL, F.GPU_MEM_UTIL], [util]),
            _Group([F.GPU_MEM_TOTAL, F.GPU_MEM_FREE, F.GPU_MEM_USED], memory_readers),
            clock(F.CLOCK_GRAPHICS, nvml.NVML_CLOCK_GRAPHICS),
            clock(F.CLOCK_SM, nvml.NVML_CLOCK_SM),
            clock(F.CLOCK_VIDEO, nvml.NVML_CLOCK_VIDEO),
            clock(F.CLOCK_MEMORY, nvml.NVML_CLOCK_MEM),
            watts(F.POWER_DRAW, "nvmlDeviceGetPowerUsage"),
            watts(F.POWER_LIMIT, "nvmlDeviceGetPowerManagementLimit", SETTINGS_REFRESH_S),
            watts(F.ENFORCED_POWER_LIMIT, "nvmlDeviceGetEnforcedPowerLimit"),
            _Group([F.TEMPERATURE],
                   [lambda h: {F.TEMPERATURE: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)}]),
            _Group([F.FAN_SPEED], [lambda h: {F.FAN_SPEED: nvml.nvmlDeviceGetFanSpeed(h)}]),
            _Group([F.COMPUTE_MODE],
                   [lambda h: {F.COMPUTE_MODE: _COMPUTE_MODES.get(nvml.nvmlDeviceGetComputeMode(h))}],
                   SETTINGS_REFRESH_S),
            _Group([F.GPU_OPERATION_MODE], [lambda h: {
                F.GPU_OPERATION_MODE: _OPERATION_MODES.get(nvml.nvmlDeviceGetGpuOperationMode(h)[0])}],
                SETTINGS_REFRESH_S),
            _Group([F.PSTATE], [(lambda h, fn=fn: {F.PSTATE: decode_pstate(fn(h))}) for fn in pstate_fns]),
            _Group([F.THROTTLE_ACTIVE, *F.THROTTLE_REASONS],
                   [(lambda h, fn=fn: decode_throttle_reasons(fn(h))) for fn in throttle_fns]),
        ]

    def prime(self) -> None:
        """Nothing to prime: NVML readings are instantaneous or averaged by the driver."""

    def read(self) -> dict[str, Any]:
        """One sample: every GPU column (except timestamp), None where NVML cannot report it."""
        sample: dict[str, Any] = {F.INDEX: self.device}
        for group in self._groups:
            values = group.read(self._nvml, self.handle)
            if values is None:
                sample.update(dict.fromkeys(group.columns))
            else:
                sample.update(values)
        return sample
