"""The one place that picks `tensorrt`, `tensorrt_rtx` or `tensorrt_rtx_bindings` and isolates their API differences."""
from __future__ import annotations

import importlib
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

from ...errors import BackendUnavailableError, ConfigError

# family -> candidate module names, in order of preference
MODULES = {"tensorrt": ("tensorrt",), "tensorrt-rtx": ("tensorrt_rtx", "tensorrt_rtx_bindings")}
INSTALL = {"tensorrt": "pip install tensorrt (needs an NVIDIA GPU and driver to run engines)",
           "tensorrt-rtx": "pip install tensorrt-rtx-cu13-libs tensorrt-rtx-cu13-bindings"}
# the oldest release of each module trtlab runs on, and what it needs from that release
MINIMUM = {"tensorrt": ((10, 0), "name-based I/O, execute_async_v3, IOutputAllocator.reallocate_output_async and "
                                 "strongly typed networks"),
           "tensorrt_rtx": ((1, 0), "the first TensorRT for RTX release"),
           "tensorrt_rtx_bindings": ((1, 0), "the first TensorRT for RTX release"),
           "cuda.bindings": ((12, 6), "the cuda.bindings.runtime module (cuda-python 12.6 and later)")}


@dataclass(frozen=True)
class TrtApi:
    """An imported TensorRT module and what its family supports."""

    module: Any
    module_name: str
    family: str
    version: str

    @property
    def is_rtx(self) -> bool:
        """True for TensorRT for RTX (compute-capability targets, runtime cache, no timing cache)."""
        return self.family == "tensorrt-rtx"

    @property
    def major(self) -> int:
        """Major version number."""
        return int(self.version.split(".")[0])

    @property
    def always_strongly_typed(self) -> bool:
        """TensorRT 11 and TensorRT-RTX build strongly typed networks only."""
        return self.is_rtx or self.major >= 11

    def network_flags(self) -> int:
        """Creation flags for a strongly typed network (TensorRT 10 needs the flag; 11 and RTX are always so)."""
        flag = getattr(self.module.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        return 1 << int(flag) if flag is not None and not self.always_strongly_typed else 0

    def set_targets(self, config: Any, compute_capability: Sequence[str] | None) -> list[str]:
        """Make `config` build for the given compute capabilities (RTX only); returns the targets set."""
        if not compute_capability:
            return []
        if not self.is_rtx:
            raise ConfigError(f"compute_capability= is a TensorRT for RTX option; {self.module_name} "
                              f"{self.version} builds for the GPU it runs on (drop compute_capability=)")
        cc_enum = self.module.ComputeCapability
        names = [normalise_cc(c) for c in compute_capability]
        members = {k: v for k, v in cc_enum.__members__.items()}
        bad = [n for n in names if f"SM{n.replace('.', '')}" not in members]
        if bad:
            known = sorted(f"{k[2:-1]}.{k[-1]}" for k in members if k.startswith("SM"))
            raise ConfigError(f"compute capability {', '.join(bad)} is not a target of {self.module_name} "
                              f"{self.version}; choose from {', '.join(known)}")
        config.num_compute_capabilities = len(names)
        for i, n in enumerate(names):
            if not config.set_compute_capability(members[f"SM{n.replace('.', '')}"], i):
                raise ConfigError(f"{self.module_name} refused compute capability {n} as target {i}")
        return names

    def timing_cache_supported(self) -> bool:
        """TensorRT keeps a timing cache; in TensorRT-RTX its operations are documented no-ops."""
        return not self.is_rtx

    def create_timing_cache(self, config: Any, data: bytes) -> Any:
        """An ITimingCache from serialized bytes (b'' for a new one), attached to `config`."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # RTX marks the timing cache deprecated
            cache = config.create_timing_cache(data)
            config.set_timing_cache(cache, False)
        return cache

    def serialize_timing_cache(self, cache: Any) -> bytes:
        """Serialized bytes of an ITimingCache."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return host_bytes(cache.serialize())

    def create_context(self, engine: Any, cache_blob: bytes | None = None) -> tuple[Any, Any]:
        """(execution context, runtime cache or None). RTX contexts get a runtime cache of JIT-compiled kernels,
        loaded from `cache_blob` when it matches this GPU and driver (TensorRT-RTX rejects it otherwise)."""
        if not self.is_rtx or not hasattr(engine, "create_runtime_config"):
            return engine.create_execution_context(), None
        runtime_config = engine.create_runtime_config()
        cache = runtime_config.create_runtime_cache()
        if cache_blob:
            cache.deserialize(cache_blob)  # False on mismatch: the cache then starts empty
        runtime_config.set_runtime_cache(cache)
        return engine.create_execution_context(runtime_config), (cache, runtime_config)

    def serialize_runtime_cache(self, handle: Any) -> bytes:
        """Bytes of a runtime cache made by create_context (b'' for none)."""
        return host_bytes(handle[0].serialize()) if handle else b""

    def severity_name(self, severity: Any) -> str:
        """trtlab severity (verbose/info/warning/error) of an ILogger.Severity."""
        name = getattr(severity, "name", str(severity)).rsplit(".", 1)[-1].upper()
        return {"INTERNAL_ERROR": "error", "ERROR": "error", "WARNING": "warning", "INFO": "info"}.get(name, "verbose")


def normalise_cc(value: Any) -> str:
    """'8.9', 8.9, 'sm89', 'SM_89' or (8, 9) -> '8.9'."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return f"{int(value[0])}.{int(value[1])}"
    text = str(value).strip().lower().replace("sm_", "").replace("sm", "")
    if "." in text:
        major, minor = text.split(".", 1)
    elif text.isdigit() and len(text) >= 2:
        major, minor = text[:-1], text[-1]
    else:
        raise ConfigError(f"cannot read compute capability {value!r}: write it like '8.9' or 'sm89'")
    return f"{int(major)}.{int(minor)}"


def host_bytes(memory: Any) -> bytes:
    """Bytes of an IHostMemory (or any buffer)."""
    return bytes(memoryview(memory))


def version_tuple(version: str) -> tuple[int, ...]:
    """(10, 9, 0, 34) for '10.9.0.34'; leading digits of each part ('13.0.0rc1' -> (13, 0, 0))."""
    out = []
    for part in str(version).split("."):
        m = re.match(r"\d+", part)
        if not m:
            break
        out.append(int(m.group()))
    return tuple(out)


def too_old(name: str, version: str, upgrade: str) -> str | None:
    """Why `version` of module `name` is below trtlab's minimum (None when it is not)."""
    minimum, needs = MINIMUM[name]
    if version_tuple(version) >= minimum:
        return None
    return (f"{name} {version} is older than {'.'.join(map(str, minimum))}, the oldest trtlab runs on ({needs}); "
            f"upgrade: {upgrade}")


@lru_cache(maxsize=None)
def _load(family: str) -> TrtApi | str:
    errors = []
    for name in MODULES[family]:
        try:
            mod = importlib.import_module(name)
        except Exception as exc:  # a broken install raises OSError/RuntimeError, not only ImportError
            errors.append(f"{name}: {exc}")
            continue
        version = str(getattr(mod, "__version__", "0"))
        old = too_old(name, version, INSTALL[family].replace("pip install", "pip install -U"))
        if old:
            errors.append(old)
            continue
        return TrtApi(mod, name, family, version)
    return "; ".join(errors)


def load_api(family: str) -> TrtApi:
    """The TensorRT module of a family ('tensorrt' or 'tensorrt-rtx'), or BackendUnavailableError saying why."""
    got = _load(family)
    if isinstance(got, str):
        raise BackendUnavailableError(f"{family} is not installed ({got}); install it with: {INSTALL[family]}")
    return got


def find_api(family: str) -> tuple[TrtApi | None, str]:
    """(api, version) or (None, why not) without raising."""
    got = _load(family)
    return (None, got) if isinstance(got, str) else (got, got.version)


def cuda_runtime() -> Any:
    """cuda-python's runtime module `cuda.bindings.runtime` (cuda-bindings 12.6 or later), imported lazily."""
    got = _cuda_runtime()
    if isinstance(got, str):
        raise BackendUnavailableError(got)
    return got


@lru_cache(maxsize=None)
def _cuda_runtime() -> Any:
    try:
        bindings = importlib.import_module("cuda.bindings")
        cudart = importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        try:
            importlib.import_module("cuda.cudart")  # cuda-python before 12.6 had only this module
        except ImportError:
            return ("TensorRT engines need an NVIDIA GPU and cuda-python to run: pip install cuda-python "
                    "(cuda.bindings) on a machine with a GPU")
        minimum, needs = MINIMUM["cuda.bindings"]
        return (f"cuda-python {_cuda_python_version()} predates cuda.bindings; trtlab needs cuda-bindings "
                f"{'.'.join(map(str, minimum))} or later ({needs}); upgrade: pip install -U cuda-python")
    old = too_old("cuda.bindings", str(getattr(bindings, "__version__", "0")), "pip install -U cuda-python")
    return old or cudart


def _cuda_python_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("cuda-python")
    except PackageNotFoundError:
        return "(unknown version)"
