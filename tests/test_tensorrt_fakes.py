"""A fake of the documented TensorRT Python API and cuda-python's runtime, for the networks trtlab's runtime tests.

Names, signatures and return conventions follow the documentation (tests/test_tensorrt_fake_conformance.py checks
them against the real bindings): cudart calls return `(cudaError_t, *values)`; IExecutionContext.execute_v2(bindings)
/ execute_async_v3(stream_handle) / set_input_shape(name, shape) / set_tensor_address(name, memory) /
set_optimization_profile_async(profile_index, stream_handle) -> bool; ICudaEngine.get_tensor_profile_shape(name,
profile_index) -> [min, opt, max]; IOutputAllocator.reallocate_output_async(tensor_name, memory, size, alignment,
stream) -> pointer and notify_shape(tensor_name, shape), called by TensorRT during execute_async_v3;
IProfiler.report_layer_time(layer_name, ms); EngineInspector.get_engine_information(LayerInformationFormat.JSON).

CUDA is asynchronous here as on a GPU: every stream has a queue; cudaMemcpyAsync, execute_async_v3, cudaEventRecord
and cudaGraphLaunch append to it and nothing runs until cudaStreamSynchronize / cudaEventSynchronize / a cudaStreamQuery that finds it done
(or a call
that synchronises the device: cudaMemcpy, cudaFree, cudaStreamDestroy). A host-to-device copy reads the host array
when it is issued (CUDA stages pageable memory at once); a device-to-host copy writes the host array only when the
stream runs, so output read before synchronising is stale. A network with a data-dependent output drains the
stream inside execute_async_v3, as TensorRT does to learn the size, before it asks the output allocator.

Failure knobs: `FakeCudart(fail_malloc=True)` or `malloc_limit=N` (cudaMalloc of more than N bytes fails), and
`cudart.faults`, a set of TensorRT calls that fail ("deserialize", "create_execution_context", "set_input_shape",
"set_tensor_address", "set_optimization_profile_async", "set_output_allocator", "execute_v2", "execute_async_v3").
Failing TensorRT calls log an error through the Runtime's ILogger first, as TensorRT does.

Plans: b"fake-plan" is a two-layer MLP (input [-1, 4] -> logits [-1, 3], one profile [1,4]..[8,4]);
b"fake-plan:profiles" the same MLP with a second profile [9,4]..[32,4]; b"fake-plan:nonzero" a NonZero (x [-1, 4]
-> idx int64 [2, -1], data-dependent); b"fake-plan:bf16" y = 2x in bfloat16; b"fake-plan:reshape" y = data
reshaped to the values of a host-memory shape tensor; b"fake-plan:chw4" the MLP with a vectorized input format.
"""
from __future__ import annotations

import ctypes
import enum
import itertools
import json
import types
from collections import deque

import ml_dtypes
import numpy as np


# ---- cuda.bindings.runtime -----------------------------------------------------------------------
class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorNoDevice = 100
    cudaErrorNotReady = 600


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


class cudaStreamCaptureMode(enum.IntEnum):
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1


class cudaStream_t(int):
    """cuda-python handles convert with int()."""


OK = (cudaError_t.cudaSuccess,)


class FakeCudart(types.SimpleNamespace):
    """Device memory is a dict of bytearrays; streams are queues run at synchronisation; `calls` logs every call."""

    def __init__(self, devices=(("NVIDIA GeForce RTX 4090", 8, 9),), fail_malloc=False, malloc_limit=None):
        super().__init__(cudaError_t=cudaError_t, cudaMemcpyKind=cudaMemcpyKind,
                         cudaStreamCaptureMode=cudaStreamCaptureMode)
        self.devices = list(devices)
        self.fail_malloc = fail_malloc
        self.malloc_limit = malloc_limit
        self.faults: set[str] = set()
        self.memory: dict[int, bytearray] = {}
        self.streams: set[int] = set()
        self.queues: dict[int, deque] = {}
        self.capturing: dict[int, list] = {}
        self.graphs: dict[int, list] = {}
        self.execs: dict[int, list] = {}
        self.events: dict[int, dict] = {}
        self.polled: dict[int, bool] = {}
        self.calls: list[str] = []
        self.mallocs: list[int] = []
        self._ids = itertools.count(0x1000, 0x1000)

    def _log(self, name):
        self.calls.append(name)

    # the fake's own helpers ----------------------------------------------------------------------
    def enqueue(self, stream, op):
        """Append `op` to the stream's queue (or to the graph being captured on it)."""
        s = int(stream)
        if s in self.capturing:
            self.capturing[s].append(op)
        else:
            self.queues[s].append(op)

    def drain(self, stream, until=None):
        """Run the stream's queued work (up to and including the op that makes `until()` true)."""
        q = self.queues[int(stream)]
        while q and not (until and until()):
            q.popleft()()

    def drain_all(self):
        for s in list(self.queues):
            self.drain(s)

    def pending(self, stream=None):
        """Operations queued and not run yet."""
        return sum(len(q) for s, q in self.queues.items() if stream is None or s == int(stream))

    def is_device(self, ptr):
        return int(ptr) in self.memory

    # the API ------------------------------------------------------------------------------------
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
        if self.fail_malloc or (self.malloc_limit is not None and size > self.malloc_limit):
            return cudaError_t.cudaErrorMemoryAllocation, 0
        ptr = next(self._ids)
        self.memory[ptr] = bytearray(size)
        self.mallocs.append(size)
        return cudaError_t.cudaSuccess, ptr

    def cudaFree(self, devPtr):
        self._log("cudaFree")
        if int(devPtr) not in self.memory:
            return (cudaError_t.cudaErrorInvalidValue,)
        self.drain_all()  # cudaFree synchronises the device
        del self.memory[int(devPtr)]
        return OK

    def _check_copy(self, dst, src, count, kind):
        dev = {cudaMemcpyKind.cudaMemcpyHostToDevice: (dst,), cudaMemcpyKind.cudaMemcpyDeviceToHost: (src,),
               cudaMemcpyKind.cudaMemcpyDeviceToDevice: (dst, src)}[kind]
        return all(int(p) in self.memory and count <= len(self.memory[int(p)]) for p in dev)

    def _copy_op(self, dst, src, count, kind):
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            data = ctypes.string_at(src, count)  # staged when issued

            def op():
                self.memory[int(dst)][:count] = data
        elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
            def op():
                ctypes.memmove(dst, bytes(self.memory[int(src)][:count]), count)
        else:
            def op():
                self.memory[int(dst)][:count] = self.memory[int(src)][:count]
        return op

    def cudaMemcpy(self, dst, src, count, kind):
        self._log("cudaMemcpy")
        if not self._check_copy(dst, src, count, kind):
            return (cudaError_t.cudaErrorInvalidValue,)
        self.drain_all()  # the legacy default stream waits for every blocking stream
        self._copy_op(dst, src, count, kind)()
        return OK

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        self._log("cudaMemcpyAsync")
        if int(stream) not in self.streams or not self._check_copy(dst, src, count, kind):
            return (cudaError_t.cudaErrorInvalidValue,)
        self.enqueue(stream, self._copy_op(dst, src, count, kind))
        return OK

    def cudaStreamCreate(self):
        s = cudaStream_t(next(self._ids))
        self.streams.add(int(s))
        self.queues[int(s)] = deque()
        return cudaError_t.cudaSuccess, s

    def cudaStreamSynchronize(self, stream):
        self._log("cudaStreamSynchronize")
        self.drain(stream)
        return OK

    def cudaStreamQuery(self, stream):
        """cudaErrorNotReady while work is queued, on the first poll of each wait; the next poll finds it done."""
        self._log("cudaStreamQuery")
        s = int(stream)
        if self.queues[s] and not self.polled.get(s):
            self.polled[s] = True
            return (cudaError_t.cudaErrorNotReady,)
        self.drain(s)
        self.polled[s] = False
        return OK

    def cudaStreamDestroy(self, stream):
        self.drain(stream)
        self.streams.remove(int(stream))
        del self.queues[int(stream)]
        return OK

    def cudaStreamBeginCapture(self, stream, mode):
        self._log("cudaStreamBeginCapture")
        self.capturing[int(stream)] = []
        return OK

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
            self.enqueue(stream, op)
        return OK

    def cudaGraphExecDestroy(self, graphExec):
        del self.execs[graphExec]
        return OK

    def cudaGraphDestroy(self, graph):
        del self.graphs[graph]
        return OK

    def cudaEventCreate(self):
        e = next(self._ids)
        self.events[e] = {"done": False, "stream": None}
        return cudaError_t.cudaSuccess, e

    def cudaEventRecord(self, event, stream):
        self._log("cudaEventRecord")
        ev = self.events[int(event)]
        ev.update(done=False, stream=int(stream))
        self.enqueue(stream, lambda: ev.update(done=True))
        return OK

    def cudaEventSynchronize(self, event):
        ev = self.events[int(event)]
        if ev["stream"] is not None:
            self.drain(ev["stream"], until=lambda: ev["done"])
        return OK

    def cudaEventElapsedTime(self, start, end):
        if not (self.events[int(start)]["done"] and self.events[int(end)]["done"]):
            return cudaError_t.cudaErrorNotReady, 0.0
        return cudaError_t.cudaSuccess, 0.25

    def cudaEventDestroy(self, event):
        del self.events[int(event)]
        return OK


# ---- tensorrt ------------------------------------------------------------------------------------
class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8
    INT4 = 9
    FP4 = 10


class TensorFormat(enum.Enum):
    LINEAR = 0
    CHW4 = 3
    HWC = 8


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


NUMPY = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
         DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.FP8: ml_dtypes.float8_e4m3fn,
         DataType.BF16: ml_dtypes.bfloat16, DataType.INT64: np.int64}


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


class IOutputAllocator:
    """Application-implemented: the real class exposes only __init__; subclasses define reallocate_output,
    reallocate_output_async and notify_shape (checked against the documentation by the conformance test)."""

    def __init__(self):
        pass


# ---- the networks behind the fake plans ------------------------------------------------------------
class Tensor(types.SimpleNamespace):
    """name, mode, dtype, shape (-1 dynamic), host (a shape tensor: is_shape_inference_io), format."""

    def __init__(self, name, mode, dtype, shape, host=False, format=TensorFormat.LINEAR):
        super().__init__(name=name, mode=mode, dtype=dtype, shape=tuple(shape), host=host, format=format)


IN, OUT = TensorIOMode.INPUT, TensorIOMode.OUTPUT


class MlpNet:
    """logits = relu(input @ w0) @ w1."""

    layers = ["fc0 + relu0", "fc1"]

    def __init__(self, profiles=(((1, 4), (2, 4), (8, 4)),), input_format=TensorFormat.LINEAR):
        rng = np.random.default_rng(0)
        self.w0 = rng.standard_normal((4, 6)).astype(np.float32)
        self.w1 = rng.standard_normal((6, 3)).astype(np.float32)
        self.tensors = [Tensor("input", IN, DataType.FLOAT, (-1, 4), format=input_format),
                        Tensor("logits", OUT, DataType.FLOAT, (-1, 3))]
        self.profiles = [{"input": list(p)} for p in profiles]

    def output_shape(self, name, shapes, values):
        return (shapes["input"][0], 3)

    def compute(self, x):
        return {"logits": (np.maximum(x["input"] @ self.w0, 0) @ self.w1).astype(np.float32)}


class NonZeroNet:
    """idx = np.nonzero(x > 0) as ONNX NonZero: int64 [rank, count], the count known only from the data."""

    layers = ["greater", "nonzero"]

    def __init__(self):
        self.tensors = [Tensor("x", IN, DataType.FLOAT, (-1, 4)), Tensor("idx", OUT, DataType.INT64, (2, -1))]
        self.profiles = [{"x": [(1, 4), (4, 4), (64, 4)]}]

    def output_shape(self, name, shapes, values):
        return (2, -1)

    def compute(self, x):
        return {"idx": np.stack(np.nonzero(x["x"] > 0)).astype(np.int64)}


class Bf16Net:
    """y = 2 * x, both bfloat16."""

    layers = ["scale"]

    def __init__(self):
        self.tensors = [Tensor("x", IN, DataType.BF16, (-1, 4)), Tensor("y", OUT, DataType.BF16, (-1, 4))]
        self.profiles = [{"x": [(1, 4), (2, 4), (8, 4)]}]

    def output_shape(self, name, shapes, values):
        return shapes["x"]

    def compute(self, x):
        return {"y": (x["x"].astype(np.float32) * 2).astype(ml_dtypes.bfloat16)}


class ReshapeNet:
    """y = data.reshape(shape) where `shape` is an int32 shape tensor in host memory."""

    layers = ["reshape"]

    def __init__(self):
        self.tensors = [Tensor("data", IN, DataType.FLOAT, (-1,)), Tensor("shape", IN, DataType.INT32, (2,),
                                                                          host=True),
                        Tensor("y", OUT, DataType.FLOAT, (-1, -1))]
        self.profiles = [{"data": [(1,), (12,), (64,)], "shape": [(2,), (2,), (2,)]}]

    def output_shape(self, name, shapes, values):
        return tuple(int(v) for v in values["shape"]) if "shape" in values else (-1, -1)

    def compute(self, x):
        return {"y": x["data"].reshape(tuple(int(v) for v in x["shape"]))}


NETS = {b"fake-plan": MlpNet, b"fake-plan:profiles": lambda: MlpNet(profiles=(((1, 4), (2, 4), (8, 4)),
                                                                              ((9, 4), (16, 4), (32, 4)))),
        b"fake-plan:nonzero": NonZeroNet, b"fake-plan:bf16": Bf16Net, b"fake-plan:reshape": ReshapeNet,
        b"fake-plan:chw4": lambda: MlpNet(input_format=TensorFormat.CHW4)}


def _error(logger, msg):
    logger.log(ILogger.Severity.ERROR, msg)


class FakeEngine:
    """ICudaEngine of one of the NETS."""

    def __init__(self, cudart, logger, net):
        self.cudart = cudart
        self.logger = logger
        self.net = net
        self.tensors = {t.name: t for t in net.tensors}
        self.contexts = []
        self.num_io_tensors = len(net.tensors)
        self.num_optimization_profiles = len(net.profiles)

    def get_tensor_name(self, index):
        return self.net.tensors[index].name

    def get_tensor_mode(self, name):
        return self.tensors[name].mode if name in self.tensors else TensorIOMode.NONE

    def get_tensor_dtype(self, name):
        return self.tensors[name].dtype

    def get_tensor_format(self, name):
        return self.tensors[name].format

    def get_tensor_shape(self, name):
        return self.tensors[name].shape

    def is_shape_inference_io(self, name):
        return self.tensors[name].host

    def get_tensor_profile_shape(self, name, profile_index):
        assert self.tensors[name].mode == IN and 0 <= profile_index < self.num_optimization_profiles
        return [tuple(d) for d in self.net.profiles[profile_index][name]]

    def create_execution_context(self, runtime_config=None):
        if "create_execution_context" in self.cudart.faults:
            _error(self.logger, "IExecutionContext creation failed: out of device memory")
            return None
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
        self.active_optimization_profile = 0
        self.shapes = {}
        self.addresses = {}
        self.allocators = {}
        self.profiler = None
        self.executions = []
        self.profiled = []  # per execution: whether an IProfiler was attached
        self.calls = []  # (method, tensor name or argument) of every setter, to count them

    @property
    def _faults(self):
        return self.engine.cudart.faults

    def _fail(self, what, msg):
        _error(self.engine.logger, msg)
        return False

    def set_optimization_profile_async(self, profile_index, stream_handle):
        self.calls.append(("set_optimization_profile_async", profile_index))
        if "set_optimization_profile_async" in self._faults or not (
                0 <= profile_index < self.engine.num_optimization_profiles):
            return self._fail("profile", f"setOptimizationProfileAsync: profile {profile_index} is invalid")
        assert int(stream_handle) in self.engine.cudart.streams
        self.active_optimization_profile = profile_index
        self.shapes = {}  # switching invalidates the input shapes
        return True

    def set_input_shape(self, name, shape):
        self.calls.append(("set_input_shape", name))
        t = self.engine.tensors.get(name)
        if "set_input_shape" in self._faults or t is None or t.mode != IN:
            return self._fail("shape", f"setInputShape: cannot set the shape of {name!r}")
        lo, _, hi = self.engine.get_tensor_profile_shape(name, self.active_optimization_profile)
        if len(shape) != len(t.shape) or any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
            return self._fail("shape", f"setInputShape: {name} {tuple(shape)} is outside profile "
                                       f"{self.active_optimization_profile}")
        self.shapes[name] = tuple(int(d) for d in shape)
        return True

    def _values(self):
        """Values of host shape tensors, read through their addresses as TensorRT does."""
        out = {}
        for t in self.engine.net.tensors:
            if t.host and t.mode == IN and t.name in self.addresses and not self.engine.cudart.is_device(
                    self.addresses[t.name]):
                n = int(np.prod(t.shape)) * np.dtype(NUMPY[t.dtype]).itemsize
                out[t.name] = np.frombuffer(ctypes.string_at(self.addresses[t.name], n), NUMPY[t.dtype])
        return out

    def get_tensor_shape(self, name):
        t = self.engine.tensors[name]
        if t.mode == IN:
            return self.shapes.get(name, t.shape)
        if any(i.mode == IN and i.name not in self.shapes and -1 in i.shape for i in self.engine.net.tensors):
            return t.shape
        return tuple(self.engine.net.output_shape(name, self.shapes, self._values()))

    def set_tensor_address(self, name, memory):
        self.calls.append(("set_tensor_address", name))
        if "set_tensor_address" in self._faults or name not in self.engine.tensors:
            return self._fail("address", f"setTensorAddress: cannot set the address of {name!r}")
        self.addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name):
        return self.addresses.get(name, 0)

    def set_output_allocator(self, name, output_allocator):
        self.calls.append(("set_output_allocator", name))
        t = self.engine.tensors.get(name)
        if "set_output_allocator" in self._faults or t is None or t.mode != OUT:
            return self._fail("allocator", f"setOutputAllocator: {name!r} is not an output")
        self.allocators[name] = output_allocator
        return True

    def get_output_allocator(self, name):
        return self.allocators.get(name)

    # execution --------------------------------------------------------------------------------
    def _dynamic_outputs(self):
        return [t for t in self.engine.net.tensors if t.mode == OUT and -1 in self.get_tensor_shape(t.name)]

    def _ready(self):
        """TensorRT's checks before it runs: shapes set, every tensor given memory of the right kind and size."""
        cudart = self.engine.cudart
        dynamic = {t.name for t in self._dynamic_outputs()}
        for t in self.engine.net.tensors:
            if t.mode == IN and -1 in self.get_tensor_shape(t.name):
                return f"input {t.name!r} has no shape set"
            if t.name in dynamic:
                if t.name not in self.allocators:
                    return f"output {t.name!r} has a data-dependent shape and no output allocator"
                continue
            addr = self.addresses.get(t.name)
            if addr is None:
                return f"tensor {t.name!r} has no address"
            if t.host == cudart.is_device(addr):
                return f"tensor {t.name!r} must be in {'host' if t.host else 'device'} memory"
            if not t.host:
                need = int(np.prod(self.get_tensor_shape(t.name))) * np.dtype(NUMPY[t.dtype]).itemsize
                if len(cudart.memory[addr]) < need:
                    return f"tensor {t.name!r} needs {need} bytes at {addr:#x}, which holds {len(cudart.memory[addr])}"
        return None

    def _read_inputs(self):
        mem = self.engine.cudart.memory
        values = self._values()
        out = {}
        for t in self.engine.net.tensors:
            if t.mode != IN:
                continue
            if t.host:
                out[t.name] = values[t.name]
                continue
            shape = self.shapes.get(t.name, t.shape)
            n = int(np.prod(shape)) * np.dtype(NUMPY[t.dtype]).itemsize
            out[t.name] = np.frombuffer(bytes(mem[self.addresses[t.name]][:n]), NUMPY[t.dtype]).reshape(shape)
        return out

    def _write(self, name, ptr, arr):
        self.engine.cudart.memory[ptr][:arr.nbytes] = arr.tobytes()

    def _compute(self):
        self.profiled.append(self.profiler is not None)
        outs = self.engine.net.compute(self._read_inputs())
        for name, arr in outs.items():
            if name not in self.allocators or name not in {t.name for t in self._dynamic_outputs()}:
                self._write(name, self.addresses[name], arr)
        if self.profiler is not None:
            for k, layer in enumerate(self.engine.net.layers):
                self.profiler.report_layer_time(layer, 0.01 * (k + 1))
        return outs

    def execute_v2(self, bindings):
        self.executions.append(("execute_v2", list(bindings)))
        if "execute_v2" in self._faults:
            return self._fail("execute", "IExecutionContext::executeV2: an illegal memory access was encountered")
        if self._dynamic_outputs():
            return self._fail("execute", "executeV2 does not support data-dependent output shapes; use enqueueV3")
        names = [t.name for t in self.engine.net.tensors]
        assert len(bindings) == len(names), (bindings, names)
        self.addresses.update(zip(names, (int(b) for b in bindings)))
        problem = self._ready()
        if problem:
            return self._fail("execute", f"IExecutionContext::executeV2: {problem}")
        self.engine.cudart.drain_all()  # executeV2 runs on TensorRT's own stream and waits for it
        self._compute()
        return True

    def execute_async_v3(self, stream_handle):
        self.executions.append(("execute_async_v3", stream_handle))
        cudart = self.engine.cudart
        if "execute_async_v3" in self._faults:
            return self._fail("execute", "IExecutionContext::enqueueV3: an illegal memory access was encountered")
        problem = self._ready()
        if problem:
            return self._fail("execute", f"IExecutionContext::enqueueV3: {problem}")
        dynamic = self._dynamic_outputs()
        if not dynamic:
            cudart.enqueue(stream_handle, self._compute)
            return True
        if int(stream_handle) in cudart.capturing:
            return self._fail("execute", "enqueueV3: data-dependent shapes cannot be captured in a CUDA graph")
        # TensorRT learns the size of a data-dependent output on the device and waits for it
        cudart.drain(stream_handle)
        outs = self._compute()
        for t in dynamic:
            arr = outs[t.name]
            alloc = self.allocators[t.name]
            ptr = alloc.reallocate_output_async(t.name, self.addresses.get(t.name, 0), arr.nbytes, 256,
                                                stream_handle)
            if not ptr or not cudart.is_device(ptr) or len(cudart.memory[int(ptr)]) < arr.nbytes:
                return self._fail("execute", f"enqueueV3: the output allocator gave no memory of {arr.nbytes} bytes "
                                             f"for {t.name!r}")
            self.addresses[t.name] = int(ptr)
            alloc.notify_shape(t.name, arr.shape)
            data = arr.tobytes()
            cudart.enqueue(stream_handle, lambda p=int(ptr), d=data: cudart.memory[p].__setitem__(
                slice(0, len(d)), d))
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
    """A fake `tensorrt` module whose Runtime deserializes the NETS' plans."""

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            net = NETS.get(bytes(serialized_engine))
            if "deserialize" in cudart.faults or net is None:
                self.logger.log(ILogger.Severity.ERROR, "IRuntime::deserializeCudaEngine: magic tag mismatch")
                return None
            return FakeEngine(cudart, self.logger, net())

    return types.SimpleNamespace(Runtime=Runtime, ILogger=ILogger, IProfiler=IProfiler,
                                 IOutputAllocator=IOutputAllocator, TensorIOMode=TensorIOMode, DataType=DataType,
                                 TensorFormat=TensorFormat, LayerInformationFormat=LayerInformationFormat,
                                 ComputeCapability=ComputeCapability, __version__=version)
