"""Backend registry: the one place that knows which backends exist and whether they can run here."""
from __future__ import annotations

import importlib
from typing import Any

from ..errors import BackendUnavailableError, ConfigError
from ..precision.variant import Variant
from .base import Backend, Engine

# name -> "module:class"; TensorRT backends are imported only when asked for
_REGISTRY = {
    "onnxruntime": "trtlab.backends.onnxruntime:OnnxRuntimeBackend",
    "tensorrt": "trtlab.backends.tensorrt:TensorRTBackend",
    "tensorrt-rtx": "trtlab.backends.tensorrt:TensorRTRTXBackend",
}
ALIASES = {"ort": "onnxruntime", "trt": "tensorrt", "rtx": "tensorrt-rtx", "tensorrt_rtx": "tensorrt-rtx"}


def backend_class(name: str) -> type[Backend]:
    """The Backend class for a name (import errors become BackendUnavailableError)."""
    name = ALIASES.get(name, name)
    if name not in _REGISTRY:
        raise ConfigError(f"unknown backend {name!r}: choose one of {', '.join(_REGISTRY)} or 'auto'")
    module, cls = _REGISTRY[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise BackendUnavailableError(f"backend {name!r} cannot be loaded: {exc}") from None


def available_backends() -> dict[str, dict[str, Any]]:
    """Every known backend: available or not, and the version or the reason."""
    out = {}
    for name in _REGISTRY:
        try:
            ok, why = backend_class(name).available()
        except BackendUnavailableError as exc:
            ok, why = False, str(exc)
        out[name] = {"available": ok, "detail": why}
    return out


def get_backend(name: str) -> Backend:
    """An instance of the named backend; 'auto' prefers TensorRT on a GPU, then ONNX Runtime."""
    if name == "auto":
        from ..devices import cuda_device_count
        if cuda_device_count() > 0:
            for cand in ("tensorrt", "tensorrt-rtx"):
                try:
                    cls = backend_class(cand)
                    if cls.available()[0]:
                        return cls()
                except BackendUnavailableError:
                    continue
        name = "onnxruntime"
    cls = backend_class(name)
    ok, why = cls.available()
    if not ok:
        raise BackendUnavailableError(f"backend {ALIASES.get(name, name)!r} is not available here: {why}")
    return cls()


__all__ = ["Backend", "Engine", "Variant", "available_backends", "backend_class", "get_backend"]
