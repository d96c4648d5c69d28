"""The environment report: versions, providers, backends, CPU and GPUs. Missing pieces are reported, never fatal."""
from __future__ import annotations

import importlib
import platform
import sys

from .devices import cpu_info, gpus


def _version(module: str) -> str | None:
    try:
        mod = importlib.import_module(module)
    except Exception:
        return None
    return str(getattr(mod, "__version__", "installed"))


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
    from .backends import available_backends
    from .version import __version__
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
