"""The runtime's CUDA side for real (cuda-python on an NVIDIA GPU): device query, buffers, streams, events, CUDA graph
capture and CudaError names. TensorRT itself is stood in for by an identity engine that copies its input to its
output with CUDA calls, so buffers, streams and graphs are exercised on the GPU. Skips without cuda-python or a GPU."""
from __future__ import annotations

import enum
import types

import numpy as np
import pytest

cudart = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (cuda.bindings) is not installed")

from trtlab.backends.tensorrt._import import TrtApi  # noqa: E402
from trtlab.backends.tensorrt.cuda import DeviceBuffer, EventTimer, Stream, check  # noqa: E402
from trtlab.backends.tensorrt.runtime import TensorRTEngine, require_device, running_device  # noqa: E402
from trtlab.config import BuildConfig  # noqa: E402
from trtlab.errors import BackendUnavailableError, CudaError, InputError  # noqa: E402

DEVICE = running_device()
pytestmark = pytest.mark.skipif(DEVICE is None, reason="no NVIDIA GPU visible to cuda-python")
D2D = cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice


class IdentityContext:
    """IExecutionContext stand-in: y = x by a device-to-device copy (captured when the stream is capturing)."""

    def __init__(self):
        self.shapes, self.addresses, self.profiler = {}, {}, None

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return self.shapes["x"]

    def set_tensor_address(self, name, memory):
        self.addresses[name] = memory
        return True

    def _nbytes(self):
        return int(np.prod(self.shapes["x"])) * 4

    def execute_v2(self, bindings):
        check(cudart.cudaMemcpy(bindings[1], bindings[0], self._nbytes(), D2D), "cudaMemcpy D2D")
        return True

    def execute_async_v3(self, stream_handle):
        check(cudart.cudaMemcpyAsync(self.addresses["y"], self.addresses["x"], self._nbytes(), D2D, stream_handle),
              "cudaMemcpyAsync D2D")
        return True


class IdentityEngine:
    num_io_tensors = 2

    def get_tensor_name(self, index):
        return ["x", "y"][index]

    def get_tensor_profile_shape(self, name, profile_index):
        return [(1, 4), (4, 4), (64, 4)]

    def create_execution_context(self):
        return IdentityContext()


class Severity(enum.Enum):
    ERROR = 1


def identity_api(family="tensorrt"):
    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return IdentityEngine()

    class ILogger:
        Severity = Severity

        def __init__(self):
            pass

    cc = enum.Enum("ComputeCapability", {"SM75": 75, "SM80": 80, "SM86": 86, "SM89": 89, "SM120": 120})
    mod = types.SimpleNamespace(Runtime=Runtime, ILogger=ILogger, ComputeCapability=cc)
    return TrtApi(mod, family.replace("-", "_"), family, "10.9.0.34")


def identity_engine(**options):
    config = BuildConfig.make("tensorrt", batch=(1, 4, 64), **options)
    io = {"inputs": [{"name": "x", "shape": [-1, 4], "dtype": "float32"}],
          "outputs": [{"name": "y", "shape": [-1, 4], "dtype": "float32"}]}
    return TensorRTEngine(identity_api(), b"plan", {"io": io, "config": config.to_dict()}, config)


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
    buf.free()
    buf.free()  # idempotent
    timer.destroy()
    stream.destroy()
    with pytest.raises(CudaError, match=r"cudaMalloc\(\d+\) failed with cudaErrorMemoryAllocation"):
        DeviceBuffer(cudart, 1 << 50)


@pytest.mark.parametrize("options", [{"mode": "execute"}, {"mode": "enqueue"}, {"cuda_graph": True}])
def test_runtime_modes_on_the_gpu(options):
    eng = identity_engine(**options)
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
    with pytest.raises(InputError, match=r"outside the engine's optimization profile \[1, 4\]\.\.\[64, 4\]"):
        eng.run({"x": np.ones((65, 4), np.float32)})
    buffers = [b for c in eng._contexts for b in c.buffers.values()]
    streams = [c.stream for c in eng._contexts]
    assert buffers and all(b.ptr for b in buffers)
    eng.close()
    assert all(b.ptr == 0 for b in buffers) and all(s.handle is None for s in streams)


def test_rtx_refuses_unsupported_gpus():
    api = identity_api("tensorrt-rtx")
    members = api.module.ComputeCapability.__members__
    supported = f"SM{DEVICE.compute_capability.replace('.', '')}" in members and DEVICE.compute_capability != "8.0"
    if supported:
        assert require_device(api) == DEVICE
    else:
        with pytest.raises(BackendUnavailableError, match="TensorRT-RTX engines do not run on Hopper/data-center"):
            require_device(api)
