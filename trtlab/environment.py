"""The environment report: versions, providers, backends, CPU and GPUs. Missing pieces are reported, never fatal."""
from __future__ import annotations

import importlib
import os
import platform
import sys
from functools import lru_cache
from typing import Any


def _version(module: str) -> str | None:
    try:
        mod = importlib.import_module(module)
    except Exception:
        return None
    return str(getattr(mod, "__version__", "installed"))


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


class EnvironmentReport(dict):
    """A dict of what is installed and visible, printable as a table and as HTML in notebooks."""

    def __str__(self) -> str:
        lines = ["trtlab environment"]
        for key in ("trtlab", "python", "platform"):
            lines.append(f"  {key:14s} {self[key]}")
        lines.append("  libraries:")
        for k, v in self["libraries"].items():
            lines.append(f"    {k:22s} {v or 'missing'}")
        lines.append(f"  onnxruntime providers: {', '.join(self['onnxruntime_providers']) or 'none'}")
        lines.append("  backends:")
        for k, v in self["backends"].items():
            lines.append(f"    {k:14s} {'yes' if v['available'] else 'no ':3s} {v['detail']}")
        c = self["cpu"]
        lines.append(f"  cpu: {c['model']} ({c['logical_cores']} logical cores)")
        if self["gpus"]:
            for g in self["gpus"]:
                lines.append(f"  gpu {g.get('index')}: {g.get('name')} cc {g.get('compute_capability')}, "
                             f"{g.get('memory_total_mib')} MiB, driver {g.get('driver')}, CUDA {g.get('cuda_driver')}"
                             if "error" not in g else f"  gpu: {g['error']}")
        else:
            lines.append("  gpu: none visible (no NVIDIA driver / NVML)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from .markup import esc
        return "<pre>" + esc(str(self)) + "</pre>"


def environment() -> EnvironmentReport:
    """Collect the environment report (never raises for a missing piece)."""
    from . import __version__
    from .backends import available_backends
    libs = {m: _version(m) for m in ("numpy", "onnx", "onnxruntime", "pandas", "plotly", "ipywidgets", "psutil",
                                     "pynvml", "tensorrt", "tensorrt_rtx", "tensorrt_rtx_bindings", "cuda")}
    try:
        import onnxruntime
        providers = list(onnxruntime.get_available_providers())
    except Exception:
        providers = []
    return EnvironmentReport(trtlab=__version__, python=sys.version.split()[0],
                             platform=platform.platform(), libraries=libs, onnxruntime_providers=providers,
                             backends=available_backends(), cpu=cpu_info(), gpus=gpus())
