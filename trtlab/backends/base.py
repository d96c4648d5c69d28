"""The backend contract: a Backend builds an Engine from a (typed) ONNX variant; an Engine runs and profiles."""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from ..config import BuildConfig
from ..errors import ConfigError, EngineClosedError
from ..feeds import check_feeds
from ..model import Model, TensorInfo
from ..precision.variant import Variant

if TYPE_CHECKING:
    import onnx
    import pandas as pd

    from ..tables import LayerProfile, PrecisionMix
    from ..events import Reporter


class Engine(ABC):
    """A built engine: run it, time it, look inside it. Subclasses wrap one backend's runtime object."""

    backend_name: str = "?"
    # capabilities (subclasses that have them say so; callers ask these, never hasattr)
    supports_launch_modes: bool = False  # runner(feeds, mode=, cuda_graph=, transfers=, spin_wait=) picks the launch
    uses_cuda_graph: bool = False  # runs need fixed device buffers (fixed_buffer_runner)

    def __init__(self, config: BuildConfig, model: Model, variant: Variant, metadata: dict[str, Any]) -> None:
        self.config = config
        self.model = model
        self.variant = variant
        self.metadata = metadata
        self.input_shapes: dict[str, tuple[int, ...]] = {}
        self._closed = False
        self._lock = threading.Lock()
        # what the layers computed in on the last effective_precision() measurement (backends measure it at
        # build where the named precision is not what the kernels run)
        self.measured_precision: "PrecisionMix | None" = None

    # ---- description -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Readable label, e.g. 'resnet50 onnxruntime fp16 batch=8'."""
        return f"{self.model.name} {self.config.describe()}"

    @property
    @abstractmethod
    def inputs(self) -> list[TensorInfo]:
        """Input tensors (names, shapes, dtypes) as the engine sees them."""

    @property
    @abstractmethod
    def outputs(self) -> list[TensorInfo]:
        """Output tensors, marked outputs included."""

    @property
    def device(self) -> str:
        """Where it runs, e.g. 'CPU' or 'NVIDIA H100 80GB HBM3'."""
        return str(self.metadata.get("device", "CPU"))

    # ---- running ---------------------------------------------------------------------------
    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run one inference: dict of input arrays in, dict of output arrays out. Thread-safe."""

    @property
    def launch_library(self) -> tuple[str, str] | None:
        """(family, version) of the TensorRT library whose trtexec defaults a benchmark of this engine follows
        (trtlab.analysis.launch); None for engines with one way to run."""
        return None

    def launch_mode(self, mode: str | None = None, cuda_graph: bool | None = None) -> str | None:
        """How runner(feeds, mode, cuda_graph) launches, as a benchmark records it; None for an engine with
        one way to run, which refuses mode=/cuda_graph= (supports_launch_modes False)."""
        if not self.supports_launch_modes and (mode is not None or cuda_graph is not None):
            raise ConfigError(f"mode=/cuda_graph= apply to TensorRT engines; {self.name} runs on "
                              f"{self.backend_name} (for ONNX Runtime CUDA graphs build with "
                              f"cuda_options={{'enable_cuda_graph': '1'}})")
        return None

    def runner(self, feeds: Mapping[str, np.ndarray], mode: str | None = None,
               cuda_graph: bool | None = None) -> Callable[[], Any]:
        """A zero-argument callable running one inference on prepared feeds, for timing loops; mode= and
        cuda_graph= choose its launch on engines with supports_launch_modes (the engine is not changed; those
        runners also take transfers= and spin_wait=, see launch_library)."""
        self.launch_mode(mode, cuda_graph)
        feeds = self.check_feeds(feeds)
        return lambda: self.run(feeds)

    def device_timer(self, mode: str | None = None) -> Any:
        """An object with `start()`/`stop() -> ms` measuring device time of runs launched with `mode`, or None
        when not available."""
        return None

    @abstractmethod
    def profile_layers(self, feeds: Mapping[str, np.ndarray], runs: int = 20, warmup: int = 3,
                       reporter: "Reporter | None" = None) -> "LayerProfile":
        """Per-layer times of the executed graph over `runs` inferences."""

    def layers(self) -> "pd.DataFrame":
        """The executed graph: one row per executed layer (fused layers as the fused node)."""
        return self.model.graph()

    def effective_precision(self, feeds: Mapping[str, np.ndarray] | None = None) -> "PrecisionMix":
        """What each executed layer computes and stores in, measured on one profiled run (on `feeds`, else the
        engine's random feeds), against the precision the engine is named after: `.frame` per layer, `.share` of
        the float work in the named precision, `.summary` one line. A measurement made at build is reused when
        no feeds are given."""
        if feeds is None and self.measured_precision is not None:
            return self.measured_precision
        prof = self.profile_layers(feeds if feeds is not None else self.random_feeds(), runs=1, warmup=0)
        self.measured_precision = prof.effective_precision(self.config.precision)
        return self.measured_precision

    def workspace_files(self) -> dict[str, bytes]:
        """Extra files (name -> bytes, e.g. the plan) stored with the engine in the workspace; none by default."""
        return {}

    def save(self, path: str | Path) -> Path:
        """Write the engine (plan or model) and its metadata JSON beside it."""
        raise NotImplementedError(f"{self.backend_name} engines cannot be saved")

    def close(self) -> None:
        """Release runtime resources now (buffers, sessions)."""
        self._closed = True

    @property
    def size_bytes(self) -> int:
        """Size of the serialized engine (plan, or variant model) in bytes."""
        return int(self.metadata.get("size_bytes", 0))

    # ---- input checking --------------------------------------------------------------------
    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate a feed dict for this engine (names, ranks, value-preserving casts: trtlab.feeds); every run
        path calls it first, so a closed engine is refused here with EngineClosedError."""
        self.require_open()
        return check_feeds(self.inputs, feeds, self.name)

    def require_open(self) -> None:
        """Raise EngineClosedError once close() has run: its runtime objects are gone."""
        if self._closed:
            raise EngineClosedError(f"engine {self.name} was closed (by close(), or released by a sweep or tune "
                                    f"with keep_engines=False); get a new one with Session.build(...) again")

    def random_feeds(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Seeded random inputs of the engine's default (opt) shapes."""
        return self.model.random_inputs(self.input_shapes, seed=seed)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} on {self.device}>"

    def _repr_html_(self) -> str:
        from ..markup import esc
        rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(str(v))}</td></tr>" for k, v in [
            ("backend", self.backend_name), ("precision", self.config.precision), ("device", self.device),
            ("inputs", ", ".join(f"{i.name} {list(i.shape or [])} {i.dtype}" for i in self.inputs)),
            ("outputs", f"{len(self.outputs)}: " + ", ".join(o.name for o in self.outputs[:6])
             + (" ..." if len(self.outputs) > 6 else "")),
            ("size", f"{self.size_bytes / 2**20:.1f} MiB"),
            ("build time", f"{self.metadata.get('build_seconds', 0):.2f} s")])
        return f"<b>Engine</b> {esc(self.name)}<table>{rows}</table>"


class Backend(ABC):
    """Builds engines from variants. `available()` says whether it can run here, and why not."""

    name: str = "?"
    precisions: tuple[str, ...] = ("fp32",)
    # capabilities (subclasses that have them say so; callers ask these, never hasattr)
    has_cache_dir: bool = False  # keeps build/runtime caches in `cache_dir` (the session points it at the workspace)
    has_parser_report: bool = False  # parser_report() says per ONNX node whether the backend's parser takes it
    # how the backend can run fp16 variants (build option fp16_mode); () = one way, its kernels' own
    fp16_modes: tuple[str, ...] = ()
    cache_dir: Path | None = None

    @classmethod
    @abstractmethod
    def available(cls) -> tuple[bool, str]:
        """(True, version) when usable here, else (False, the reason and the fix)."""

    def check_config(self, config: BuildConfig) -> None:
        """Refuse, before any work, a config this backend cannot build (e.g. a precision it lacks kernels for)."""
        from ..errors import PrecisionNotSupportedError
        if config.precision not in self.precisions:
            raise PrecisionNotSupportedError(f"backend {self.name} cannot run precision {config.precision!r}; "
                                             f"it runs {', '.join(self.precisions)}")

    @abstractmethod
    def build(self, model: Model, variant: Variant, config: BuildConfig, reporter: "Reporter") -> Engine:
        """Build an engine for `config` from `variant` (a typed ONNX model)."""

    def load(self, model: Model, variant: Variant, config: BuildConfig, record_dir: Path,
             metadata: dict[str, Any], reporter: "Reporter") -> Engine:
        """Reload an engine cached in the workspace (default: build again from the stored variant)."""
        return self.build(model, variant, config, reporter)

    def parser_report(self, model: Model, variant: Variant | None = None) -> "pd.DataFrame":
        """Per ONNX node of the variant: supported by the backend's parser or not, with the reason."""
        from ..errors import ConfigError
        raise ConfigError(f"parser_report() needs a TensorRT backend; this session uses {self.name}: "
                          f"open it with backend='tensorrt' or 'tensorrt-rtx'")

    def report_precision(self, engine: Engine, reporter: "Reporter") -> None:
        """Say in the build log what a freshly built or loaded engine computes in, where a backend's kernels may
        not run the precision the engine is named after (they measure it into engine.measured_precision);
        nothing by default (strongly typed builds compute in their types)."""

    def reference_options(self, config: BuildConfig) -> dict[str, Any]:
        """Build options that make `config`'s engine compute in the precision it is named after, which the
        accuracy analyses (compare, find_fp32_layers, evaluate) add to every engine they build, so the same
        candidate gives the same error in each; {} where the backend's engine already does (the default)."""
        return {}

    def options(self) -> dict[str, Any]:
        """Every build option this backend accepts (others are refused: config.check_options), as the UI and tune()
        offer them: name -> list of choices, a dict of nested options, or a free value's default (None)."""
        return {}

    def option_value(self, name: str, value: Any) -> Any:
        """`value` of option `name` in the form its declared choices use (a list where it takes several)."""
        return value

    def versions(self) -> dict[str, str]:
        """Library versions that the engine depends on (recorded in its metadata)."""
        return {}
