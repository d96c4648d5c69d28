"""A fake of the documented TensorRT Python API and cuda-python's runtime, just enough to run a two-layer MLP.

Names, signatures and return conventions follow the documentation: cudart calls return `(cudaError_t, *values)`;
IExecutionContext.execute_v2(bindings) / execute_async_v3(stream_handle) -> bool; set_input_shape(name, shape)
-> bool; ICudaEngine.get_tensor_profile_shape(name, profile) -> [min, opt, max]; IProfiler.report_layer_time(
layer_name, ms); EngineInspector.get_engine_information(LayerInformationFormat.JSON) -> str.
"""
from __future__ import annotations

import ctypes
import enum
import itertools
import json
import types

import numpy as np


# ---- cuda.bindings.runtime -----------------------------------------------------------------------
class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorNotReady = 600
    cudaErrorNoDevice = 100


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class cudaStreamCaptureMode(enum.IntEnum):
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1


class cudaStream_t(int):
    """cuda-python handles convert with int()."""


class FakeCudart(types.SimpleNamespace):
    """Device memory is a dict of bytearrays; counters record every call."""

    def __init__(self, devices=(("NVIDIA GeForce RTX 4090", 8, 9),), fail_malloc=False):
        super().__init__(cudaError_t=cudaError_t, cudaMemcpyKind=cudaMemcpyKind,
                         cudaStreamCaptureMode=cudaStreamCaptureMode)
        self.devices = list(devices)
        self.fail_malloc = fail_malloc
        self.memory: dict[int, bytearray] = {}
        self.streams: set[int] = set()
        self.capturing: dict[int, list] = {}
        self.graphs: dict[int, list] = {}
        self.execs: dict[int, list] = {}
        self.calls: list[str] = []
        self._ids = itertools.count(0x1000, 0x1000)

    def _log(self, name):
        self.calls.append(name)

    def cudaGetErrorName(self, error):
        return cudaError_t.cudaSuccess, cudaError_t(error).name.encode()

    def cudaGetDeviceCount(self):
        if not self.devices:
            return cudaError_t.cudaErrorNoDevice, 0
        return cudaError_t.cudaSuccess, len(self.devices)

    def cudaGetDevice(self):
        return cudaError_t.cudaSuccess, 0

    def cudaGetDeviceProperties(self, device):
        name, major, minor = self.devices[device]
        return cudaError_t.cudaSuccess, types.SimpleNamespace(name=name.encode(), major=major, minor=minor,
                                                              totalGlobalMem=24 << 30)

    def cudaMalloc(self, size):
        self._log("cudaMalloc")
        if self.fail_malloc:
            return cudaError_t.cudaErrorMemoryAllocation, 0
        ptr = next(self._ids)
        self.memory[ptr] = bytearray(size)
        return cudaError_t.cudaSuccess, ptr

    def cudaFree(self, devPtr):
        self._log("cudaFree")
        del self.memory[devPtr]
        return (cudaError_t.cudaSuccess,)

    def _copy(self, dst, src, count, kind):
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            self.memory[dst][:count] = ctypes.string_at(src, count)
        else:
            ctypes.memmove(dst, bytes(self.memory[src][:count]), count)

    def cudaMemcpy(self, dst, src, count, kind):
        self._log("cudaMemcpy")
        self._copy(dst, src, count, kind)
        return (cudaError_t.cudaSuccess,)

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        self._log("cudaMemcpyAsync")
        assert int(stream) in self.streams
        self._copy(dst, src, count, kind)
        return (cudaError_t.cudaSuccess,)

    def cudaStreamCreate(self):
        s = cudaStream_t(next(self._ids))
        self.streams.add(int(s))
        return cudaError_t.cudaSuccess, s

    def cudaStreamSynchronize(self, stream):
        self._log("cudaStreamSynchronize")
        return (cudaError_t.cudaSuccess,)

    def cudaStreamQuery(self, stream):
        """cudaErrorNotReady on the first poll of each wait (work still queued), then cudaSuccess."""
        self._log("cudaStreamQuery")
        self.polls = getattr(self, "polls", 0) + 1
        return (cudaError_t.cudaErrorNotReady if self.polls % 2 else cudaError_t.cudaSuccess,)

    def cudaStreamDestroy(self, stream):
        self.streams.remove(int(stream))
        return (cudaError_t.cudaSuccess,)

    def cudaStreamBeginCapture(self, stream, mode):
        self._log("cudaStreamBeginCapture")
        self.capturing[int(stream)] = []
        return (cudaError_t.cudaSuccess,)

    def cudaStreamEndCapture(self, stream):
        self._log("cudaStreamEndCapture")
        g = next(self._ids)
        self.graphs[g] = self.capturing.pop(int(stream))
        return cudaError_t.cudaSuccess, g

    def cudaGraphInstantiate(self, graph, flags):
        self._log("cudaGraphInstantiate")
        e = next(self._ids)
        self.execs[e] = self.graphs[graph]
        return cudaError_t.cudaSuccess, e

    def cudaGraphLaunch(self, graphExec, stream):
        self._log("cudaGraphLaunch")
        for op in self.execs[graphExec]:
            op()
        return (cudaError_t.cudaSuccess,)

    def cudaGraphExecDestroy(self, graphExec):
        del self.execs[graphExec]
        return (cudaError_t.cudaSuccess,)

    def cudaGraphDestroy(self, graph):
        del self.graphs[graph]
        return (cudaError_t.cudaSuccess,)

    def cudaEventCreate(self):
        return cudaError_t.cudaSuccess, next(self._ids)

    def cudaEventRecord(self, event, stream):
        self._log("cudaEventRecord")
        return (cudaError_t.cudaSuccess,)

    def cudaEventSynchronize(self, event):
        return (cudaError_t.cudaSuccess,)

    def cudaEventElapsedTime(self, start, end):
        return cudaError_t.cudaSuccess, 0.25

    def cudaEventDestroy(self, event):
        return (cudaError_t.cudaSuccess,)


# ---- tensorrt ------------------------------------------------------------------------------------
class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class LayerInformationFormat(enum.Enum):
    ONELINE = 0
    JSON = 1


class ComputeCapability(enum.Enum):
    NONE = 0
    CURRENT = 1
    SM75 = 75
    SM80 = 80
    SM86 = 86
    SM89 = 89
    SM120 = 120


class ILogger:
    class Severity(enum.Enum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self):
        pass

    def log(self, severity, msg):
        """Overridden by the application (the fake Runtime calls it), as in TensorRT."""
        raise NotImplementedError


class IProfiler:
    def __init__(self):
        pass

    def report_layer_time(self, layer_name, ms):
        """Overridden by the application (the fake context calls it), as in TensorRT."""
        raise NotImplementedError


class FakeEngine:
    """ICudaEngine of logits = relu(input @ W0) @ W1, input [-1, 4] with profile [1,4]..[8,4]."""

    LAYERS = ["fc0 + relu0", "fc1"]

    def __init__(self, cudart):
        rng = np.random.default_rng(0)
        self.w0 = rng.standard_normal((4, 6)).astype(np.float32)
        self.w1 = rng.standard_normal((6, 3)).astype(np.float32)
        self.cudart = cudart
        self.contexts = []
        self.num_io_tensors = 2

    def get_tensor_name(self, index):
        return ["input", "logits"][index]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name == "input" else TensorIOMode.OUTPUT

    def get_tensor_profile_shape(self, name, profile_index):
        assert name == "input" and profile_index == 0
        return [(1, 4), (2, 4), (8, 4)]

    def create_execution_context(self, runtime_config=None):
        ctx = FakeContext(self)
        ctx.runtime_config = runtime_config
        self.contexts.append(ctx)
        return ctx

    def create_runtime_config(self):
        return FakeRuntimeConfig()

    def create_engine_inspector(self):
        return FakeInspector(self)


class FakeContext:
    def __init__(self, engine):
        self.engine = engine
        self.shapes = {}
        self.addresses = {}
        self.profiler = None
        self.executions = []
        self.profiled = []  # per execution: whether an IProfiler was attached

    def set_input_shape(self, name, shape):
        lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
        if any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        batch = self.shapes.get("input", (-1,))[0]
        return (batch, 4) if name == "input" else (batch, 3)

    def set_tensor_address(self, name, memory):
        self.addresses[name] = memory
        return True

    def _compute(self):
        self.profiled.append(self.profiler is not None)
        mem = self.engine.cudart.memory
        shape = self.shapes["input"]
        n = int(np.prod(shape)) * 4
        x = np.frombuffer(bytes(mem[self.addresses["input"]][:n]), np.float32).reshape(shape)
        y = np.maximum(x @ self.engine.w0, 0) @ self.engine.w1
        mem[self.addresses["logits"]][:y.nbytes] = y.astype(np.float32).tobytes()
        if self.profiler is not None:
            for k, layer in enumerate(FakeEngine.LAYERS):
                self.profiler.report_layer_time(layer, 0.01 * (k + 1))

    def execute_v2(self, bindings):
        self.executions.append(("execute_v2", list(bindings)))
        assert list(bindings) == [self.addresses["input"], self.addresses["logits"]]
        self._compute()
        return True

    def execute_async_v3(self, stream_handle):
        self.executions.append(("execute_async_v3", stream_handle))
        cap = self.engine.cudart.capturing.get(int(stream_handle))
        if cap is not None:
            cap.append(self._compute)  # recorded into the graph, run at launch
        else:
            self._compute()
        return True


class FakeRuntimeCache:
    """IRuntimeCache: deserialize(blob) -> bool (False on mismatch), serialize() -> IHostMemory (a buffer)."""

    def __init__(self):
        self.kernels = []
        self.loaded = None

    def deserialize(self, blob):
        data = bytes(blob)
        if not data.startswith(b"RTXCACHE:"):
            return False
        self.loaded = data
        self.kernels = data[len(b"RTXCACHE:"):].decode().split(",")
        return True

    def serialize(self):
        return memoryview(("RTXCACHE:" + ",".join(self.kernels or ["fc0", "fc1"])).encode())


class FakeRuntimeConfig:
    def __init__(self):
        self.cache = None

    def create_runtime_cache(self):
        return FakeRuntimeCache()

    def set_runtime_cache(self, cache):
        self.cache = cache
        return True


class FakeInspector:
    def __init__(self, engine):
        self.engine = engine
        self.execution_context = None

    def get_engine_information(self, format):
        assert format == LayerInformationFormat.JSON
        fmt = "Row major linear FP32"
        return json.dumps({"Layers": [
            {"Name": "fc0 + relu0", "LayerType": "CaskGemmMatrixMultiply",
             "Inputs": [{"Name": "input", "Dimensions": [2, 4], "Format/Datatype": fmt}],
             "Outputs": [{"Name": "h", "Dimensions": [2, 6], "Format/Datatype": fmt}], "TacticValue": "0x1"},
            {"Name": "fc1", "LayerType": "CaskGemmMatrixMultiply",
             "Inputs": [{"Name": "h", "Dimensions": [2, 6], "Format/Datatype": fmt}],
             "Outputs": [{"Name": "logits", "Dimensions": [2, 3], "Format/Datatype": fmt}], "TacticValue": "0x2"}],
            "Bindings": ["input", "logits"]})


def make_module(cudart, version="10.9.0.34"):
    """A fake `tensorrt` module whose Runtime deserializes b'fake-plan' into the MLP engine."""

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            if bytes(serialized_engine) != b"fake-plan":
                self.logger.log(ILogger.Severity.ERROR, "IRuntime::deserializeCudaEngine: magic tag mismatch")
                return None
            return FakeEngine(cudart)

    return types.SimpleNamespace(Runtime=Runtime, ILogger=ILogger, IProfiler=IProfiler, TensorIOMode=TensorIOMode,
                                 LayerInformationFormat=LayerInformationFormat, ComputeCapability=ComputeCapability,
                                 __version__=version)
