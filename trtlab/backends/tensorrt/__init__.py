"""TensorRT backends: `tensorrt` (10.x/11.x) and TensorRT for RTX, one code path (module choice in _import.py)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...config import PRECISIONS, BuildConfig
from ...errors import PlanError
from ..base import Backend
from ._import import INSTALL, TrtApi, find_api, load_api, normalise_cc
from .builder import build_plan, parser_report
from .inspector import layer_lines
from .plan import check_compatible, check_integrity, plan_metadata
from .plugin_tracer import PluginTracer, trace_plugin
from .runtime import TensorRTEngine, load_engine, running_device

if TYPE_CHECKING:
    import pandas as pd

    from ...events import Reporter
    from ...model import Model
    from ...precision.variant import Variant


class _TensorRTFamily(Backend):
    """Builds strongly typed TensorRT engines from typed ONNX variants; runs them where a supported GPU exists."""

    family = "tensorrt"
    precisions = PRECISIONS  # strongly typed: precision comes from the variant's types and Q/DQ nodes
    has_cache_dir = True
    has_parser_report = True

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.api: TrtApi = load_api(self.family)
        # timing caches (build) and RTX runtime caches (run) live here, keyed by library version and device
        from ...workspace import DEFAULT_ROOT
        self.cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_ROOT / "tensorrt-cache"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(True, 'module version') when the module imports (building needs no GPU for RTX), else why not."""
        api, detail = find_api(cls.family)
        if api is None:
            return False, f"{cls.family} is not installed ({detail}); install it with: {INSTALL[cls.family]}"
        from ...devices import cuda_device_count
        if cuda_device_count() == 0:  # say what works here, so nobody expects engines to run
            return True, (f"{api.module_name} {api.version}: builds only (no NVIDIA GPU here"
                          + ("; RTX builds need compute_capability=)" if api.is_rtx else ")"))
        return True, f"{api.module_name} {api.version}"

    def versions(self) -> dict[str, str]:
        """The TensorRT module and version engines depend on."""
        return {self.api.module_name: self.api.version}

    def options(self) -> dict[str, Any]:
        """Build options: workspace, opt_level, timing_cache, compute_capability (RTX), mode, cuda_graph."""
        opts: dict[str, Any] = {"workspace": None, "opt_level": [0, 1, 2, 3, 4, 5], "timing_cache": [False, True],
                                "mode": ["enqueue", "execute"], "cuda_graph": [False, True]}
        if self.api.is_rtx:
            opts["compute_capability"] = sorted(f"{k[2:-1]}.{k[-1]}" for k in
                                                self.api.module.ComputeCapability.__members__ if k.startswith("SM"))
        return opts

    def option_value(self, name: str, value: Any) -> Any:
        """compute_capability is one target or several, written '8.9', 'sm89' or (8, 9)."""
        if name == "compute_capability":
            from .builder import _as_list
            return [normalise_cc(v) for v in _as_list(value)]
        return value

    def parser_report(self, model: "Model", variant: "Variant | None" = None) -> "pd.DataFrame":
        """Per ONNX node: supported by the TensorRT parser or not, with its reason."""
        proto = variant.model if variant is not None else model.proto
        return parser_report(self.api, proto, str(model.path) if getattr(model, "path", None) else None)

    def _device_key(self, config: BuildConfig) -> str:
        ccs = config.option("compute_capability")
        if ccs:
            ccs = ccs if isinstance(ccs, (list, tuple)) and not isinstance(ccs[0], int) else [ccs]
            return "sm" + "-sm".join(normalise_cc(c).replace(".", "") for c in ccs)
        dev = running_device()
        return f"{dev.name}-sm{dev.compute_capability.replace('.', '')}" if dev else "nodevice"

    def build(self, model: "Model", variant: "Variant", config: BuildConfig, reporter: "Reporter") -> TensorRTEngine:
        """Parse and build the variant into a plan; the engine runs later on a supported GPU."""
        out = build_plan(self.api, variant.model, model, config, reporter, self.cache_dir, self._device_key(config),
                         str(model.path) if getattr(model, "path", None) else None)
        meta = plan_metadata(self.api, out.plan, running_device(), out.targets, {
            "config": config.to_dict(), "model": model.name, "model_hash": model.hash, "io": out.io,
            "profile": out.profile, "settings": out.settings, "build_seconds": out.build_seconds,
            "build_figures": out.figures, "build_layers": layer_lines(out.log)})
        reporter.write("info", f"built {model.name} ({config.describe()}) in {out.build_seconds:.2f} s: plan "
                               f"{len(out.plan)} bytes; " + ", ".join(f"{k}={v}" for k, v in out.figures.items()),
                       "tensorrt")
        engine = TensorRTEngine(self.api, out.plan, meta, config, model, variant, reporter, out.log)
        engine.runtime_cache_dir = self.cache_dir
        return engine

    def load(self, model: "Model", variant: "Variant", config: BuildConfig, record_dir: Path,
             metadata: dict[str, Any], reporter: "Reporter") -> TensorRTEngine:
        """Reload the plan stored in the workspace, refusing one from another library version or GPU."""
        path = Path(record_dir) / "engine.plan"
        try:
            plan = path.read_bytes()
        except OSError:
            raise PlanError(f"the workspace engine folder {record_dir} has no engine.plan; delete the folder to "
                            f"rebuild") from None
        check_integrity(plan, metadata, str(path))
        check_compatible(metadata, self.api, running_device(), str(path))
        engine = TensorRTEngine(self.api, plan, metadata, config, model, variant, reporter)
        engine.runtime_cache_dir = self.cache_dir
        return engine


class TensorRTBackend(_TensorRTFamily):
    """TensorRT 10.x / 11.x (module `tensorrt`); needs an NVIDIA GPU to build and run."""

    name = "tensorrt"
    family = "tensorrt"


class TensorRTRTXBackend(_TensorRTFamily):
    """TensorRT for RTX (`tensorrt_rtx` / `tensorrt_rtx_bindings`): builds on a CPU for explicit compute capabilities."""

    name = "tensorrt-rtx"
    family = "tensorrt-rtx"


__all__ = ["PluginTracer", "TensorRTBackend", "TensorRTEngine", "TensorRTRTXBackend", "load_engine", "trace_plugin"]
