"""TensorRT runtime: deserialize, one execution context per thread and optimization profile, I/O read from the
engine, output allocator for data-dependent shapes, execute vs enqueue, CUDA graphs."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from ...config import BuildConfig
from ...errors import BackendUnavailableError, ConfigError, InputError, PlanError, RunError, TrtlabError
from ...feeds import feed_dtype, summarize_feeds
from ...model import TensorInfo
from ..base import Engine
from . import _import
from .builder import numpy_dtype
from .cuda import DeviceBuffer, DeviceInfo, EventTimer, Stream, check, current_device
from .engine_io import IOTensor, check_metadata, read_io, read_profiles, select_profile, to_engine
from .logger import capture_log, error_mark, errors_since, shared_logger
from .outputs import make_output_allocator
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
    _import.cuda_runtime()  # a missing or too old cuda-python says so itself
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
    """One thread's execution context for one optimization profile: its stream, device buffers, host buffers of
    shape tensors, output allocator, the shapes and addresses last given to TensorRT, and a captured CUDA graph."""

    def __init__(self, api: "TrtApi", engine: Any, cudart: Any, profile: int = 0,
                 cache_blob: bytes | None = None) -> None:
        self.api = api
        self.cudart = cudart
        self.profile = profile
        self.ctx, self.runtime_cache = api.create_context(engine, cache_blob)
        if self.ctx is None:
            raise BackendUnavailableError("TensorRT could not create an execution context (out of GPU memory?)")
        self.stream = Stream(cudart)
        self.buffers: dict[str, DeviceBuffer] = {}
        self.host: dict[str, np.ndarray] = {}  # shape tensors: TensorRT reads (writes) them in host memory
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.allocated: set[str] = set()  # outputs sized by the output allocator
        self.allocator: Any = None
        self.staged: list[np.ndarray] = []  # host arrays of copies in flight: alive until the stream is synchronised
        self.graph: Any = None
        self.graph_exec: Any = None
        self.graph_key: Any = None
        self.timer: EventTimer | None = None

    def buffer(self, name: str, nbytes: int) -> DeviceBuffer:
        """The device buffer of `name`, reallocated only when it is too small."""
        buf = self.buffers.get(name)
        if buf is None or buf.nbytes < nbytes:
            if buf is not None:
                buf.free()
                del self.buffers[name]
            buf = self.buffers[name] = DeviceBuffer(self.cudart, nbytes)
        return buf

    def host_array(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The host buffer of shape tensor `name`, kept between runs so its address stays put."""
        arr = self.host.get(name)
        if arr is None or arr.shape != shape or arr.dtype != dtype:
            arr = self.host[name] = np.zeros(shape, dtype)
        return arr

    def set_address(self, name: str, ptr: int, where: str) -> None:
        """set_tensor_address, only when the address changed (a captured graph then is stale)."""
        if self.addresses.get(name) == ptr:
            return
        mark = error_mark()
        if not self.ctx.set_tensor_address(name, ptr):
            raise RunError(f"{where}: TensorRT refused the address of tensor {name!r}{logged(mark)}")
        self.addresses[name] = ptr
        self.drop_graph()

    def set_shape(self, name: str, shape: tuple[int, ...], where: str) -> None:
        """set_input_shape, only when the shape changed."""
        if self.shapes.get(name) == shape:
            return
        mark = error_mark()
        if not self.ctx.set_input_shape(name, shape):
            raise RunError(f"{where}: TensorRT refused shape {list(shape)} for input {name!r} in optimization "
                           f"profile {self.profile}{logged(mark)}")
        self.shapes[name] = shape
        self.drop_graph()

    def use_allocator(self, name: str, where: str) -> None:
        """Hand output `name` to the output allocator (once)."""
        if name in self.allocated:
            return
        if self.allocator is None:
            self.allocator = make_output_allocator(self.api, self.cudart)
        mark = error_mark()
        if not self.ctx.set_output_allocator(name, self.allocator):
            raise RunError(f"{where}: TensorRT refused an output allocator for output {name!r}{logged(mark)}")
        self.allocated.add(name)

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
        if self.allocator is not None:
            self.allocator.free()
        if self.timer is not None:
            self.timer.destroy()
        self.stream.destroy()
        self.host.clear()
        self.staged.clear()
        self.ctx = None
        self.runtime_cache = None


def logged(mark: int) -> str:
    """': <the errors TensorRT logged since mark>' or a pointer to the session log."""
    errs = errors_since(mark)[-3:]
    return f": {'; '.join(errs)}" if errs else " (TensorRT logged no error; see the session log)"


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
        # what the metadata says until the plan is deserialised; then what the engine says (refusing a mismatch)
        io = metadata.get("io") or {}
        self._inputs = [TensorInfo(t["name"], tuple(d if d >= 0 else None for d in t["shape"]), t["dtype"])
                        for t in io.get("inputs", [])]
        self._outputs = [TensorInfo(t["name"], tuple(d if d >= 0 else None for d in t["shape"]), t["dtype"])
                         for t in io.get("outputs", [])]
        if not self.input_shapes and metadata.get("profile"):
            self.input_shapes = {k: tuple(v[1]) for k, v in metadata["profile"].items()}
        elif not self.input_shapes:
            self.input_shapes = {t.name: tuple(int(d) for d in t.shape) for t in self._inputs
                                 if t.shape is not None and all(d is not None for d in t.shape)}
        self._trt_runtime: Any = None
        self._trt_engine: Any = None
        self._io: list[IOTensor] = []  # read from the deserialised engine, in its order
        self._profiles: list[dict[str, Any]] = [{}]
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
        """Seeded random inputs of the profile's opt shapes (float32 for bfloat16/float8 inputs, as feeds take)."""
        if self.model is not None:
            return super().random_feeds(seed)
        rng = np.random.default_rng(seed)
        out = {}
        for t in self._inputs:
            shape = self.input_shapes[t.name]
            dtype = feed_dtype(t.dtype) or numpy_dtype(t.dtype)
            out[t.name] = (rng.standard_normal(shape).astype(dtype) if dtype.kind == "f"
                           else rng.integers(0, 4, shape).astype(dtype))
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
                        try:
                            engine = self._trt_runtime.deserialize_cuda_engine(self.plan)
                        except Exception as exc:  # the bindings raise on bytes they cannot take at all
                            sink.write("error", f"{type(exc).__name__}: {exc}")
                            engine = None
                    if engine is None:
                        errs = "; ".join(sink.errors()[-3:]) or "no error was logged"
                        raise PlanError(f"TensorRT could not deserialize the plan of {self.name}: {errs}. Rebuild "
                                        f"the engine with this library and GPU")
                    io = read_io(engine, f"plan of {self.name}")
                    check_metadata(io, self.metadata.get("io"), f"plan of {self.name}")
                    self._io = io
                    self._profiles = read_profiles(engine, io)
                    info = [TensorInfo(t.name, tuple(d if d >= 0 else None for d in t.shape), t.dtype) for t in io]
                    self._inputs = [i for i, t in zip(info, io) if t.is_input]
                    self._outputs = [i for i, t in zip(info, io) if not t.is_input]
                    self._trt_engine = engine
        return self._trt_engine

    def _context(self, profile: int = 0) -> _Context:
        """This thread's context for optimization `profile` (TensorRT FAQ 2: contexts are not shared between
        threads; each profile has its own, selected once when it is made)."""
        ctxs = getattr(self._local, "ctxs", None)
        if ctxs is None:
            ctxs = self._local.ctxs = {}
        ctx = ctxs.get(profile)
        if ctx is None:
            engine = self._engine()
            blob = None
            if self.runtime_cache_path is not None and self.runtime_cache_path.exists():
                blob = self.runtime_cache_path.read_bytes()
            ctx = _Context(self.api, engine, self._cudart, profile, blob)
            with self._init_lock:
                self._contexts.append(ctx)
            if len(self._profiles) > 1:
                mark = error_mark()
                if not ctx.ctx.set_optimization_profile_async(profile, int(ctx.stream)):
                    raise RunError(f"{self.name}: TensorRT refused optimization profile {profile} for a new "
                                   f"execution context{logged(mark)}")
                ctx.stream.synchronize()
            ctxs[profile] = ctx
        self._local.current = ctx
        return ctx

    def _context_for(self, feeds: Mapping[str, np.ndarray]) -> _Context:
        """The context of the first optimization profile whose ranges hold the feeds' shapes."""
        self._engine()
        shapes = {t.name: tuple(feeds[t.name].shape) for t in self._io if t.is_input and t.name in feeds}
        return self._context(select_profile(self._profiles, shapes, self.name))

    def profiles(self) -> list[dict[str, tuple[tuple[int, ...], ...]]]:
        """Per optimization profile, the (min, opt, max) shapes of each dynamic input, read from the engine."""
        self._engine()
        return [dict(p) for p in self._profiles]

    # ---- running ---------------------------------------------------------------------------
    def _prepare(self, c: _Context, feeds: Mapping[str, np.ndarray], stream: bool) -> None:
        """Shapes, addresses and input copies for one run; TensorRT is told only what changed."""
        handle = c.stream.handle if stream else None
        for t in self._io:
            if not t.is_input:
                continue
            arr = to_engine(feeds[t.name], t, self.name)
            if t.host:
                host = c.host_array(t.name, arr.shape, t.numpy)
                np.copyto(host, arr)
                if t.dynamic:
                    c.set_shape(t.name, tuple(arr.shape), self.name)
                c.set_address(t.name, host.ctypes.data, self.name)
                continue
            if t.dynamic:
                c.set_shape(t.name, tuple(arr.shape), self.name)
            buf = c.buffer(t.name, arr.nbytes)
            c.set_address(t.name, buf.ptr, self.name)
            buf.upload(arr, handle)
            if stream:
                c.staged.append(arr)
        for t in self._io:
            if t.is_input:
                continue
            shape = tuple(int(d) for d in c.ctx.get_tensor_shape(t.name))
            if any(d < 0 for d in shape):
                c.use_allocator(t.name, self.name)
            elif t.host:
                c.set_address(t.name, c.host_array(t.name, shape, t.numpy).ctypes.data, self.name)
            else:
                nbytes = int(np.prod(shape, dtype=np.int64)) * t.numpy.itemsize
                c.set_address(t.name, c.buffer(t.name, nbytes).ptr, self.name)

    def _check_launch(self, c: _Context, mode: str, cuda_graph: bool) -> None:
        if c.allocated and (mode == "execute" or cuda_graph):
            names = sorted(c.allocated)
            raise ConfigError(f"{self.name}: output(s) {names} have a data-dependent shape, which TensorRT sizes "
                              f"through an output allocator during execute_async_v3 only and which a CUDA graph "
                              f"cannot replay: run with mode='enqueue', cuda_graph=False")

    def _bindings(self, c: _Context) -> list[int]:
        return [c.addresses[t.name] for t in self._io]

    def _execute(self, c: _Context, mode: str, cuda_graph: bool, feeds: Mapping[str, np.ndarray]) -> None:
        """One inference on prepared buffers: execute (synchronous) or enqueue on the stream (FAQ 8)."""
        mark = error_mark()
        call = "execute_v2" if mode == "execute" else "execute_async_v3"
        try:
            if mode == "execute":
                ok = c.ctx.execute_v2(self._bindings(c))
            elif cuda_graph:
                self._launch_graph(c, feeds)
                return
            else:
                ok = c.ctx.execute_async_v3(int(c.stream))
        except TrtlabError:
            raise
        except Exception as exc:  # the bindings raise on arguments they cannot convert
            raise RunError(f"{self.name}: {call} raised {type(exc).__name__}: {exc} (inputs "
                           f"{summarize_feeds(feeds)})") from None
        if not ok:
            raise self._run_error(c, call, mark, feeds)

    def _run_error(self, c: _Context, call: str, mark: int, feeds: Mapping[str, np.ndarray]) -> RunError:
        why = c.allocator.failure if c.allocator is not None and c.allocator.failure else ""
        return RunError(f"{self.name}: {call} failed in optimization profile {c.profile}{logged(mark)}"
                        + (f"; {why}" if why else "") + f" (inputs {summarize_feeds(feeds)})")

    def _launch_graph(self, c: _Context, feeds: Mapping[str, np.ndarray]) -> None:
        cudart = c.cudart
        key = tuple(sorted(c.shapes.items()))
        if c.graph_exec is None or c.graph_key != key:
            c.drop_graph()
            # one plain enqueue first so TensorRT finishes shape-dependent setup outside the capture
            mark = error_mark()
            if not c.ctx.execute_async_v3(int(c.stream)):
                raise self._run_error(c, "execute_async_v3 (before CUDA graph capture)", mark, feeds)
            c.stream.synchronize()
            mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
            check(cudart.cudaStreamBeginCapture(c.stream.handle, mode), "cudaStreamBeginCapture", cudart)
            ok = c.ctx.execute_async_v3(int(c.stream))
            c.graph = check(cudart.cudaStreamEndCapture(c.stream.handle), "cudaStreamEndCapture", cudart)
            if not ok:
                raise RunError(f"{self.name}: this engine cannot be captured in a CUDA graph{logged(mark)}; use "
                               f"cuda_graph=False")
            c.graph_exec = check(cudart.cudaGraphInstantiate(c.graph, 0), "cudaGraphInstantiate", cudart)
            c.graph_key = key
        check(cudart.cudaGraphLaunch(c.graph_exec, c.stream.handle), "cudaGraphLaunch", cudart)

    def _output(self, c: _Context, t: IOTensor) -> tuple[tuple[int, ...], DeviceBuffer | None]:
        """(shape, device buffer) of an output after the run: the allocator's for data-dependent ones."""
        if t.name in c.allocated:
            shape = c.allocator.shapes.get(t.name)
            if shape is None or t.name not in c.allocator.buffers:
                raise RunError(f"{self.name}: TensorRT did not report the shape of data-dependent output "
                               f"{t.name!r} (IOutputAllocator.notify_shape was not called)")
            return shape, c.allocator.buffers[t.name]
        return tuple(int(d) for d in c.ctx.get_tensor_shape(t.name)), None if t.host else c.buffers[t.name]

    def run(self, feeds: Mapping[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """One inference: copy in, execute or enqueue, copy out, synchronise, return. Thread-safe (a context per
        thread and optimization profile)."""
        self._engine()
        feeds = self.check_feeds(feeds)
        wanted = outputs or [t.name for t in self._outputs]
        unknown = sorted(set(wanted) - {t.name for t in self._outputs})
        if unknown:
            raise InputError(f"{self.name}: outputs {unknown} are not engine outputs; it has "
                             f"{[t.name for t in self._outputs]}")
        c = self._context_for(feeds)
        stream = self.mode == "enqueue"
        self._prepare(c, feeds, stream)
        self._check_launch(c, self.mode, self.cuda_graph)
        self._execute(c, self.mode, self.cuda_graph, feeds)
        result, host = {}, []
        for t in self._io:
            if t.is_input or t.name not in wanted:
                continue
            shape, buf = self._output(c, t)
            arr = result[t.name] = np.empty(shape, dtype=t.numpy)
            if buf is None:
                host.append(t.name)
            else:
                buf.download(arr, c.stream.handle if stream else None)
        if stream:
            c.stream.synchronize()  # the copies above complete here: nothing is read before
        c.staged.clear()
        for name in host:
            np.copyto(result[name], c.host[name])
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
        self._engine()
        feeds = self.check_feeds(feeds)
        c = self._context_for(feeds)
        self._prepare(c, feeds, stream=False)
        self._check_launch(c, mode, graph)
        handle = c.stream.handle if mode == "enqueue" else None
        # transfers: the same bytes run() copies (bf16/fp8 already converted); data-dependent outputs are copied
        # from the allocator's buffer at the size of each run
        ins = [(c.buffers[t.name], to_engine(feeds[t.name], t, self.name)) for t in self._io
               if t.is_input and not t.host] if transfers else []
        outs = [(c.buffers[t.name], np.empty(tuple(int(d) for d in c.ctx.get_tensor_shape(t.name)), t.numpy))
                for t in self._io if not t.is_input and not t.host and t.name not in c.allocated] if transfers else []
        dynamic = [t for t in self._io if t.name in c.allocated] if transfers else []
        wait = c.stream.spin if spin_wait else c.stream.synchronize

        def once() -> None:
            for buf, arr in ins:
                buf.upload(arr, handle)
            self._execute(c, mode, graph, feeds)
            for buf, arr in outs:
                buf.download(arr, handle)
            landing = []
            for t in dynamic:
                shape, buf = self._output(c, t)
                landing.append(np.empty(shape, t.numpy))
                buf.download(landing[-1], handle)
            if mode == "enqueue":
                wait()
        return once

    def device_timer(self, mode: str | None = None) -> Any:
        """CUDA-event timer on the stream of this thread's last runner (or run) for runs launched with `mode`
        (enqueue only; execute uses TensorRT's own stream)."""
        if self._launch(mode)[0] != "enqueue":
            return None
        c = getattr(self._local, "current", None) or self._context()
        if c.timer is None:
            c.timer = EventTimer(c.cudart, c.stream)
        return c.timer

    def profile_layers(self, feeds: Mapping[str, np.ndarray], runs: int = 20, warmup: int = 3,
                       reporter: "Reporter | None" = None) -> "LayerProfile":
        """IProfiler per-layer times over `runs` synchronous executions (same table as ONNX Runtime)."""
        from ...nodemap import node_costs
        from ...tables import fused_nodes, make_profile
        self._engine()
        feeds = self.check_feeds(feeds)
        c = self._context_for(feeds)
        self._prepare(c, feeds, stream=False)
        self._check_launch(c, "execute", False)
        for _ in range(warmup):
            self._execute(c, "execute", False, feeds)
        profiler = make_profiler(self.api)
        c.ctx.profiler = profiler
        try:
            for i in range(runs):
                self._execute(c, "execute", False, feeds)
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
                         "count": int(t.size),
                         "fused_from": li["fused_from"] if "fused_from" in li else fused_nodes(name, {})})
        batch = next((int(a.shape[0]) for a in feeds.values() if a.ndim), None)
        return make_profile(rows, engine=self.name, runs=runs, batch=batch, source=self.api.family,
                            meta={"device": self.device, **({} if self.model is None else {"node_costs": node_costs(
                                self.model.proto, {k: tuple(v.shape) for k, v in feeds.items()})})})

    def layers(self) -> "pd.DataFrame":
        """IEngineInspector layer information: fused layers, tactics, formats, precisions (as trtexec's).

        Without a GPU the same table comes from the layer dump TensorRT logged while building this plan. Each
        layer's `fused_from` names the source model's nodes it covers (`trtlab.tables.fold_layers`)."""
        from ...tables import fold_layers, parse_layer_info
        lines = self.metadata.get("build_layers")
        if lines and self._trt_engine is None and running_device() is None:
            from .inspector import oneline_to_layers
            table = parse_layer_info({"Layers": oneline_to_layers(lines)}, f"{self.name} build log")
        else:
            c = self._context()
            inspector = self._engine().create_engine_inspector()
            inspector.execution_context = c.ctx
            text = inspector.get_engine_information(self.api.module.LayerInformationFormat.JSON)
            table = parse_layer_info(json.loads(text), f"{self.name} engine inspector")
        if self.model is None:  # a plan loaded on its own (load_engine): names as TensorRT gives them
            return table
        return fold_layers(table, self.model.proto, self.variant.model if self.variant is not None else None)

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
