"""The runtime's CUDA side for real (cuda-python on an NVIDIA GPU): device query, buffers, streams, events, CUDA graph
capture, CudaError names, and the plumbing around TensorRT calls: profile selection and switch, shape tensors in
host memory, the output allocator growing real device buffers, bf16 bytes through device memory, stream ordering.

TensorRT itself is stood in for (full TensorRT cannot be installed on the GPU machines here): `CudaEngine` serves
the fake's networks (tests/test_tensorrt_fakes.py: the same I/O, profiles and results) with real CUDA memory. An
identity network copies its input to its output device to device on the stream (capturable in a CUDA graph); the
others wait for the stream, read their inputs from the device, compute on the host and write their outputs back
with cudaMemcpyAsync on the stream, asking the output allocator for memory first where the shape is data-dependent,
as TensorRT does. Skips without cuda-python or a GPU; benchmarks/gpu_trt_runtime.py prints figures from the same
stand-ins."""
from __future__ import annotations

import ctypes
import types

import numpy as np
import pytest

cudart = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (cuda.bindings) is not installed")

import test_tensorrt_fakes as fakes  # noqa: E402
from trtlab.backends.tensorrt._import import TrtApi  # noqa: E402
from trtlab.backends.tensorrt.builder import dtype_name  # noqa: E402
from trtlab.backends.tensorrt.cuda import DeviceBuffer, EventTimer, Stream, check  # noqa: E402
from trtlab.backends.tensorrt.runtime import TensorRTEngine, require_device, running_device  # noqa: E402
from trtlab.config import BuildConfig  # noqa: E402
from trtlab.errors import BackendUnavailableError, CudaError, InputError  # noqa: E402

DEVICE = running_device()
pytestmark = pytest.mark.skipif(DEVICE is None, reason="no NVIDIA GPU visible to cuda-python")
H2D, D2H = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
D2D = cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice


class IdentityNet:
    """y = x, float32, one profile [1,4]..[64,4]: the device-to-device copy is the whole network."""

    layers = ["copy"]
    d2d = {"y": "x"}

    def __init__(self):
        self.tensors = [fakes.Tensor("x", fakes.IN, fakes.DataType.FLOAT, (-1, 4)),
                        fakes.Tensor("y", fakes.OUT, fakes.DataType.FLOAT, (-1, 4))]
        self.profiles = [{"x": [(1, 4), (4, 4), (64, 4)]}]

    def output_shape(self, name, shapes, values):
        return shapes["x"]


NETS = {"identity": IdentityNet, "mlp": fakes.MlpNet, "profiles": fakes.NETS[b"fake-plan:profiles"],
        "nonzero": fakes.NonZeroNet, "bf16": fakes.Bf16Net, "reshape": fakes.ReshapeNet}


def _nbytes(shape, dtype):
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(fakes.NUMPY[dtype]).itemsize


class CudaContext:
    """IExecutionContext stand-in over real device memory (names and returns as the fake's, checked against the
    bindings by the conformance test)."""

    def __init__(self, engine):
        self.engine = engine
        self.net = engine.net
        self.active_optimization_profile = 0
        self.shapes, self.addresses, self.allocators = {}, {}, {}
        self.profiler = None
        self.calls, self.keep = [], []
        self.executions = 0

    def set_optimization_profile_async(self, profile_index, stream_handle):
        self.calls.append(("set_optimization_profile_async", profile_index))
        if not 0 <= profile_index < len(self.net.profiles):
            return False
        self.active_optimization_profile, self.shapes = profile_index, {}
        return True

    def set_input_shape(self, name, shape):
        self.calls.append(("set_input_shape", name))
        lo, _, hi = self.net.profiles[self.active_optimization_profile][name]
        if len(shape) != len(lo) or any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
            return False
        self.shapes[name] = tuple(int(d) for d in shape)
        return True

    def _tensor(self, name):
        return next(t for t in self.net.tensors if t.name == name)

    def _host_values(self):
        return {t.name: np.frombuffer(ctypes.string_at(self.addresses[t.name], _nbytes(t.shape, t.dtype)),
                                      fakes.NUMPY[t.dtype]).copy()
                for t in self.net.tensors if t.host and t.name in self.addresses}

    def get_tensor_shape(self, name):
        t = self._tensor(name)
        if t.mode == fakes.IN:
            return self.shapes.get(name, t.shape)
        return tuple(self.net.output_shape(name, self.shapes, self._host_values()))

    def set_tensor_address(self, name, memory):
        self.calls.append(("set_tensor_address", name))
        self.addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name):
        return self.addresses.get(name, 0)

    def set_output_allocator(self, name, output_allocator):
        self.calls.append(("set_output_allocator", name))
        self.allocators[name] = output_allocator
        return True

    def get_output_allocator(self, name):
        return self.allocators.get(name)

    def execute_v2(self, bindings):
        self.addresses.update(zip((t.name for t in self.net.tensors), (int(b) for b in bindings)))
        check(cudart.cudaDeviceSynchronize(), "cudaDeviceSynchronize")
        return self._run(None)

    def execute_async_v3(self, stream_handle):
        return self._run(stream_handle)

    def _run(self, stream):
        self.executions += 1
        self.keep = []  # host arrays of the last run's copies (the runtime synchronises before the next)
        d2d = getattr(self.net, "d2d", None)
        if d2d:
            for out, inp in d2d.items():
                n = _nbytes(self.shapes[inp], self._tensor(inp).dtype)
                if stream is None:
                    check(cudart.cudaMemcpy(self.addresses[out], self.addresses[inp], n, D2D), "cudaMemcpy D2D")
                else:
                    check(cudart.cudaMemcpyAsync(self.addresses[out], self.addresses[inp], n, D2D, stream),
                          "cudaMemcpyAsync D2D")
            return True
        if stream is not None:  # what TensorRT does to learn data-dependent sizes: wait for the inputs
            check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        values, inputs = self._host_values(), {}
        for t in self.net.tensors:
            if t.mode != fakes.IN:
                continue
            if t.host:
                inputs[t.name] = values[t.name]
                continue
            arr = np.empty(self.shapes[t.name], fakes.NUMPY[t.dtype])
            check(cudart.cudaMemcpy(arr.ctypes.data, self.addresses[t.name], arr.nbytes, D2H), "cudaMemcpy D2H")
            inputs[t.name] = arr
        for name, arr in self.net.compute(inputs).items():
            arr = np.ascontiguousarray(arr)
            if name in self.allocators and -1 in self.get_tensor_shape(name):
                ptr = self.allocators[name].reallocate_output_async(name, self.addresses.get(name, 0), arr.nbytes,
                                                                    256, stream)
                if not ptr:
                    return False
                self.addresses[name] = int(ptr)
                self.allocators[name].notify_shape(name, arr.shape)
            self.keep.append(arr)
            if stream is None:
                check(cudart.cudaMemcpy(self.addresses[name], arr.ctypes.data, arr.nbytes, H2D), "cudaMemcpy H2D")
            else:
                check(cudart.cudaMemcpyAsync(self.addresses[name], arr.ctypes.data, arr.nbytes, H2D, stream),
                      "cudaMemcpyAsync H2D")
        return True


class CudaEngine(fakes.FakeEngine):
    """ICudaEngine of one of NETS, making CudaContexts."""

    def create_execution_context(self, runtime_config=None):
        ctx = CudaContext(self)
        self.contexts.append(ctx)
        return ctx


def cuda_api(family="tensorrt", profiles=None):
    """A TrtApi whose Runtime deserialises b'<net name>' into a CudaEngine (with `profiles` in place of the net's)."""
    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            net = NETS[bytes(serialized_engine).decode()]()
            if profiles is not None:
                net.profiles = profiles
            return CudaEngine(None, self.logger, net)

    mod = types.SimpleNamespace(Runtime=Runtime, ILogger=fakes.ILogger, IProfiler=fakes.IProfiler,
                                IOutputAllocator=fakes.IOutputAllocator, TensorIOMode=fakes.TensorIOMode,
                                DataType=fakes.DataType, TensorFormat=fakes.TensorFormat,
                                LayerInformationFormat=fakes.LayerInformationFormat,
                                ComputeCapability=fakes.ComputeCapability, __version__="10.9.0.34")
    return TrtApi(mod, family.replace("-", "_"), family, "10.9.0.34")


def cuda_engine(net="identity", profiles=None, **options):
    """A TensorRTEngine over the stand-in `net`, with the metadata trtlab's builder would write for it."""
    tensors = NETS[net]().tensors
    io = {k: [{"name": t.name, "shape": list(t.shape), "dtype": dtype_name(t.dtype)} for t in tensors
              if (t.mode == fakes.IN) == (k == "inputs")] for k in ("inputs", "outputs")}
    config = BuildConfig.make("tensorrt", **options)
    return TensorRTEngine(cuda_api(profiles=profiles), net.encode(), {"io": io, "config": config.to_dict()}, config)


# ---- tests ----------------------------------------------------------------------------------------------------
def test_device_query_is_real():
    assert DEVICE.name.startswith("NVIDIA") and DEVICE.memory_bytes > 1 << 30
    major, minor = DEVICE.compute_capability.split(".")
    assert int(major) >= 7 and minor.isdigit()


def test_buffers_streams_events_and_errors():
    x = np.arange(1024, dtype=np.float32)
    buf, stream = DeviceBuffer(cudart, x.nbytes), Stream(cudart)
    timer = EventTimer(cudart, stream)
    out = np.zeros_like(x)
    timer.start()
    buf.upload(x, stream.handle)
    buf.download(out, stream.handle)
    ms = timer.stop()
    np.testing.assert_array_equal(out, x)
    assert ms >= 0.0
    stream.spin()
    buf.free()
    buf.free()  # idempotent
    timer.destroy()
    stream.destroy()
    with pytest.raises(CudaError, match=r"cudaMalloc\(\d+\) failed with cudaErrorMemoryAllocation"):
        DeviceBuffer(cudart, 1 << 50)


@pytest.mark.parametrize("options", [{"mode": "execute"}, {"mode": "enqueue"}, {"cuda_graph": True}])
def test_runtime_modes_on_the_gpu(options):
    eng = cuda_engine("identity", **options)
    rng = np.random.default_rng(0)
    for batch in (4, 4, 9, 1):
        x = rng.standard_normal((batch, 4)).astype(np.float32)
        np.testing.assert_array_equal(eng.run({"x": x})["y"], x)
    run = eng.runner({"x": np.ones((8, 4), np.float32)})
    timer = eng.device_timer()
    for _ in range(3):
        if timer:
            timer.start()
        run()
        if timer:
            assert timer.stop() >= 0.0
    assert (timer is None) == (eng.mode == "execute")
    with pytest.raises(InputError, match=r"no optimization profile takes it \(profile 0: x \[1, 4\]\.\.\[64, 4\]\)"):
        eng.run({"x": np.ones((65, 4), np.float32)})
    buffers = [b for c in eng._contexts for b in c.buffers.values()]
    streams = [c.stream for c in eng._contexts]
    assert buffers and all(b.ptr for b in buffers)
    eng.close()
    assert all(b.ptr == 0 for b in buffers) and all(s.handle is None for s in streams)


def test_profiles_are_selected_and_switched_on_the_gpu():
    eng = cuda_engine("profiles")
    rng = np.random.default_rng(1)
    for batch in (2, 16, 8, 32, 1):
        x = rng.standard_normal((batch, 4)).astype(np.float32)
        net = eng._engine().net
        np.testing.assert_allclose(eng.run({"input": x})["logits"],
                                   np.maximum(x @ net.w0, 0) @ net.w1, rtol=1e-5)
    assert sorted(c.profile for c in eng._contexts) == [0, 1]
    assert [c.ctx.active_optimization_profile for c in eng._contexts] == [c.profile for c in eng._contexts]
    eng.close()


def test_the_output_allocator_grows_a_real_device_buffer():
    eng = cuda_engine("nonzero")
    requests, capacity = [], []
    for x in (np.full((2, 4), -1, np.float32), np.ones((3, 4), np.float32), np.ones((64, 4), np.float32),
              np.ones((5, 4), np.float32)):
        np.testing.assert_array_equal(eng.run({"x": x})["idx"], np.stack(np.nonzero(x > 0)))
        alloc = eng._contexts[0].allocator
        requests.append(alloc.requests["idx"])
        capacity.append(alloc.buffers["idx"].nbytes)
    assert requests == [0, 2 * 12 * 8, 2 * 256 * 8, 2 * 20 * 8]
    assert capacity[-1] == capacity[-2] >= 2 * 256 * 8 and capacity == sorted(capacity)
    kept = alloc.buffers["idx"].ptr
    assert alloc.reallocate_output_async("idx", kept, 1 << 50, 256, None) == 0  # nullptr back to TensorRT
    assert "could not get 1125899906842624 bytes for 'idx'" in alloc.failure and "cudaErrorMemoryAllocation" in alloc.failure
    assert alloc.buffers["idx"].ptr == kept  # the buffer it had stays usable
    eng.close()


def test_bf16_and_shape_tensors_through_real_memory():
    import ml_dtypes
    eng = cuda_engine("bf16")
    x = np.random.default_rng(2).standard_normal((8, 4)).astype(np.float32)
    y = eng.run({"x": x})["y"]
    want = (x.astype(ml_dtypes.bfloat16).astype(np.float32) * 2).astype(ml_dtypes.bfloat16)
    assert y.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(y.view(np.uint16), want.view(np.uint16))
    assert eng._contexts[0].buffers["x"].nbytes == x.size * 2
    eng.close()
    eng = cuda_engine("reshape")
    data = np.arange(24, dtype=np.float32)
    for shape in ((4, 6), (12, 2)):
        np.testing.assert_array_equal(eng.run({"data": data, "shape": np.array(shape, np.int32)})["y"],
                                      data.reshape(shape))
    assert eng._contexts[0].addresses["shape"] == eng._contexts[0].host["shape"].ctypes.data
    eng.close()


def test_rtx_refuses_unsupported_gpus():
    api = cuda_api("tensorrt-rtx")
    members = api.module.ComputeCapability.__members__
    supported = f"SM{DEVICE.compute_capability.replace('.', '')}" in members and DEVICE.compute_capability != "8.0"
    if supported:
        assert require_device(api) == DEVICE
    else:
        with pytest.raises(BackendUnavailableError, match="TensorRT-RTX engines do not run on Hopper/data-center"):
            require_device(api)
