"""fp16 storage of every float tensor on ONNX Runtime's CPU provider (build option fp16_mode="faithful").

Why this exists: the CPU provider has fp16 kernels for few ops, so its InsertCastTransformer wraps every other
fp16 node in Casts to and from fp32 and then removes each fp16->fp32 Cast that follows one of those fp32->fp16
Casts (RemoveDuplicateCastTransformer, onnxruntime/core/optimizer/insert_cast_transformer.cc: the Casts it
inserts count as "precision free"). A chain of such nodes therefore runs entirely in fp32: only the weights and the
model's inputs and outputs are rounded to fp16, and an "fp16" engine shows several times less error than an fp16
GPU engine. An fp16 node with an fp16 kernel between two such nodes is forced to fp32 too (IsIsolatedFp16NodeOnCpu),
so no fp16 pass-through node keeps the rounding, and a Cast feeding a marked output is kept but its consumers read
the fp32 value, so marking tensors does not restore it either. No session option turns the removal off
(graph_optimization="disable" still runs it).

What keeps the rounding: the same model written in fp32 with every fp16 tensor replaced by an explicit round trip,
`Cast(to=fp16)` then `Cast(to=fp32)`. ONNX Runtime keeps such a pair of the model's own Casts (a narrowing Cast it
did not insert is a loss of precision it must not remove), so every tensor is stored in fp16 exactly as an fp16
GPU engine stores it, and each node computes in fp32 on fp16 values (TensorRT's fp16 kernels also accumulate in
fp32; fp16 accumulation does not happen here). Weights keep their fp16 values (held in fp32, which is exact).
`tests/test_fp16_reference.py` checks the result against numpy (onnx.reference) running the fp16 model.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FP16, FP32 = TensorProto.FLOAT16, TensorProto.FLOAT


def _retype(vi: Any) -> None:
    if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type == FP16:
        vi.type.tensor_type.elem_type = FP32


def _fp32_tensor(t: onnx.TensorProto) -> onnx.TensorProto:
    return numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name)


def _types(graph: onnx.GraphProto, outer: dict[str, int]) -> dict[str, int]:
    """Element types of the tensors of `graph` as the fp16 model declares or shape inference found them."""
    types = dict(outer)
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in graph.initializer:
        types[init.name] = init.data_type
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    types[node.output[0]] = a.t.data_type
        elif node.op_type == "Cast" and node.output:
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if to is not None:
                types[node.output[0]] = to
    return types


def store_every_fp16(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """`model` (an fp16 variant) written in fp32 with every fp16 tensor a node computes rounded through an explicit
    Cast pair (in subgraphs too); the main graph keeps its declared input and output types. Returns the model and
    the names of the Cast nodes added."""
    try:
        typed = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # a model shape inference cannot take (over 2 GB, unknown domains): declared types only
        typed = onnx.ModelProto()
        typed.CopyFrom(model)
    nodes_all = list(_all_nodes(typed.graph))
    taken = {t for n in nodes_all for t in list(n.input) + list(n.output)} | {n.name for n in nodes_all}
    added: list[str] = []

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        return name

    def walk(graph: onnx.GraphProto, outer_types: dict[str, int], main: bool,
             outer_renamed: dict[str, str] | None = None) -> None:
        types = _types(graph, outer_types)
        outputs = {vi.name for vi in graph.output}
        # a body reads outer tensors by name: it reads their fp32 copies like the outer nodes do
        renamed: dict[str, str] = dict(outer_renamed or {})
        for vi in list(graph.input) + list(graph.initializer):
            renamed.pop(vi.name, None)
        out: list[onnx.NodeProto] = []
        inits = {i.name for i in graph.initializer}
        if main:  # fp16 inputs of the model: read them, then compute on their fp32 copy
            for vi in graph.input:
                if vi.name in inits:
                    _retype(vi)  # an initializer listed as an input (IR 3) is held in fp32 like the others
                elif types.get(vi.name) == FP16:
                    wide = fresh(f"{vi.name}/fp32")
                    out.append(helper.make_node("Cast", [vi.name], [wide], name=fresh(f"{vi.name}/to_fp32"), to=FP32))
                    renamed[vi.name] = wide
        else:
            for vi in list(graph.input) + list(graph.output):
                _retype(vi)
        # ONNX Runtime infers the new types itself; stale fp16 entries would contradict them
        keep = [vi for vi in graph.value_info if not (vi.type.HasField("tensor_type")
                                                      and vi.type.tensor_type.elem_type == FP16)]
        del graph.value_info[:]
        graph.value_info.extend(keep)
        for k, init in enumerate(graph.initializer):
            if init.data_type == FP16:
                graph.initializer[k].CopyFrom(_fp32_tensor(init))
        for k, node in enumerate(graph.node):
            for i, name in enumerate(node.input):
                if name in renamed:
                    node.input[i] = renamed[name]
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g, types, False, renamed)
                for g in a.graphs:
                    walk(g, types, False, renamed)
                if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == FP16:
                    a.t.CopyFrom(_fp32_tensor(a.t))
                if a.type == onnx.AttributeProto.INT and a.name in ("to", "dtype") and a.i == FP16 \
                        and node.op_type != "Cast":
                    a.i = FP32
            out.append(node)
            if node.op_type == "Constant":
                continue
            is_cast16 = node.op_type == "Cast" and any(a.name == "to" and a.i == FP16 for a in node.attribute)
            for i, name in enumerate(node.output):
                if not name or types.get(name) != FP16:
                    continue
                base = node.name or f"{node.op_type}_{k}"
                returned = name in outputs  # a graph output keeps its name: fp16 in the main graph, fp32 in a body
                if is_cast16:  # the model's own Cast to fp16 narrows: widen right after it
                    if returned and not main:
                        node.output[i] = stored = fresh(f"{name}/fp16")
                    else:
                        stored = name
                else:
                    node.output[i] = wide32 = fresh(f"{name}/fp32")
                    stored = name if returned and main else fresh(f"{name}/fp16")
                    out.append(helper.make_node("Cast", [wide32], [stored], name=fresh(f"{base}/store_fp16"),
                                                to=FP16))
                    added.append(out[-1].name)
                wide = name if returned and not main else fresh(f"{name}/fp16_as_fp32")
                out.append(helper.make_node("Cast", [stored], [wide], name=fresh(f"{base}/load_fp16"), to=FP32))
                added.append(out[-1].name)
                if wide != name:
                    renamed[name] = wide
        del graph.node[:]
        graph.node.extend(out)

    walk(typed.graph, {}, True)
    return typed, added


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(a.g)
            for g in a.graphs:
                yield from _all_nodes(g)
