"""TensorRT runtime: deserialize, one execution context per thread, I/O by name, execute vs enqueue, CUDA graphs."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from ...config import BuildConfig
from ...errors import BackendUnavailableError, ConfigError, InputError, PlanError
from ...model import TensorInfo
from ..base import Engine
from . import _import
from .builder import numpy_dtype
from .cuda import DeviceBuffer, DeviceInfo, EventTimer, Stream, check, current_device
from .logger import capture_log, shared_logger
from .plan import check_compatible, metadata_path, read_plan, save_plan

if TYPE_CHECKING:
    import pandas as pd

    from ...tables import LayerProfile
    from ...events import Reporter
    from ...model import Model
    from ...precision.variant import Variant
    from ._import import TrtApi

MODES = ("enqueue", "execute")


def running_device() -> DeviceInfo | None:
    """The GPU this process would run engines on, or None."""
    return current_device()


def require_device(api: "TrtApi") -> DeviceInfo:
    """The GPU to run on, or BackendUnavailableError saying why engines cannot run here."""
    dev = running_device()
    if dev is None:
        raise BackendUnavailableError(f"{api.module_name} engines need an NVIDIA GPU with a working driver and "
                                      f"cuda-python; none was found here. Building works without one "
                                      f"(TensorRT-RTX with compute_capability=); run on a GPU machine")
    if api.is_rtx:
        members = api.module.ComputeCapability.__members__
        if f"SM{dev.compute_capability.replace('.', '')}" not in members or dev.compute_capability == "8.0":
            raise BackendUnavailableError(f"TensorRT-RTX engines do not run on Hopper/data-center GPUs; this GPU is "
                                          f"{dev.name} (compute capability {dev.compute_capability}). Use the "
                                          f"'tensorrt' backend or ONNX Runtime's CUDA provider there")
    return dev


class _Context:
    """One thread's execution context, stream, device buffers and captured CUDA graph."""

    def __init__(self, api: "TrtApi", engine: Any, cudart: Any, cache_blob: bytes | None = None) -> None:
        self.cudart = cudart
        self.ctx, self.runtime_cache = api.create_context(engine, cache_blob)
        if self.ctx is None:
            raise BackendUnavailableError("TensorRT could not create an execution context (out of GPU memory?)")
        self.stream = Stream(cudart)
        self.buffers: dict[str, DeviceBuffer] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.graph: Any = None
        self.graph_exec: Any = None
        self.graph_key: Any = None
        self.timer: EventTimer | None = None

    def buffer(self, name: str, nbytes: int) -> DeviceBuffer:
        buf = self.buffers.get(name)
        if buf is None or buf.nbytes < nbytes:
            if buf is not None:
                buf.free()
            buf = self.buffers[name] = DeviceBuffer(self.cudart, nbytes)
            self.drop_graph()  # addresses changed: a captured graph would use the old ones
        return buf

    def drop_graph(self) -> None:
        if self.graph_exec is not None:
            check(self.cudart.cudaGraphExecDestroy(self.graph_exec), "cudaGraphExecDestroy", self.cudart)
        if self.graph is not None:
            check(self.cudart.cudaGraphDestroy(self.graph), "cudaGraphDestroy", self.cudart)
        self.graph = self.graph_exec = self.graph_key = None

    def close(self) -> None:
        self.drop_graph()
        for buf in self.buffers.values():
            buf.free()
        self.buffers.clear()
        if self.timer is not None:
            self.timer.destroy()
        self.stream.destroy()
        self.ctx = None
        self.runtime_cache = None


class TensorRTEngine(Engine):
    """A TensorRT (or TensorRT-RTX) plan; deserialized on first run, which needs a supported NVIDIA GPU."""

    backend_name = "tensorrt"
    supports_launch_modes = True

    def __init__(self, api: "TrtApi", plan: bytes, metadata: dict[str, Any], config: BuildConfig | None = None,
                 model: "Model | None" = None, variant: "Variant | None" = None, reporter: "Reporter | None" = None,
                 log: str = "") -> None:
        if config is None and metadata.get("config"):
            config = BuildConfig.from_dict(metadata["config"])
        super().__init__(config or BuildConfig(backend=api.family), model, variant, metadata)  # type: ignore[arg-type]
        self.api = api
        self.plan = plan
        self.backend_name = api.family
        self.build_log = log
        self.reporter = reporter
        # the launch run() makes (build options mode=, cuda_graph=); fixed for the engine's life: a runner
        # given its own mode= launches that way without touching what other threads use
        self.mode, self.cuda_graph = "enqueue", False
        self.mode, self.cuda_graph = self._launch(self.config.option("mode", "enqueue"),
                                                  bool(self.config.option("cuda_graph", False)))
        io = metadata.get("io", {"inputs": [], "outputs": []})
        self._inputs = [TensorInfo(t["name"], tuple(d if d >= 0 else None for d in t["shape"]), t["dtype"])
                        for t in io["inputs"]]
        self._outputs = [TensorInfo(t["name"], tuple(d if d >= 0 else None for d in t["shape"]), t["dtype"])
                         for t in io["outputs"]]
        if not self.input_shapes and metadata.get("profile"):
            self.input_shapes = {k: tuple(v[1]) for k, v in metadata["profile"].items()}
        elif not self.input_shapes:
            self.input_shapes = {t.name: tuple(int(d) for d in t.shape) for t in self._inputs
                                 if t.shape is not None and all(d is not None for d in t.shape)}
        self._trt_runtime: Any = None
        self._trt_engine: Any = None
        self._cudart: Any = None
        self._local = threading.local()
        self._contexts: list[_Context] = []
        self._init_lock = threading.Lock()
        # TensorRT-RTX: JIT kernel cache kept between runs, keyed by library version and GPU (set by the backend)
        self.runtime_cache_dir: Path | None = None
        self.runtime_cache_path: Path | None = None

    def _launch(self, mode: str | None = None, cuda_graph: bool | None = None) -> tuple[str, bool]:
        """(mode, cuda_graph) with None meaning the engine's own (mode="execute" alone means no graph: graphs
        are captured from a stream); refuses what TensorRT cannot do."""
        mode = self.mode if mode is None else str(mode)
        graph = (self.cuda_graph and mode == "enqueue") if cuda_graph is None else bool(cuda_graph)
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES} (TensorRT FAQ 8), got {mode!r}")
        if graph and mode != "enqueue":
            raise ConfigError("cuda_graph=True needs mode='enqueue': a CUDA graph is captured from a stream")
        return mode, graph

    def launch_mode(self, mode: str | None = None, cuda_graph: bool | None = None) -> str:
        """'execute', 'enqueue' or 'enqueue+cuda_graph': how runner(feeds, mode, cuda_graph) launches."""
        mode, graph = self._launch(mode, cuda_graph)
        return mode + ("+cuda_graph" if graph else "")

    @property
    def run_mode(self) -> str:
        """How run() and a runner without mode= launch (what a benchmark records as its mode)."""
        return self.launch_mode()

    @classmethod
    def from_plan(cls, api: "TrtApi", plan: bytes, metadata: dict[str, Any], **kw: Any) -> "TensorRTEngine":
        """An engine object for a plan read from disk (load_engine)."""
        return cls(api, plan, metadata, **kw)

    # ---- description -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Readable label."""
        model = self.model.name if self.model is not None else self.metadata.get("model", "plan")
        return f"{model} {self.config.describe()}"

    @property
    def inputs(self) -> list[TensorInfo]:
        """Network inputs (None for dynamic dimensions)."""
        return list(self._inputs)

    @property
    def outputs(self) -> list[TensorInfo]:
        """Network outputs."""
        return list(self._outputs)

    @property
    def size_bytes(self) -> int:
        """Plan size in bytes."""
        return len(self.plan)

    def random_feeds(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Seeded random inputs of the profile's opt shapes."""
        if self.model is not None:
            return super().random_feeds(seed)
        rng = np.random.default_rng(seed)
        out = {}
        for t in self._inputs:
            shape = self.input_shapes[t.name]
            out[t.name] = (rng.standard_normal(shape).astype(t.dtype) if t.dtype.startswith("float")
                           else rng.integers(0, 4, shape).astype(numpy_dtype(t.dtype)))
        return out

    def workspace_files(self) -> dict[str, bytes]:
        """Files Session stores in the workspace engine folder."""
        return {"engine.plan": self.plan}

    def save(self, path: str | Path) -> Path:
        """Write the plan and its metadata JSON (path + '.json')."""
        meta = {k: v for k, v in self.metadata.items() if k != "cache"}
        meta.setdefault("config", self.config.to_dict())
        return save_plan(path, self.plan, meta)

    # ---- deserialization ---------------------------------------------------------------------
    def _engine(self) -> Any:
        self.require_open()
        if self._trt_engine is None:
            with self._init_lock:
                if self._trt_engine is None:
                    dev = require_device(self.api)
                    self._cudart = _import.cuda_runtime()
                    if self.runtime_cache_dir is not None and self.api.is_rtx:
                        safe = "".join(ch if ch.isalnum() else "_" for ch in dev.name)
                        self.runtime_cache_path = Path(self.runtime_cache_dir) / (
                            f"{self.api.module_name}-{self.api.version}-{safe}-sm"
                            f"{dev.compute_capability.replace('.', '')}.runtime-cache")
                    with capture_log(self.reporter) as sink:
                        self._trt_runtime = self.api.module.Runtime(shared_logger(self.api))
                        engine = self._trt_runtime.deserialize_cuda_engine(self.plan)
                    if engine is None:
                        errs = "; ".join(sink.errors()[-3:]) or "no error was logged"
                        raise PlanError(f"TensorRT could not deserialize the plan of {self.name}: {errs}. Rebuild "
                                        f"the engine with this library and GPU")
                    self._trt_engine = engine
        return self._trt_engine

    def _context(self) -> _Context:
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            # TensorRT FAQ 2: contexts are not shared between threads; each thread gets its own
            engine = self._engine()
            blob = None
            if self.runtime_cache_path is not None and self.runtime_cache_path.exists():
                blob = self.runtime_cache_path.read_bytes()
            ctx = _Context(self.api, engine, self._cudart, blob)
            self._local.ctx = ctx
            with self._init_lock:
                self._contexts.append(ctx)
        return ctx

    def profile_range(self, name: str) -> tuple[tuple[int, ...], ...]:
        """(min, opt, max) shapes of a dynamic input in optimization profile 0."""
        return tuple(tuple(int(d) for d in s) for s in self._engine().get_tensor_profile_shape(name, 0))

    # ---- running ---------------------------------------------------------------------------
    def _prepare(self, c: _Context, feeds: Mapping[str, np.ndarray], stream: bool) -> None:
        for t in self._inputs:
            arr = feeds[t.name]
            if t.shape is None or any(d is None for d in t.shape):
                lo, _, hi = self.profile_range(t.name)
                if any(a < l or a > h for a, l, h in zip(arr.shape, lo, hi)):
                    raise InputError(f"{self.name}: input {t.name!r} has shape {list(arr.shape)}, outside the "
                                     f"engine's optimization profile {list(lo)}..{list(hi)}; rebuild with a wider "
                                     f"batch=(min, opt, max) or shapes=")
                if c.shapes.get(t.name) != arr.shape:
                    if not c.ctx.set_input_shape(t.name, tuple(arr.shape)):
                        raise InputError(f"{self.name}: TensorRT refused shape {list(arr.shape)} for {t.name!r}")
                    c.shapes[t.name] = arr.shape
                    c.drop_graph()
            buf = c.buffer(t.name, arr.nbytes)
            c.ctx.set_tensor_address(t.name, buf.ptr)
            buf.upload(arr, c.stream.handle if stream else None)
        for t in self._outputs:
            shape = tuple(c.ctx.get_tensor_shape(t.name))
            nbytes = int(np.prod(shape, dtype=np.int64)) * numpy_dtype(t.dtype).itemsize
            c.ctx.set_tensor_address(t.name, c.buffer(t.name, nbytes).ptr)

    def _bindings(self, c: _Context) -> list[int]:
        eng = self._engine()
        names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        return [c.buffers[n].ptr for n in names]

    def _execute(self, c: _Context, mode: str, cuda_graph: bool) -> None:
        """One inference on prepared buffers: execute (synchronous) or enqueue on the stream (FAQ 8)."""
        if mode == "execute":
            if not c.ctx.execute_v2(self._bindings(c)):
                raise PlanError(f"{self.name}: execute_v2 failed (see the session log)")
            return
        if cuda_graph:
            self._launch_graph(c)
        elif not c.ctx.execute_async_v3(int(c.stream)):
            raise PlanError(f"{self.name}: execute_async_v3 failed (see the session log)")

    def _launch_graph(self, c: _Context) -> None:
        cudart = c.cudart
        key = tuple(sorted(c.shapes.items()))
        if c.graph_exec is None or c.graph_key != key:
            c.drop_graph()
            # one plain enqueue first so TensorRT finishes shape-dependent setup outside the capture
            if not c.ctx.execute_async_v3(int(c.stream)):
                raise PlanError(f"{self.name}: execute_async_v3 failed before CUDA graph capture")
            c.stream.synchronize()
            mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
            check(cudart.cudaStreamBeginCapture(c.stream.handle, mode), "cudaStreamBeginCapture", cudart)
            ok = c.ctx.execute_async_v3(int(c.stream))
            c.graph = check(cudart.cudaStreamEndCapture(c.stream.handle), "cudaStreamEndCapture", cudart)
            if not ok:
                raise PlanError(f"{self.name}: this engine cannot be captured in a CUDA graph; use cuda_graph=False")
            c.graph_exec = check(cudart.cudaGraphInstantiate(c.graph, 0), "cudaGraphInstantiate", cudart)
            c.graph_key = key
        check(cudart.cudaGraphLaunch(c.graph_exec, c.stream.handle), "cudaGraphLaunch", cudart)

    def run(self, feeds: Mapping[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """One inference: copy in, execute or enqueue, copy out. Thread-safe (a context per thread)."""
        feeds = self.check_feeds(feeds)
        c = self._context()
        stream = self.mode == "enqueue"
        self._prepare(c, feeds, stream)
        self._execute(c, self.mode, self.cuda_graph)
        wanted = outputs or [t.name for t in self._outputs]
        unknown = sorted(set(wanted) - {t.name for t in self._outputs})
        if unknown:
            raise InputError(f"{self.name}: outputs {unknown} are not engine outputs; it has "
                             f"{[t.name for t in self._outputs]}")
        result = {}
        for t in self._outputs:
            if t.name not in wanted:
                continue
            arr = np.empty(tuple(c.ctx.get_tensor_shape(t.name)), dtype=numpy_dtype(t.dtype))
            c.buffers[t.name].download(arr, c.stream.handle if stream else None)
            result[t.name] = arr
        if stream:
            c.stream.synchronize()
        return result

    @property
    def launch_library(self) -> tuple[str, str]:
        """(family, version) of the library this engine runs on: its trtexec's benchmark defaults apply."""
        return self.api.family, self.api.version

    def runner(self, feeds: Mapping[str, np.ndarray], mode: str | None = None, cuda_graph: bool | None = None,
               transfers: bool = False, spin_wait: bool = False) -> Callable[[], Any]:
        """Inputs uploaded once; each call runs compute only and waits for it (trtexec --noDataTransfers), or
        with transfers=True also copies the inputs in and the outputs out on the stream (trtexec 10's default).
        spin_wait=True polls the stream (cudaStreamQuery) instead of a blocking synchronise (--useSpinWait).
        mode=/cuda_graph= launch this runner's inferences that way (default: the engine's build options);
        the engine itself is not changed, so runners of different modes can run at once in other threads."""
        mode, graph = self._launch(mode, cuda_graph)
        feeds = self.check_feeds(feeds)
        c = self._context()
        self._prepare(c, feeds, stream=False)
        handle = c.stream.handle if mode == "enqueue" else None
        ins = [(c.buffers[t.name], feeds[t.name]) for t in self._inputs] if transfers else []
        outs = [(c.buffers[t.name], np.empty(tuple(c.ctx.get_tensor_shape(t.name)), numpy_dtype(t.dtype)))
                for t in self._outputs] if transfers else []
        wait = c.stream.spin if spin_wait else c.stream.synchronize

        def once() -> None:
            for buf, arr in ins:
                buf.upload(arr, handle)
            self._execute(c, mode, graph)
            for buf, arr in outs:
                buf.download(arr, handle)
            if mode == "enqueue":
                wait()
        return once

    def device_timer(self, mode: str | None = None) -> Any:
        """CUDA-event timer on this thread's stream for runs launched with `mode` (enqueue only; execute uses
        TensorRT's own stream)."""
        if self._launch(mode)[0] != "enqueue":
            return None
        c = self._context()
        if c.timer is None:
            c.timer = EventTimer(c.cudart, c.stream)
        return c.timer

    def profile_layers(self, feeds: Mapping[str, np.ndarray], runs: int = 20, warmup: int = 3,
                       reporter: "Reporter | None" = None) -> "LayerProfile":
        """IProfiler per-layer times over `runs` synchronous executions (same table as ONNX Runtime)."""
        from ...tables import make_profile
        feeds = self.check_feeds(feeds)
        c = self._context()
        self._prepare(c, feeds, stream=False)
        for _ in range(warmup):
            c.ctx.execute_v2(self._bindings(c))
        profiler = make_profiler(self.api)
        c.ctx.profiler = profiler
        try:
            for i in range(runs):
                if not c.ctx.execute_v2(self._bindings(c)):
                    raise PlanError(f"{self.name}: execute_v2 failed while profiling")
                if reporter:
                    reporter.update(i + 1, runs, "profiling layers")
        finally:
            c.ctx.profiler = None
        info = {}
        try:
            info = {r["name"]: r for r in self.layers().to_dict("records")}
        except Exception:  # layer info is a nicety here; times stand without it
            pass
        rows = []
        for name in profiler.order:
            t = np.asarray(profiler.times[name])
            li = info.get(name, {})
            rows.append({"name": name, "op_type": li.get("type"), "provider": self.api.family,
                         "precision": li.get("precision"), "input_shapes": li.get("input_shapes", []),
                         "output_shapes": li.get("output_shapes", []), "median_ms": float(np.median(t)),
                         "mean_ms": float(t.mean()), "min_ms": float(t.min()), "max_ms": float(t.max()),
                         "count": int(t.size), "fused_from": [] if " + " not in name else name.split(" + ")})
        batch = next((int(a.shape[0]) for a in feeds.values() if a.ndim), None)
        return make_profile(rows, engine=self.name, runs=runs, batch=batch, source=self.api.family,
                            meta={"device": self.device})

    def layers(self) -> "pd.DataFrame":
        """IEngineInspector layer information: fused layers, tactics, formats, precisions (as trtexec's).

        Without a GPU the same table comes from the layer dump TensorRT logged while building this plan."""
        from ...tables import parse_layer_info
        lines = self.metadata.get("build_layers")
        if lines and self._trt_engine is None and running_device() is None:
            from .inspector import oneline_to_layers
            return parse_layer_info({"Layers": oneline_to_layers(lines)}, f"{self.name} build log")
        c = self._context()
        inspector = self._engine().create_engine_inspector()
        inspector.execution_context = c.ctx
        text = inspector.get_engine_information(self.api.module.LayerInformationFormat.JSON)
        return parse_layer_info(json.loads(text), f"{self.name} engine inspector")

    def save_runtime_cache(self) -> Path | None:
        """Write the TensorRT-RTX runtime cache of the first context (JIT-compiled kernels) for the next run."""
        handle = next((c.runtime_cache for c in self._contexts if c.runtime_cache), None)
        if handle is None or self.runtime_cache_path is None:
            return None
        data = self.api.serialize_runtime_cache(handle)
        from ...workspace import atomic_write
        root = Path(self.runtime_cache_dir).parent if self.runtime_cache_dir is not None else None
        atomic_write(self.runtime_cache_path, data, root=root)
        return self.runtime_cache_path

    def close(self) -> None:
        """Save the runtime cache, free every context's buffers, streams and graphs now, then the engine."""
        if self._contexts and not self._closed:
            self.save_runtime_cache()
        with self._init_lock:
            for c in self._contexts:
                c.close()
            self._contexts.clear()
        self._local = threading.local()
        self._trt_engine = None
        self._trt_runtime = None
        super().close()


def make_profiler(api: "TrtApi") -> Any:
    """An IProfiler collecting report_layer_time calls per layer name, in execution order."""

    class LayerTimes(api.module.IProfiler):
        """Per-layer times reported by TensorRT after each profiled execution."""

        def __init__(self) -> None:
            api.module.IProfiler.__init__(self)
            self.times: dict[str, list[float]] = {}
            self.order: list[str] = []

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            if layer_name not in self.times:
                self.order.append(layer_name)
                self.times[layer_name] = []
            self.times[layer_name].append(float(ms))

    return LayerTimes()


def load_engine(path: str | Path, reporter: Any = None) -> Any:
    """Load a plan saved by engine.save(): refuse a truncated plan or one from another library version or GPU."""
    plan, meta = read_plan(path)
    family = meta.get("backend")
    if family not in ("tensorrt", "tensorrt-rtx"):
        raise PlanError(f"{metadata_path(path)} names backend {family!r}; expected 'tensorrt' or 'tensorrt-rtx'")
    api = _import.load_api(family)
    check_compatible(meta, api, running_device(), str(path))
    return TensorRTEngine.from_plan(api, plan, meta, reporter=reporter)
