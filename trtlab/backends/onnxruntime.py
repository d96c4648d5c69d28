"""ONNX Runtime backend: the embedded default (CPU), with the CUDA provider when onnxruntime-gpu and a GPU are present."""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from ..config import BuildConfig
from ..errors import (BackendUnavailableError, BuildError, ConfigError, PrecisionNotSupportedError, RunError,
                      UnsupportedOpsetError)
from ..feeds import summarize_feeds
from ..devices import cuda_device_count
from ..model import Model, TensorInfo
from ..precision.variant import Variant
from .base import Backend, Engine

if TYPE_CHECKING:
    from ..tables import LayerProfile
    from ..events import Reporter

PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                    "tensorrt": "TensorrtExecutionProvider", "dml": "DmlExecutionProvider",
                    "coreml": "CoreMLExecutionProvider", "openvino": "OpenVINOExecutionProvider"}
GRAPH_LEVELS = ("disable", "basic", "extended", "layout", "all")
FP16_MODES = ("native", "faithful")  # build option fp16_mode: see trtlab.backends.ort_fp16


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError(f"onnxruntime is not installed ({exc}): pip install onnxruntime") from None
    return onnxruntime


def provider_names(requested: tuple[str, ...] | list[str] | None) -> list[str]:
    """Full provider names for short aliases; default: CUDA when present, then CPU."""
    ort = _ort()
    available = ort.get_available_providers()
    if not requested:
        return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available and cuda_device_count() > 0
                else []) + ["CPUExecutionProvider"]
    names = [PROVIDER_ALIASES.get(p.lower(), p) for p in requested]
    for n in names:
        if n not in available:
            raise BackendUnavailableError(
                f"ONNX Runtime provider {n} is not available here (available: {', '.join(available)}); "
                + ("install onnxruntime-gpu on a machine with an NVIDIA GPU and driver" if n == "CUDAExecutionProvider"
                   else "install the onnxruntime build that has it"))
    if "CUDAExecutionProvider" in names and cuda_device_count() == 0:
        raise BackendUnavailableError("CUDAExecutionProvider is installed but no NVIDIA GPU is visible: "
                                      "use providers=['cpu'] or run on a GPU machine")
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")  # fallback for nodes the GPU provider lacks, as ORT does
    return names


def _numpy_dtype(ort_type: str) -> str:
    t = ort_type.removeprefix("tensor(").removesuffix(")")
    return {"float": "float32", "double": "float64", "float16": "float16", "bfloat16": "bfloat16",
            "bool": "bool", "string": "object"}.get(t, t)


def _info(arg: Any) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else (d or None) for d in arg.shape) if arg.shape is not None else None
    return TensorInfo(arg.name, shape, _numpy_dtype(arg.type))


class OrtEngine(Engine):
    """An ONNX Runtime InferenceSession over the variant model."""

    backend_name = "onnxruntime"

    def __init__(self, config: BuildConfig, model: Model, variant: Variant, metadata: dict[str, Any],
                 session: Any, session_options: Any, providers: list, provider_options: list,
                 session_model: bytes | None = None, stores: tuple[str, ...] = ()) -> None:
        super().__init__(config, model, variant, metadata)
        self.session = session
        # the model the session runs: the variant, or with fp16_mode="faithful" the variant with fp16 stores
        self.session_model = session_model if session_model is not None else variant.model.SerializeToString()
        self.stores = stores  # the Casts that fp16_mode="faithful" added (a round trip through fp16 per tensor)
        self._session_proto: Any = None
        self._session_options = session_options
        self._providers = providers
        self._provider_options = provider_options
        self._inputs = [_info(a) for a in session.get_inputs()]
        self._outputs = [_info(a) for a in session.get_outputs()]
        self.on_cuda = session.get_providers()[0] == "CUDAExecutionProvider"
        self.io_binding = bool(config.option("io_binding", True)) and self.on_cuda

    @property
    def inputs(self) -> list[TensorInfo]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorInfo]:
        return self._outputs

    @property
    def providers(self) -> list[str]:
        """Providers the session actually uses, in priority order."""
        return self.session.get_providers()

    def run(self, feeds: Mapping[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        feeds = self.check_feeds(feeds)
        names = outputs or [o.name for o in self._outputs]
        try:
            values = self.session.run(names, feeds)
        except Exception as exc:
            raise self._run_error(exc, feeds) from None
        return dict(zip(names, values))

    def _run_error(self, exc: BaseException, feeds: Mapping[str, np.ndarray]) -> RunError:
        """RunError for a failed session.run: the engine, the node ONNX Runtime stopped in (and the innermost
        node of a control-flow chain), its reason and the input shapes."""
        return RunError(f"{self.name}: {ort_failure(str(exc))} (inputs {summarize_feeds(feeds)})")

    @property
    def uses_cuda_graph(self) -> bool:
        """True when built with cuda_options={"enable_cuda_graph": "1"} on the CUDA provider."""
        opts = dict(self.config.option("cuda_options", ()) or ())
        return self.on_cuda and str(opts.get("enable_cuda_graph", "0")).lower() in ("1", "true")

    def fixed_buffer_runner(self, feeds: Mapping[str, np.ndarray], device: str = "cuda") -> Callable[[], Any]:
        """A runner with inputs AND outputs bound to buffers it owns: a captured CUDA graph replays fixed addresses,
        so ORT-allocated outputs (which may move between runs) are not allowed. `runner.outputs` holds them."""
        from ..errors import ConfigError
        from ..model import output_shapes
        ort = _ort()
        feeds = self.check_feeds(feeds)
        binding = self.session.io_binding()
        keep, outputs = [], {}
        for name, arr in feeds.items():
            value = ort.OrtValue.ortvalue_from_numpy(arr, device, 0)
            keep.append(value)
            binding.bind_ortvalue_input(name, value)
        shapes = output_shapes(self.variant.model, feeds)
        for o in self._outputs:
            if shapes.get(o.name) is None:
                raise ConfigError(f"{self.name}: CUDA graphs need a fixed device buffer for output {o.name!r}, but "
                                  f"its shape cannot be derived from the input shapes; drop enable_cuda_graph")
            value = ort.OrtValue.ortvalue_from_shape_and_type(list(shapes[o.name]), np.dtype(o.dtype).type, device, 0)
            outputs[o.name] = value
            binding.bind_ortvalue_output(o.name, value)
        run_bound, sync = self.session.run_with_iobinding, binding.synchronize_outputs

        def run() -> None:
            run_bound(binding)
            sync()
        run.inputs = keep  # type: ignore[attr-defined]  # the OrtValues must live as long as the runner
        run.outputs = outputs  # type: ignore[attr-defined]
        return run

    def runner(self, feeds: Mapping[str, np.ndarray], mode: str | None = None,
               cuda_graph: bool | None = None) -> Callable[[], Any]:
        self.launch_mode(mode, cuda_graph)  # ONNX Runtime has one launch: refuses mode=/cuda_graph=
        if self.uses_cuda_graph:
            return self.fixed_buffer_runner(feeds)
        feeds = self.check_feeds(feeds)
        if not self.io_binding:
            # exactly what a hand-written loop calls (a try costs nothing until it raises)
            run, names = self.session.run, None

            def run_plain() -> Any:
                try:
                    return run(names, feeds)
                except Exception as exc:
                    raise self._run_error(exc, feeds) from None
            return run_plain
        ort = _ort()
        binding = self.session.io_binding()
        for name, arr in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr, "cuda", 0))
        for o in self._outputs:
            binding.bind_output(o.name, "cuda", 0)
        run_bound, sync = self.session.run_with_iobinding, binding.synchronize_outputs
        return lambda: (run_bound(binding), sync())

    def device_timer(self, mode: str | None = None) -> Any:
        if not self.on_cuda:
            return None
        try:
            import cupy  # events on the default stream bracket ORT's synchronous run
        except ImportError:
            return None
        return _CupyTimer(cupy)

    def profile_layers(self, feeds: Mapping[str, np.ndarray], runs: int = 20, warmup: int = 3,
                       reporter: "Reporter | None" = None) -> "LayerProfile":
        from ..tables import parse_ort_profile
        ort = _ort()
        feeds = self.check_feeds(feeds)
        with tempfile.TemporaryDirectory(prefix="trtlab-prof-") as tmp:
            so = _session_options(self.config)
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(tmp, "ort")
            so.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
            sess = ort.InferenceSession(self.session_model, so, providers=self._providers,
                                        provider_options=self._provider_options)
            total = warmup + runs
            for i in range(total):
                try:
                    sess.run(None, feeds)
                except Exception as exc:
                    raise self._run_error(exc, feeds) from None
                if reporter:
                    reporter.update(i + 1, total, "profiling")
            path = sess.end_profiling()
            events = json.loads(Path(path).read_text())
            optimized = None
            opt_path = Path(so.optimized_model_filepath)
            if opt_path.exists():
                import onnx
                optimized = onnx.load(str(opt_path), load_external_data=False)
        from .ort_optimized import coverage
        from ..nodemap import node_costs
        # rows are named by this session's optimised graph (its token names differ from any other session's)
        cover = coverage(self.model.proto, self.session_proto, optimized) if optimized is not None else None
        prof = parse_ort_profile(events, skip_runs=warmup, coverage=cover, optimized=optimized, engine=self.name,
                                 batch=_batch_of(feeds))
        prof.meta["precision"] = self.config.precision
        prof.meta["node_costs"] = node_costs(self.model.proto, {k: tuple(v.shape) for k, v in feeds.items()})
        if self.on_cuda:
            # ORT's release builds time each node on the host; CUDA kernels run asynchronously, so a node's time is
            # mostly its launch cost and the sum is below the measured latency. Say so instead of hiding it.
            prof.meta["timing"] = ("host-side node times: the CUDA provider launches kernels asynchronously, so these "
                                   "measure launch cost, not GPU execution; compare shares with care")
            if reporter:
                reporter.write("warning", prof.meta["timing"], "profile")
        else:
            prof.meta["timing"] = "host time per node (CPU provider: the node's execution time)"
        return prof

    @property
    def session_proto(self) -> Any:
        """The model the session runs (`session_model`) as an onnx.ModelProto."""
        if self._session_proto is None:
            import onnx
            self._session_proto = onnx.load_from_string(self.session_model)
        return self._session_proto

    def optimized_model(self) -> Any:
        """The graph ONNX Runtime runs for this engine (its optimisation level, options and providers), as an
        onnx.ModelProto; `trtlab.backends.ort_optimized.optimized_graph` maps its nodes to the source model."""
        import onnx
        with tempfile.TemporaryDirectory(prefix="trtlab-opt-") as tmp:
            so = _session_options(self.config)
            so.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
            _ort().InferenceSession(self.session_model, so, providers=self._providers,
                                    provider_options=self._provider_options)
            return onnx.load(so.optimized_model_filepath, load_external_data=False)

    def layers(self):
        """The graph ONNX Runtime executes after its optimizations (fused nodes as one row)."""
        from ..model import Model as _M
        return _M(self.optimized_model(), name=self.model.name + " (optimized)").graph()

    def save(self, path: str | Path) -> Path:
        """Save the variant ONNX model (what this backend builds from) and metadata JSON beside it."""
        from ..workspace import atomic_write, write_json
        path = Path(path)
        atomic_write(path, self.variant.model.SerializeToString())
        write_json(Path(str(path) + ".json"), {"config": self.config.to_dict(), **self.metadata})
        return path

    def close(self) -> None:
        self.session = None
        super().close()


class _CupyTimer:
    """Device time with CUDA events on the current stream."""

    def __init__(self, cupy: Any) -> None:
        self._start, self._stop = cupy.cuda.Event(), cupy.cuda.Event()
        self._cupy = cupy

    def start(self) -> None:
        self._start.record()

    def stop(self) -> float:
        self._stop.record()
        self._stop.synchronize()
        return float(self._cupy.cuda.get_elapsed_time(self._start, self._stop))


def _batch_of(feeds: Mapping[str, np.ndarray]) -> int | None:
    for arr in feeds.values():
        return int(arr.shape[0]) if arr.ndim else None
    return None


def _session_options(config: BuildConfig) -> Any:
    ort = _ort()
    so = ort.SessionOptions()
    level = config.option("graph_optimization", "all")
    if level not in GRAPH_LEVELS:
        raise ConfigError(f"graph_optimization={level!r} is not one of {', '.join(GRAPH_LEVELS)}")
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "layout": getattr(ort.GraphOptimizationLevel, "ORT_ENABLE_LAYOUT", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    if config.threads:
        so.intra_op_num_threads = int(config.threads)
    if config.inter_op_threads:
        so.inter_op_num_threads = int(config.inter_op_threads)
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if config.option("cpu_mem_arena", True) is False:
        # the arena keeps a session's peak allocation for its lifetime; streaming analyses turn it off
        so.enable_cpu_mem_arena = False
    # fatal only: every failure ORT would log as an error also raises, and comes back as one BuildError/RunError
    # naming the node (its log would print the same text again, several lines per failed If/Loop level)
    so.log_severity_level = 4
    return so


class OnnxRuntimeBackend(Backend):
    """Builds InferenceSessions; options: graph_optimization, io_binding, cpu_mem_arena, cuda_options (provider
    options), fp16_mode ("native": as ONNX Runtime runs the fp16 variant, which on the CPU provider is mostly
    fp32 kernels between casts; "faithful": every float tensor stored in fp16, see trtlab.backends.ort_fp16)."""

    name = "onnxruntime"
    precisions = ("fp32", "fp16", "bf16", "int8", "int8+fp16")
    fp16_modes = FP16_MODES

    def reference_options(self, config: BuildConfig) -> dict[str, Any]:
        """fp16_mode="faithful" for an fp16 config whose engine runs on the CPU provider (its native fp16 engine
        keeps most activations in fp32), unless the config chooses a mode itself."""
        if "fp16" not in config.precision.split("+") or config.option("fp16_mode") is not None:
            return {}
        return {"fp16_mode": "faithful"} if provider_names(config.providers)[0] == "CPUExecutionProvider" else {}

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            ort = _ort()
        except BackendUnavailableError as exc:
            return False, str(exc)
        return True, f"onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())})"

    def versions(self) -> dict[str, str]:
        return {"onnxruntime": _ort().__version__}

    def options(self) -> dict[str, Any]:
        providers = [p for p, full in PROVIDER_ALIASES.items() if full in _ort().get_available_providers()]
        return {"providers": providers, "graph_optimization": list(GRAPH_LEVELS), "threads": None,
                "io_binding": [True, False], "cpu_mem_arena": [True, False], "fp16_mode": list(FP16_MODES),
                "cuda_options": {"cudnn_conv_algo_search": ["EXHAUSTIVE", "HEURISTIC", "DEFAULT"],
                                 "prefer_nhwc": ["0", "1"], "enable_cuda_graph": ["0", "1"]}}

    def check_config(self, config: BuildConfig) -> None:
        if config.precision == "fp8":
            raise PrecisionNotSupportedError(
                "ONNX Runtime has no FP8 convolution/matmul kernels on the CPU or CUDA providers: build fp8 with "
                "backend='tensorrt' on a Hopper/Ada GPU, or use int8")
        super().check_config(config)

    def build(self, model: Model, variant: Variant, config: BuildConfig, reporter: "Reporter") -> Engine:
        ort = _ort()
        self.check_config(config)
        providers = provider_names(config.providers)
        cuda_opts = dict(config.option("cuda_options", ()) or ())
        if cuda_opts and "CUDAExecutionProvider" not in providers:
            raise ConfigError("cuda_options were given but the CUDA provider is not used: pass providers=['cuda']")
        provider_options = [{k: str(v) for k, v in cuda_opts.items()} if p == "CUDAExecutionProvider" else {}
                            for p in providers]
        so = _session_options(config)
        reporter.update(0, 2, "creating ONNX Runtime session")
        reporter.write("info", f"building {config.describe()} with providers {providers}", "onnxruntime")
        t0 = time.perf_counter()
        data = variant.model.SerializeToString()
        mode = config.option("fp16_mode", "native")
        if mode not in FP16_MODES:
            raise ConfigError(f"fp16_mode={mode!r} is not one of {', '.join(FP16_MODES)}")
        stores: list[str] = []
        if mode == "faithful":
            from .ort_fp16 import store_every_fp16
            stored, stores = store_every_fp16(variant.model)
            session_data = stored.SerializeToString()
            reporter.write("info", f"fp16_mode=faithful: every fp16 tensor stored in fp16 ({len(stores)} Casts "
                                   f"added; fp32 arithmetic inside each node, as TensorRT's fp16 kernels "
                                   f"accumulate in fp32)", "precision")
        else:
            session_data = data
        try:
            session = ort.InferenceSession(session_data, so, providers=providers, provider_options=provider_options)
        except Exception as exc:
            text = str(exc)
            if "opset" in text.lower():
                raise UnsupportedOpsetError(f"{model.name}: ONNX Runtime {ort.__version__} cannot run this "
                                            f"model's opset: {text.splitlines()[-1]}") from None
            if "NOT_IMPLEMENTED" in text or "Could not find an implementation" in text:
                kind = PrecisionNotSupportedError if config.precision != "fp32" else BuildError
                fix = ("ONNX Runtime has almost no bf16 kernels on this provider: build bf16 with backend='tensorrt' "
                       "(or 'tensorrt-rtx') on an Ampere or newer GPU" if config.precision == "bf16" else
                       "pin that node to fp32 (fp32_layers=[...]) or use another provider")
                raise kind(f"{model.name} ({config.precision}): ONNX Runtime {ort.__version__} with "
                           f"{providers[0]} lacks a kernel: {text.splitlines()[-1].strip()}. {fix}") from None
            raise BuildError(f"{model.name}: ONNX Runtime could not create a session for {config.describe()}: "
                             f"{text.splitlines()[-1].strip()}") from None
        seconds = time.perf_counter() - t0
        reporter.update(2, 2, "session ready")
        used = session.get_providers()
        device = "CPU"
        if used[0] == "CUDAExecutionProvider":
            from ..devices import gpu_names
            names = gpu_names()
            device = names[0] if names else "CUDA GPU"
        metadata = {"backend": self.name, "versions": self.versions(), "providers": used, "device": device,
                    "build_seconds": seconds, "size_bytes": len(data), "built_at": time.time()}
        reporter.write("info", f"session ready in {seconds:.2f} s on {device} ({used[0]})", "onnxruntime")
        return OrtEngine(config, model, variant, metadata, session, so, providers, provider_options,
                         session_data, tuple(stores))

    def report_precision(self, engine: Engine, reporter: "Reporter") -> None:
        """On the CPU provider, measure what a non-fp32 engine's layers compute in (one profiled run on its random
        feeds) and say it in the build log: a warning when most of its float work is not in the precision it is
        named after (the CPU provider runs most fp16 nodes as fp32 kernels between casts)."""
        if engine.config.precision == "fp32" or engine.metadata.get("providers", [""])[0] != "CPUExecutionProvider":
            return
        measure_precision(engine, reporter)


def measure_precision(engine: Engine, reporter: "Reporter") -> None:
    """Measure what the engine's layers compute in (one profiled run on its random feeds) and say it in the
    build log: a warning when most of its float work is not in the precision it is named after."""
    from ..errors import TrtlabError
    try:
        mix = engine.effective_precision()
    except TrtlabError as exc:
        reporter.write("info", f"effective precision not measured at build ({exc}); "
                               f"engine.effective_precision(feeds) measures it on your inputs", "precision")
        return
    engine.metadata["effective_precision"] = mix.to_dict()
    if mix.faithful:
        reporter.write("info", mix.summary, "precision")
    else:
        reporter.write("warning", mix.summary + ("; its error is below an fp16 GPU engine's and its speed is fp32 "
                                                 "speed plus casts: build with fp16_mode='faithful' for fp16 "
                                                 "numbers (the accuracy analyses do)" if "fp16" in mix.named else ""),
                       "precision")


_NODE = re.compile(r"running (\S+) node\. Name:'([^']*)'")


def ort_failure(message: str) -> str:
    """"ONNX Runtime failed in If node 'If_0' (inside it: LSTM node '.../LSTM'): Input X must have 3 dimensions":
    ORT's error text with the nodes it names pulled to the front, one line."""
    text = " ".join(message.split())
    nodes = _NODE.findall(text)
    reason = text.rsplit("Status Message: ", 1)[-1] if "Status Message: " in text else \
        re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    if not nodes:
        return f"ONNX Runtime failed: {reason}"
    (op, name), (inner_op, inner) = nodes[0], nodes[-1]
    where = f"{op} node {name!r}" + (f" (inside it: {inner_op} node {inner!r})" if len(nodes) > 1 else "")
    return f"ONNX Runtime failed in {where}: {reason}"
