"""Device probing: how many NVIDIA GPUs NVML sees, their names and properties, and the CPU. Never raises for a
missing driver or library; used by the backends (device choice) and by the environment report."""
from __future__ import annotations

import os
import platform
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """Number of NVIDIA GPUs NVML sees (0 without a driver); asked once per process, as builds ask often."""
    try:
        import pynvml
        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:
        return 0


def gpu_names() -> list[str]:
    """Names of NVIDIA GPUs visible through NVML (empty without a driver)."""
    return [g["name"] for g in gpus()]


def gpus() -> list[dict[str, Any]]:
    """Per GPU: index, name, memory, compute capability, driver and CUDA driver version (NVML)."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception:
        return []
    out = []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            cc = pynvml.nvmlDeviceGetCudaComputeCapability(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            out.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                        "compute_capability": f"{cc[0]}.{cc[1]}", "memory_total_mib": mem.total // 2**20,
                        "driver": driver.decode() if isinstance(driver, bytes) else driver,
                        "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}"})
    except Exception as exc:
        out.append({"error": f"NVML query failed: {exc}"})
    return out


def cpu_info() -> dict[str, Any]:
    """CPU model name and core counts."""
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import psutil
        physical = psutil.cpu_count(logical=False)
    except Exception:
        physical = None
    return {"model": model or platform.machine(), "logical_cores": os.cpu_count(), "physical_cores": physical}


def host_identity(device: str) -> dict[str, Any]:
    """Where a measurement ran: the host name and process id, the device type (the GPU's name, or 'CPU: <model>'
    for `device` "CPU") and the NVIDIA driver (None without one), so points from different machines are told
    apart."""
    import socket
    on_cpu = device.upper() == "CPU"
    driver = None
    if not on_cpu:
        listed = [g for g in gpus() if "error" not in g]
        driver = listed[0]["driver"] if listed else None
    return {"host": socket.gethostname(), "pid": os.getpid(), "device_type": f"CPU: {cpu_info()['model']}" if on_cpu else device,
            "driver": driver}
