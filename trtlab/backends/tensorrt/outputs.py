"""Device memory for outputs whose shape is known only after the run (NonZero, NMS): an IOutputAllocator.

TensorRT calls `reallocate_output_async` during execute_async_v3 once it knows the size, then `notify_shape` with
the final shape. The allocator keeps one device buffer per output, reuses it while it is big enough and grows it
(at least doubling) when asked for more, so a size that creeps up does not reallocate on every run. The callbacks
must not raise into TensorRT: a failed allocation returns 0 (nullptr), TensorRT then fails the enqueue, and the
runtime reports `failure` with that error.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import CudaError
from .cuda import DeviceBuffer

if TYPE_CHECKING:
    from ._import import TrtApi


def make_output_allocator(api: "TrtApi", cudart: Any) -> Any:
    """An IOutputAllocator of `api` that allocates with cuda-python's runtime `cudart`."""

    class OutputAllocator(api.module.IOutputAllocator):
        """Growing device buffers for data-dependent outputs; `shapes` holds the shapes TensorRT notified."""

        def __init__(self) -> None:
            api.module.IOutputAllocator.__init__(self)
            self.buffers: dict[str, DeviceBuffer] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.requests: dict[str, int] = {}
            self.failure: str | None = None

        def reallocate_output(self, tensor_name: str, memory: int, size: int, alignment: int) -> int:
            """The synchronous form (deprecated in TensorRT 10): the same as the async one."""
            return self.reallocate_output_async(tensor_name, memory, size, alignment, None)

        def reallocate_output_async(self, tensor_name: str, memory: int, size: int, alignment: int,
                                    stream: Any) -> int:
            """A device pointer of at least `size` bytes for `tensor_name` (0 when the memory cannot be had)."""
            size = int(size)
            self.requests[tensor_name] = size
            buf = self.buffers.get(tensor_name)
            if buf is not None and buf.nbytes >= size:
                return buf.ptr
            want = max(size, 2 * buf.nbytes) if buf is not None else size
            try:
                new = DeviceBuffer(cudart, want)
            except CudaError as exc:
                self.failure = f"the output allocator could not get {size} bytes for {tensor_name!r}: {exc}"
                return 0
            if buf is not None:
                buf.free()
            self.buffers[tensor_name] = new
            if alignment and new.ptr % int(alignment):
                self.failure = f"cudaMalloc gave {tensor_name!r} memory not aligned to {alignment} bytes"
                return 0
            return new.ptr

        def notify_shape(self, tensor_name: str, shape: Any) -> None:
            """Record the output's final shape."""
            self.shapes[tensor_name] = tuple(int(d) for d in shape)

        def free(self) -> None:
            """Release every buffer now."""
            for buf in self.buffers.values():
                buf.free()
            self.buffers.clear()

    return OutputAllocator()
