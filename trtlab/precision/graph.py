"""Graph helpers shared by the precision transforms and calibration: node placement, tensor types, and the one rule
for which tensors get quantized."""
from __future__ import annotations

import os
from typing import Iterable

import onnx

from ..errors import ModelError

# The largest magnitude each quantized type represents: scale = amax / QMAX[dtype].
QMAX = {"int8": 127.0, "fp8": 448.0}  # fp8 is E4M3, the format TensorRT uses for activations

QUANTIZABLE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")
# Which inputs of each op carry activations worth a scale (not Conv/Gemm biases).
_QUANTIZABLE_INPUTS = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2, "MatMul": 2, "Add": 2}
FLOAT_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.BFLOAT16,
    onnx.TensorProto.DOUBLE,
}


def place_after_producers(graph: onnx.GraphProto, after: dict[str, list[onnx.NodeProto]],
                          first: Iterable[str] = ()) -> None:
    """Rebuild graph.node with each list in `after[tensor]` right after the node producing that tensor.

    Lists keyed by names in `first` (graph inputs, initializers, or "") go before every node, so the result stays
    topologically sorted. `after` is consumed."""
    ordered: list[onnx.NodeProto] = []
    for name in first:
        ordered.extend(after.pop(name, []))
    for node in graph.node:
        ordered.append(node)
        for out in node.output:
            ordered.extend(after.pop(out, []))
    del graph.node[:]
    graph.node.extend(ordered)


def as_proto(model: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(getattr(model, "proto", None), onnx.ModelProto):  # a trtlab.model.Model
        return model.proto
    try:
        return onnx.load(str(model))
    except Exception as exc:
        raise ModelError(f"{model}: cannot load the ONNX model ({exc})") from exc


def infer_types(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with inferred value_info, so every tensor's dtype is known where it can be."""
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception as exc:
        raise ModelError(
            f"ONNX shape inference failed on the model ({exc}); fix the model (onnx.checker) "
            "before calibrating"
        ) from exc


def elem_types(graph: onnx.GraphProto) -> dict[str, int]:
    types: dict[str, int] = {init.name: init.data_type for init in graph.initializer}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for node in graph.node:  # Constant outputs may lack value_info
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t is not None:
                    types.setdefault(node.output[0], attr.t.data_type)
    return types


def constant_names(graph: onnx.GraphProto) -> set[str]:
    names = {init.name for init in graph.initializer}
    names.update(o for node in graph.node if node.op_type == "Constant" for o in node.output)
    return names


def all_tensor_names(model: onnx.ModelProto) -> set[str]:
    graph = model.graph
    names = {vi.name for vi in (*graph.input, *graph.output, *graph.value_info)}
    names.update(init.name for init in graph.initializer)
    for node in graph.node:
        names.update(n for n in (*node.input, *node.output) if n)
    return names


def quantizable_tensors(model: onnx.ModelProto) -> list[str]:
    """Float activations needing a scale: graph inputs, and inputs of Conv, ConvTranspose,
    Gemm, MatMul and Add that are not weights or constants, in graph order.

    Pass a shape-inferred model (onnx.shape_inference) so intermediate dtypes are known;
    tensors whose dtype is unknown are left out.
    """
    graph = model.graph
    types = elem_types(graph)
    constants = constant_names(graph)
    names: dict[str, None] = {}
    for vi in graph.input:
        if vi.name not in constants and types.get(vi.name) in FLOAT_TYPES:
            names[vi.name] = None
    for node in graph.node:
        if node.op_type not in _QUANTIZABLE_INPUTS:
            continue
        for name in node.input[: _QUANTIZABLE_INPUTS[node.op_type]]:
            if name and name not in constants and types.get(name) in FLOAT_TYPES:
                names[name] = None
    return list(names)
