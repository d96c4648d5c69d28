"""Thin helpers over cuda-python's runtime (`cuda.bindings.runtime`): checked calls, device, buffers, streams, events."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import BackendUnavailableError, CudaError
from . import _import


def check(result: Any, call: str, cudart: Any | None = None) -> Any:
    """Unpack a cuda-python `(err, *values)` tuple; raise CudaError naming the CUDA error unless cudaSuccess."""
    cudart = cudart or _import.cuda_runtime()
    if not isinstance(result, tuple):
        result = (result,)
    err, values = result[0], result[1:]
    if err != cudart.cudaError_t.cudaSuccess:
        got = cudart.cudaGetErrorName(err)
        name = got[1] if isinstance(got, tuple) and len(got) > 1 else getattr(err, "name", str(err))
        name = name.decode() if isinstance(name, bytes) else str(name)
        raise CudaError(f"CUDA call {call} failed with {name} ({int(err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU a plan would run on."""

    index: int
    name: str
    compute_capability: str
    memory_bytes: int


def current_device(cudart: Any | None = None) -> DeviceInfo | None:
    """The current CUDA device, or None where cuda-python or a GPU is missing."""
    try:
        cudart = cudart or _import.cuda_runtime()
    except BackendUnavailableError:
        return None
    try:
        count = check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount", cudart)
        if not count:
            return None
        index = check(cudart.cudaGetDevice(), "cudaGetDevice", cudart)
        prop = check(cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties", cudart)
    except CudaError:
        return None  # e.g. cudaErrorNoDevice / cudaErrorInsufficientDriver
    name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
    return DeviceInfo(int(index), name, f"{prop.major}.{prop.minor}", int(prop.totalGlobalMem))


class DeviceBuffer:
    """Device memory of `nbytes`, freed by free() or when the owner closes (never left to the GC)."""

    def __init__(self, cudart: Any, nbytes: int) -> None:
        self.cudart = cudart
        self.nbytes = int(nbytes)
        self.ptr = int(check(cudart.cudaMalloc(max(self.nbytes, 1)), f"cudaMalloc({self.nbytes})", cudart))

    def free(self) -> None:
        """Release the memory now (idempotent)."""
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            check(self.cudart.cudaFree(ptr), "cudaFree", self.cudart)

    def upload(self, array: np.ndarray, stream: Any = None) -> None:
        """Copy a contiguous host array into this buffer (async on `stream` when given)."""
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        if stream is None:
            check(self.cudart.cudaMemcpy(self.ptr, array.ctypes.data, array.nbytes, kind), "cudaMemcpy H2D",
                  self.cudart)
        else:
            check(self.cudart.cudaMemcpyAsync(self.ptr, array.ctypes.data, array.nbytes, kind, stream),
                  "cudaMemcpyAsync H2D", self.cudart)

    def download(self, array: np.ndarray, stream: Any = None) -> None:
        """Copy this buffer into a contiguous host array (async on `stream` when given)."""
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        if stream is None:
            check(self.cudart.cudaMemcpy(array.ctypes.data, self.ptr, array.nbytes, kind), "cudaMemcpy D2H",
                  self.cudart)
        else:
            check(self.cudart.cudaMemcpyAsync(array.ctypes.data, self.ptr, array.nbytes, kind, stream),
                  "cudaMemcpyAsync D2H", self.cudart)


class Stream:
    """A CUDA stream (TensorRT FAQ 8: enqueue needs a user stream that the caller synchronizes)."""

    def __init__(self, cudart: Any) -> None:
        self.cudart = cudart
        self.handle = check(cudart.cudaStreamCreate(), "cudaStreamCreate", cudart)

    def __int__(self) -> int:
        return int(self.handle)

    def synchronize(self) -> None:
        """Wait for everything queued on the stream."""
        check(self.cudart.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize", self.cudart)

    def spin(self) -> None:
        """Wait for everything queued on the stream by polling it (trtexec's spin-wait: no blocking sleep)."""
        not_ready = self.cudart.cudaError_t.cudaErrorNotReady
        while True:
            err = self.cudart.cudaStreamQuery(self.handle)[0]
            if err != not_ready:
                check((err,), "cudaStreamQuery", self.cudart)
                return

    def destroy(self) -> None:
        """Release the stream (idempotent)."""
        if self.handle is not None:
            h, self.handle = self.handle, None
            check(self.cudart.cudaStreamDestroy(h), "cudaStreamDestroy", self.cudart)


class EventTimer:
    """Device time between start() and stop() on a stream, from a pair of CUDA events."""

    def __init__(self, cudart: Any, stream: Stream) -> None:
        self.cudart, self.stream = cudart, stream
        self.begin = check(cudart.cudaEventCreate(), "cudaEventCreate", cudart)
        self.end = check(cudart.cudaEventCreate(), "cudaEventCreate", cudart)

    def start(self) -> None:
        """Record the start event on the stream."""
        check(self.cudart.cudaEventRecord(self.begin, self.stream.handle), "cudaEventRecord", self.cudart)

    def stop(self) -> float:
        """Record the end event, wait for it and return the elapsed device time in ms."""
        check(self.cudart.cudaEventRecord(self.end, self.stream.handle), "cudaEventRecord", self.cudart)
        check(self.cudart.cudaEventSynchronize(self.end), "cudaEventSynchronize", self.cudart)
        return float(check(self.cudart.cudaEventElapsedTime(self.begin, self.end), "cudaEventElapsedTime",
                           self.cudart))

    def destroy(self) -> None:
        """Release both events (idempotent)."""
        for attr in ("begin", "end"):
            ev = getattr(self, attr)
            if ev is not None:
                setattr(self, attr, None)
                check(self.cudart.cudaEventDestroy(ev), "cudaEventDestroy", self.cudart)
