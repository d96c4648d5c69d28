"""trtlab.monitor: the psutil path for real, the NVML path against pynvml with its C calls replaced."""
from __future__ import annotations

import inspect
import logging
import re
import shutil
import subprocess
import threading
import time

import numpy as np
import pandas as pd
import psutil
import pynvml
import pytest

from trtlab.errors import BackendUnavailableError, ConfigError
from trtlab.monitor import GPU_COLUMNS, Monitor, decode_throttle_reasons, fields as F, summarize
from trtlab.monitor import nvml as nvml_source

INTERVAL = 0.05


def _real_nvml_works() -> bool:
    try:
        nvml_source.load_nvml()
        return True
    except BackendUnavailableError:
        return False


REAL_NVML = _real_nvml_works()


def _wait_for(m: Monitor, n: int) -> None:
    """Wait until `m` has n samples; the bound only keeps a broken sampler from hanging the suite."""
    for _ in range(2000):
        if len(m.samples) >= n:
            return
        time.sleep(0.01)


def _read_csv(path) -> pd.DataFrame:
    return pd.read_csv(path, skipinitialspace=True, na_values=[F.NA], keep_default_na=False)


# --- psutil path (real) -------------------------------------------------------------------------------

def test_psutil_samples_at_interval():
    with Monitor(interval=0.1, source="psutil") as m:
        start = time.perf_counter()
        time.sleep(0.5)
        _wait_for(m, 2)
        elapsed = time.perf_counter() - start
    samples = m.samples
    assert len(samples) >= 2
    assert len(samples) <= elapsed / 0.1 + 2  # sampled on a fixed grid: never bursts
    assert m.source == "psutil" and m.gpu_name is None and m.note is None
    n_cpus = psutil.cpu_count()
    for s in samples:
        per_cpu = [s[F.per_cpu_column(i)] for i in range(n_cpus)]
        assert all(0.0 <= v <= 100.0 for v in per_cpu)
        assert s[F.CPU_UTIL] == pytest.approx(np.mean(per_cpu))
        assert 0 < s[F.MEM_USED] < s[F.MEM_TOTAL] == psutil.virtual_memory().total // 2**20
    times = [s[F.TIME_S] for s in samples]
    assert np.all(np.diff(times) > 0) and times[0] > 0


def test_psutil_sees_a_busy_core():
    stop = threading.Event()

    def burn() -> None:
        while not stop.is_set():
            sum(range(1000))

    with Monitor(interval=INTERVAL, source="psutil") as m:
        worker = threading.Thread(target=burn)
        worker.start()
        time.sleep(0.1)
        _wait_for(m, len(m.samples) + 4)
        stop.set()
        worker.join()
    busiest = max(max(s[F.per_cpu_column(i)] for i in range(psutil.cpu_count())) for s in m.samples[1:])
    assert busiest >= 50.0


def test_to_frame_columns_and_times():
    with Monitor(interval=INTERVAL, source="psutil") as m:
        _wait_for(m, 3)
    frame = m.to_frame()
    assert list(frame.columns) == ["time_s", "perf_counter", *F.cpu_columns(psutil.cpu_count())]
    assert len(frame) == len(m.samples)
    assert pd.api.types.is_datetime64_any_dtype(frame["timestamp"])
    assert frame["time_s"].is_monotonic_increasing
    wall = (frame["timestamp"] - frame["timestamp"].iloc[0]).dt.total_seconds()  # naive local time, like nvidia-smi
    assert np.allclose(wall, frame["time_s"] - frame["time_s"].iloc[0], atol=0.05)


def test_psutil_csv_has_nvidia_smi_style_header(tmp_path):
    with Monitor(interval=INTERVAL, source="psutil") as m:
        _wait_for(m, 2)
    path = m.to_csv(tmp_path / "cpu.csv")
    lines = open(path).read().splitlines()
    n = psutil.cpu_count()
    expected = ["timestamp", "cpu.utilization [%]", *[f"cpu{i}.utilization [%]" for i in range(n)],
                "memory.used [MiB]", "memory.total [MiB]", "memory.utilization [%]"]
    assert lines[0] == ", ".join(expected)
    assert len(lines) == len(m.samples) + 1
    assert re.fullmatch(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{3}", lines[1].split(", ")[0])
    table = _read_csv(path)
    assert list(table.columns) == expected
    np.testing.assert_allclose(table["memory.used [MiB]"], [s[F.MEM_USED] for s in m.samples])
    np.testing.assert_allclose(table["cpu.utilization [%]"], [s[F.CPU_UTIL] for s in m.samples], atol=0.051)


# --- subscribers and the thread ------------------------------------------------------------------------

def test_subscribers_receive_every_sample_until_unsubscribed():
    got: list[dict] = []
    m = Monitor(interval=INTERVAL, source="psutil")
    unsubscribe = m.subscribe(got.append)
    with m:
        _wait_for(m, 3)
        unsubscribe()
        n_at_unsubscribe = len(got)
        _wait_for(m, len(m.samples) + 2)
    assert n_at_unsubscribe >= 3
    assert got == m.samples[:len(got)]
    assert len(got) in (n_at_unsubscribe, n_at_unsubscribe + 1)  # at most one in flight while unsubscribing
    assert len(m.samples) > len(got)


def test_callback_exception_does_not_kill_sampler(caplog):
    good: list[dict] = []

    def bad(sample: dict) -> None:
        raise RuntimeError("widget gone")

    m = Monitor(interval=INTERVAL, source="psutil")
    m.subscribe(bad)
    m.subscribe(good.append)
    with caplog.at_level(logging.ERROR, logger="trtlab.monitor"), m:
        _wait_for(m, 4)
        assert m.running
    assert len(m.samples) >= 4 and len(good) >= 4
    errors = [r for r in caplog.records if r.exc_info and "widget gone" in str(r.exc_info[1])]
    assert len(errors) == 1  # logged once, not at every sample


def test_stop_joins_thread_and_sampling_ends():
    m = Monitor(interval=INTERVAL, source="psutil")
    assert not m.running
    m.start()
    thread = m._thread
    _wait_for(m, 2)
    m.stop()
    assert not m.running and not thread.is_alive()
    n = len(m.samples)
    time.sleep(3 * INTERVAL)
    assert len(m.samples) == n
    assert 0 < m.cpu_seconds < 1.0 and 0 < m.overhead < 1.0


def test_stop_from_a_subscriber_does_not_deadlock():
    m = Monitor(interval=INTERVAL, source="psutil")
    m.subscribe(lambda s: m.stop())
    m.start()
    m._thread.join(30)
    assert not m.running and len(m.samples) == 1


def test_start_again_starts_a_new_recording_and_max_samples_bounds_memory():
    m = Monitor(interval=INTERVAL, source="psutil", max_samples=3)
    seen: list[dict] = []
    m.subscribe(seen.append)
    with m:
        for _ in range(2000):
            if len(seen) >= 5:
                break
            time.sleep(0.01)
    assert len(seen) >= 5 and m.samples == seen[-3:]
    first = m.samples
    with m:
        _wait_for(m, 1)
    assert m.samples[0][F.PERF_COUNTER] > first[-1][F.PERF_COUNTER]


def test_window_and_summary_against_numpy():
    with Monitor(interval=INTERVAL, source="psutil") as m:
        _wait_for(m, 6)
    samples = m.samples
    t0, t1 = samples[1][F.PERF_COUNTER], samples[4][F.PERF_COUNTER]
    assert m.window(t0, t1) == samples[1:5]
    assert m.window(t1 + 1e-9, t1 + 1e-6) == []
    util = np.array([s[F.CPU_UTIL] for s in samples[1:5]])
    mem = np.array([s[F.MEM_USED] for s in samples[1:5]])
    summary = m.summary(t0, t1)
    assert summary["device"] == "cpu" and summary["samples"] == 4
    assert summary["util_mean_pct"] == pytest.approx(util.mean())
    assert summary["util_peak_pct"] == pytest.approx(util.max())
    assert summary["memory_used_peak_mib"] == mem.max()
    assert summary["duration_s"] == pytest.approx(samples[4][F.TIME_S] - samples[1][F.TIME_S])
    assert "power_mean_w" not in summary
    assert m.summary()["samples"] == len(samples)
    empty = m.summary(t1 + 1e-9, t1 + 1e-6)
    assert empty["samples"] == 0 and np.isnan(empty["util_mean_pct"])


def test_summarize_gpu_samples_with_missing_values():
    util = [10.0, None, 90.0, 50.0]
    power = [100.0, 200.0, None, 400.0]
    samples = [{F.TIME_S: 0.1 * i, F.PERF_COUNTER: 5 + 0.1 * i, F.GPU_UTIL: u, F.GPU_MEM_USED: 1000 + i,
                F.POWER_DRAW: p, F.CLOCK_SM: None} for i, (u, p) in enumerate(zip(util, power))]
    summary = summarize(pd.DataFrame(samples))
    as_float = lambda xs: np.array([np.nan if x is None else x for x in xs], dtype=float)  # noqa: E731
    assert summary["device"] == "gpu" and summary["samples"] == 4
    assert summary["util_mean_pct"] == pytest.approx(np.nanmean(as_float(util)))
    assert summary["util_peak_pct"] == pytest.approx(np.nanmax(as_float(util)))
    assert summary["power_mean_w"] == pytest.approx(np.nanmean(as_float(power)))
    assert summary["memory_used_peak_mib"] == 1003
    assert np.isnan(summary["sm_clock_mean_mhz"])
    assert summarize(samples) == pytest.approx(summary, nan_ok=True)  # a list of samples works too


# --- source selection and errors ---------------------------------------------------------------------

@pytest.mark.skipif(REAL_NVML, reason="an NVIDIA driver is present")
def test_nvml_without_driver():
    with pytest.raises(BackendUnavailableError, match=r"NVML unavailable: NVML Shared Library Not Found.*source='auto'"):
        Monitor(source="nvml")
    m = Monitor(source="auto")
    assert m.source == "psutil"
    assert re.fullmatch(r"NVML unavailable: .*Not Found.*; sampling CPU and memory with psutil", m.note)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="source='gpu'.*auto, nvml, psutil"):
        Monitor(source="gpu")
    with pytest.raises(ConfigError, match="interval=0.*positive"):
        Monitor(interval=0)


def test_missing_nvidia_ml_py(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)
    with pytest.raises(BackendUnavailableError, match="nvidia-ml-py is not installed.*pip install nvidia-ml-py"):
        Monitor(source="nvml")
    assert "nvidia-ml-py is not installed" in Monitor(source="auto").note


# --- NVML path against pynvml with its C calls replaced ----------------------------------------------

def _err(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)  # pynvml maps the code to its subclass, e.g. NVMLError_NotSupported


class FakeGpu:
    """The pynvml functions trtlab calls, same names and signatures, returning pynvml's own types.

    By default a busy H100 on an older driver: no fan, no GPU operation mode, no
    nvmlDeviceGetCurrentClocksEventReasons (so the deprecated ThrottleReasons call must be used).
    """

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.util = (87, 41)
        self.clocks = {pynvml.NVML_CLOCK_GRAPHICS: 1755, pynvml.NVML_CLOCK_SM: 1755,
                       pynvml.NVML_CLOCK_MEM: 2619, pynvml.NVML_CLOCK_VIDEO: 1620}
        self.memory_bytes = {"total": 81559 << 20, "reserved": 512 << 20, "free": 60000 << 20, "used": 21047 << 20}
        self.power_mw, self.power_step_mw = 100_000, 1234
        self.power_limit_mw, self.enforced_limit_mw = 700_000, 650_000
        self.temperature, self.pstate = 41, pynvml.NVML_PSTATE_0
        self.reasons = pynvml.nvmlClocksThrottleReasonGpuIdle | pynvml.nvmlClocksThrottleReasonSwPowerCap
        self.event_reasons_api = False
        self.fail_power_once = False

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def nvmlInit(self):
        self._count("nvmlInit")

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):
        if index != 0:
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return pynvml.c_nvmlDevice_t()

    def nvmlDeviceGetName(self, handle):
        return "NVIDIA H100 80GB HBM3"

    def nvmlSystemGetDriverVersion(self):
        return "535.104.05"

    def nvmlDeviceGetUtilizationRates(self, handle):
        return pynvml.c_nvmlUtilization_t(gpu=self.util[0], memory=self.util[1])

    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        b = self.memory_bytes
        if version:
            return pynvml.c_nvmlMemory_v2_t(version=version, **b)
        return pynvml.c_nvmlMemory_t(total=b["total"], free=b["free"], used=b["total"] - b["free"])

    def nvmlDeviceGetClockInfo(self, handle, type):
        return self.clocks[type]

    def nvmlDeviceGetPowerUsage(self, handle):
        if self.fail_power_once:
            self.fail_power_once = False
            raise _err(pynvml.NVML_ERROR_UNKNOWN)
        self.power_mw += self.power_step_mw
        return self.power_mw

    def nvmlDeviceGetPowerManagementLimit(self, handle):
        self._count("nvmlDeviceGetPowerManagementLimit")
        return self.power_limit_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return self.enforced_limit_mw

    def nvmlDeviceGetTemperature(self, handle, sensor):
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self.temperature

    def nvmlDeviceGetFanSpeed(self, handle):
        self._count("nvmlDeviceGetFanSpeed")
        raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetComputeMode(self, handle):
        return pynvml.NVML_COMPUTEMODE_DEFAULT

    def nvmlDeviceGetGpuOperationMode(self, handle):
        raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetPerformanceState(self, handle):
        return self.pstate

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        self._count("nvmlDeviceGetCurrentClocksEventReasons")
        if not self.event_reasons_api:
            raise _err(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        return self.reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle):
        return self.reasons


FAKED = [n for n in vars(FakeGpu) if n.startswith("nvml")]


@pytest.fixture
def fake_gpu(monkeypatch) -> FakeGpu:
    gpu = FakeGpu()
    for name in FAKED:
        monkeypatch.setattr(pynvml, name, getattr(gpu, name))
    monkeypatch.setattr(nvml_source, "_init_results", {})
    return gpu


def test_fake_follows_pynvml_signatures():
    for name in FAKED:
        real = inspect.signature(getattr(pynvml, name))
        fake = inspect.signature(getattr(FakeGpu(), name))
        assert list(real.parameters) == list(fake.parameters), name


def test_throttle_bits_match_pynvml_constants():
    for name, bit in F.THROTTLE_BITS.items():
        camel = "".join(part.capitalize() for part in name.split("_"))
        assert bit == getattr(pynvml, "nvmlClocksThrottleReason" + camel) == getattr(pynvml, "nvmlClocksEventReason" + camel)
    decoded = decode_throttle_reasons(pynvml.nvmlClocksThrottleReasonHwSlowdown | pynvml.nvmlClocksThrottleReasonSyncBoost)
    active = sorted(k for k, v in decoded.items() if v is True)
    assert active == ["clocks_throttle_reasons.hw_slowdown", "clocks_throttle_reasons.sync_boost"]
    assert set(decode_throttle_reasons(None).values()) == {None}


def test_fake_nvml_sample_decoding(fake_gpu):
    m = Monitor(source="nvml")
    assert (m.source, m.note, m.gpu_name, m.driver_version) == ("nvml", None, "NVIDIA H100 80GB HBM3", "535.104.05")
    s = m._source.read()
    assert s[F.INDEX] == 0
    assert (s[F.GPU_UTIL], s[F.GPU_MEM_UTIL]) == (87, 41)
    assert (s[F.GPU_MEM_TOTAL], s[F.GPU_MEM_FREE], s[F.GPU_MEM_USED]) == (81559, 60000, 21047)  # v2: reserved excluded
    assert (s[F.CLOCK_SM], s[F.CLOCK_MEMORY], s[F.CLOCK_GRAPHICS], s[F.CLOCK_VIDEO]) == (1755, 2619, 1755, 1620)
    assert s[F.POWER_DRAW] == pytest.approx(101.234) and s[F.POWER_LIMIT] == 700.0
    assert s[F.ENFORCED_POWER_LIMIT] == 650.0
    assert (s[F.TEMPERATURE], s[F.PSTATE], s[F.COMPUTE_MODE]) == (41, "P0", "Default")
    assert s[F.FAN_SPEED] is None and s[F.GPU_OPERATION_MODE] is None
    assert s[F.THROTTLE_ACTIVE] == 0x5
    assert s["clocks_throttle_reasons.gpu_idle"] is True and s["clocks_throttle_reasons.sw_power_cap"] is True
    assert s["clocks_throttle_reasons.hw_slowdown"] is False
    for _ in range(3):
        m._source.read()
    # unsupported queries are dropped after the first answer, and the slow power-limit query is cached
    assert fake_gpu.calls["nvmlDeviceGetFanSpeed"] == 1
    assert fake_gpu.calls["nvmlDeviceGetCurrentClocksEventReasons"] == 1
    assert fake_gpu.calls["nvmlDeviceGetPowerManagementLimit"] == 1
    fake_gpu.fail_power_once = True
    assert m._source.read()[F.POWER_DRAW] is None  # a transient error is [N/A] for that sample only
    assert m._source.read()[F.POWER_DRAW] is not None


def test_fake_nvml_csv_matches_nvidia_smi(fake_gpu, tmp_path):
    with Monitor(interval=INTERVAL, source="nvml") as m:
        _wait_for(m, 3)
    assert fake_gpu.calls["nvmlInit"] == 1
    faq_query = ("index,timestamp,utilization.gpu,clocks.current.graphics,clocks.current.sm,clocks.current.video,"
                 "clocks.current.memory,utilization.memory,memory.total,memory.free,memory.used,power.limit,power.draw,"
                 "temperature.gpu,fan.speed,compute_mode,gpu_operation_mode.current,clocks_throttle_reasons.active,"
                 "pstate,clocks_throttle_reasons.hw_slowdown,clocks_throttle_reasons.gpu_idle,"
                 "clocks_throttle_reasons.applications_clocks_setting,clocks_throttle_reasons.sw_power_cap,"
                 "clocks_throttle_reasons.sync_boost").split(",")
    lines = open(m.to_csv(tmp_path / "gpu.csv")).read().splitlines()
    header = lines[0].split(", ")
    assert [re.sub(r" \[.*\]$", "", h) for h in header[:len(faq_query)]] == faq_query
    assert header[:4] == ["index", "timestamp", "utilization.gpu [%]", "clocks.current.graphics [MHz]"]
    assert {"memory.used [MiB]", "power.draw [W]", "fan.speed [%]", "temperature.gpu", "pstate"} <= set(header)
    assert header[len(faq_query):] == ["clocks_throttle_reasons.sw_thermal_slowdown",
                                       "clocks_throttle_reasons.hw_thermal_slowdown",
                                       "clocks_throttle_reasons.hw_power_brake_slowdown", "enforced.power.limit [W]"]
    row = dict(zip(header, lines[1].split(", ")))
    assert row["fan.speed [%]"] == "[N/A]" and row["gpu_operation_mode.current"] == "[N/A]"
    assert row["clocks_throttle_reasons.active"] == "0x0000000000000005"
    assert row["clocks_throttle_reasons.gpu_idle"] == "Active"
    assert row["clocks_throttle_reasons.hw_slowdown"] == "Not Active"
    assert re.fullmatch(r"\d+\.\d\d", row["power.draw [W]"]) and row["power.limit [W]"] == "700.00"
    assert (row["pstate"], row["compute_mode"], row["utilization.gpu [%]"]) == ("P0", "Default", "87")
    table = _read_csv(tmp_path / "gpu.csv")
    assert len(table) == len(m.samples) and table["fan.speed [%]"].isna().all()

    with_units = open(m.to_csv(tmp_path / "units.csv", units=True)).read().splitlines()
    row = dict(zip(header, with_units[1].split(", ")))
    assert row["utilization.gpu [%]"] == "87 %" and row["clocks.current.sm [MHz]"] == "1755 MHz"
    assert row["memory.used [MiB]"] == "21047 MiB" and re.fullmatch(r"\d+\.\d\d W", row["power.draw [W]"])
    assert row["temperature.gpu"] == "41" and row["fan.speed [%]"] == "[N/A]"


def test_fake_nvml_frame_and_summary(fake_gpu):
    with Monitor(interval=INTERVAL, source="nvml") as m:
        _wait_for(m, 4)
    frame = m.to_frame()
    assert list(frame.columns) == ["time_s", "perf_counter", *GPU_COLUMNS]
    power = np.array([s[F.POWER_DRAW] for s in m.samples])
    np.testing.assert_allclose(np.diff(power), 1.234)  # one NVML power read per sample
    summary = m.summary()
    assert summary["device"] == "gpu"
    assert summary["power_mean_w"] == pytest.approx(power.mean())
    assert (summary["util_mean_pct"], summary["util_peak_pct"], summary["sm_clock_mean_mhz"]) == (87, 87, 1755)
    assert summary["memory_used_peak_mib"] == 21047


def test_memory_rounds_up_like_nvidia_smi(fake_gpu):
    # NVML v2 bytes and nvidia-smi's reading of the same state on the H100 (driver 580):
    # free 80458.188 MiB, used 620.812 MiB, reserved 480 MiB -> nvidia-smi printed 80459 and 621.
    fake_gpu.memory_bytes = {"total": 81559 << 20, "reserved": 480 << 20,
                             "free": (80458 << 20) + 197132, "used": (620 << 20) + 851436}
    s = Monitor(source="nvml")._source.read()
    assert (s[F.GPU_MEM_TOTAL], s[F.GPU_MEM_FREE], s[F.GPU_MEM_USED]) == (81559, 80459, 621)


def test_settings_refresh(fake_gpu, monkeypatch):
    monkeypatch.setattr(nvml_source, "SETTINGS_REFRESH_S", 0.0)
    source = Monitor(source="nvml")._source
    assert source.read()[F.POWER_LIMIT] == 700.0
    fake_gpu.power_limit_mw = 500_000  # `nvidia-smi -pl 500`
    assert source.read()[F.POWER_LIMIT] == 500.0


# Recorded on the device machine (NVIDIA H100 80GB HBM3, driver 580.159.04, idle) with
#   nvidia-smi --format=csv -i 0 --query-gpu=<the FAQ's fields>,clocks_throttle_reasons.sw_thermal_slowdown,
#   clocks_throttle_reasons.hw_thermal_slowdown,clocks_throttle_reasons.hw_power_brake_slowdown,enforced.power.limit
SMI_580_HEADER = (
    "index, timestamp, utilization.gpu [%], clocks.current.graphics [MHz], clocks.current.sm [MHz], "
    "clocks.current.video [MHz], clocks.current.memory [MHz], utilization.memory [%], memory.total [MiB], "
    "memory.free [MiB], memory.used [MiB], power.limit [W], power.draw [W], temperature.gpu, fan.speed [%], "
    "compute_mode, gom.current, clocks_event_reasons.active, pstate, clocks_event_reasons.hw_slowdown, "
    "clocks_event_reasons.gpu_idle, clocks_event_reasons.applications_clocks_setting, "
    "clocks_event_reasons.sw_power_cap, clocks_event_reasons.sync_boost, clocks_event_reasons.sw_thermal_slowdown, "
    "clocks_event_reasons.hw_thermal_slowdown, clocks_event_reasons.hw_power_brake_slowdown, enforced.power.limit [W]")
SMI_580_ROW = (
    "0, 2026/11/25 13:52:34.120, 0 %, 345 MHz, 345 MHz, 765 MHz, 2619 MHz, 0 %, 81559 MiB, 81079 MiB, 0 MiB, "
    "700.00 W, 70.99 W, 32, [N/A], Default, [N/A], 0x0000000000000001, P0, Not Active, Active, Not Active, "
    "Not Active, Not Active, Not Active, Not Active, Not Active, 700.00 W")


def test_csv_matches_recorded_nvidia_smi_output(fake_gpu, tmp_path):
    fake_gpu.util = (0, 0)
    fake_gpu.clocks = {pynvml.NVML_CLOCK_GRAPHICS: 345, pynvml.NVML_CLOCK_SM: 345,
                       pynvml.NVML_CLOCK_MEM: 2619, pynvml.NVML_CLOCK_VIDEO: 765}
    fake_gpu.memory_bytes = {"total": 81559 << 20, "reserved": 480 << 20, "free": 81079 << 20, "used": 0}
    fake_gpu.power_mw, fake_gpu.power_step_mw = 70_990, 0
    fake_gpu.power_limit_mw = fake_gpu.enforced_limit_mw = 700_000
    fake_gpu.temperature, fake_gpu.event_reasons_api = 32, True
    fake_gpu.reasons = pynvml.nvmlClocksEventReasonGpuIdle
    with Monitor(interval=INTERVAL, source="nvml") as m:
        _wait_for(m, 1)
    header, row = open(m.to_csv(tmp_path / "gpu.csv", units=True, event_names=True)).read().splitlines()[:2]
    assert header == SMI_580_HEADER
    drop_timestamp = lambda line: line.split(", ")[:1] + line.split(", ")[2:]  # noqa: E731
    assert drop_timestamp(row) == drop_timestamp(SMI_580_ROW)
    assert fake_gpu.calls["nvmlDeviceGetCurrentClocksEventReasons"] >= 1  # the current API is preferred


def test_fake_nvml_bad_device_index(fake_gpu):
    with pytest.raises(ConfigError, match=r"GPU index 3 does not exist: NVML sees 1 GPU\(s\), indices 0..0"):
        Monitor(source="auto", device=3)


@pytest.mark.skipif(not REAL_NVML, reason="no NVIDIA driver here")
def test_real_nvml(tmp_path):
    with Monitor(interval=INTERVAL, source="nvml") as m:
        _wait_for(m, 3)
    assert m.gpu_name and m.driver_version
    s = m.samples[-1]
    assert 0 <= s[F.GPU_UTIL] <= 100 and s[F.GPU_MEM_TOTAL] > 0
    assert s[F.PSTATE].startswith("P") and s[F.POWER_DRAW] > 0
    assert _read_csv(m.to_csv(tmp_path / "gpu.csv")).shape == (len(m.samples), len(GPU_COLUMNS))
    smi = shutil.which("nvidia-smi")
    if smi:  # the independent reference where the driver ships it
        out = subprocess.run([smi, "-i", "0", "--format=csv,noheader,nounits",
                              "--query-gpu=name,driver_version,memory.total,power.limit"],
                             capture_output=True, text=True, check=True).stdout.strip().split(", ")
        assert out == [m.gpu_name, m.driver_version, str(s[F.GPU_MEM_TOTAL]), f"{s[F.POWER_LIMIT]:.2f}"]


def test_work_shorter_than_one_interval_still_gets_a_sample():
    m = Monitor(interval=10.0, source="psutil").start()
    m.stop()  # long before the first tick
    assert len(m.samples) == 1 and not m.running
