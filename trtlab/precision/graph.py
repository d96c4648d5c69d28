"""Graph helpers shared by the precision transforms and calibration: node placement, tensor types, and the one rule
for which tensors get quantized."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import onnx

from ..errors import ModelError
from ..model import all_nodes, subgraphs

# The largest magnitude each quantized type represents: scale = amax / QMAX[dtype].
QMAX = {"int8": 127.0, "fp8": 448.0}  # fp8 is E4M3, the format TensorRT uses for activations

# The activation inputs TensorRT's explicit quantization wants Q/DQ on (weights and biases are not activations);
# Add is quantized only as a residual add (below).
ACTIVATION_INPUTS = {"Conv": (0,), "ConvTranspose": (0,), "Gemm": (0, 1), "MatMul": (0, 1)}
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


def weight_tensors(graph: onnx.GraphProto) -> set[str]:
    """Node outputs computed from constants only (Constant nodes and nodes reading nothing but initializers or
    such outputs, e.g. a Cast of a Constant): the graph's weights, as opposed to its activations."""
    const = constant_names(graph)
    fed = {i.name for i in graph.input} - {init.name for init in graph.initializer}
    out: set[str] = set()
    for node in graph.node:
        ins = [i for i in node.input if i]
        if node.op_type == "Constant" or (ins and all(i in const and i not in fed for i in ins)
                                         and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                                     for a in node.attribute)):
            out.update(o for o in node.output if o)
            const.update(o for o in node.output if o)
    return out


def compared_sources(graph: onnx.GraphProto, names: Iterable[str]) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """For each tensor in `names` that a node of `graph` produces: (node name, op type, the tensors of `names` it is
    computed from). Those are the node's inputs that are in `names`; an input not in `names` stands for the compared
    tensors it is itself computed from (graph inputs and initializers end the walk: both engines are fed them
    alike), so a comparison of a few marked tensors still knows what each one reads. One pass in graph order."""
    wanted = set(names)
    upstream: dict[str, tuple[str, ...]] = {}  # tensor not compared -> the compared tensors it is computed from
    out: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    for node in graph.node:
        found: dict[str, None] = {}
        for i in node.input:
            if i:
                found.update(dict.fromkeys((i,) if i in wanted else upstream.get(i, ())))
        srcs = tuple(found)
        for o in node.output:
            if o in wanted:
                out.setdefault(o, (node.name, node.op_type, srcs))
            elif o:
                upstream[o] = srcs
    return out


def all_tensor_names(model: onnx.ModelProto) -> set[str]:
    """Every tensor name of the model, If/Loop/Scan bodies included."""
    names: set[str] = set()
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        names.update(vi.name for vi in (*graph.input, *graph.output, *graph.value_info))
        names.update(init.name for init in graph.initializer)
        for node in graph.node:
            names.update(n for n in (*node.input, *node.output) if n)
            graphs.extend(subgraphs(node))
    return names


def with_bodies(graph: onnx.GraphProto, names: Iterable[str]) -> set[str]:
    """`names` plus every node inside the bodies of the named nodes: pinning an If, Loop or Scan keeps all of its
    bodies in fp32 (and free of Q/DQ)."""
    names = set(names)
    out = set(names)
    for node in all_nodes(graph):
        if node.name in names:
            out.update(n.name for body in subgraphs(node) for n in all_nodes(body))
    return out


def model_elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """{tensor: ONNX element type} over the main graph and every body (tensor names are unique across scopes)."""
    types: dict[str, int] = {}
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for name, t in elem_types(graph).items():
            types.setdefault(name, t)
        graphs.extend(b for n in graph.node for b in subgraphs(n))
    return types


@dataclass
class Scope:
    """One graph (the main graph or a body) and the quantized uses of the nodes directly in it."""

    graph: onnx.GraphProto
    main: bool
    activations: dict[str, list[tuple[onnx.NodeProto, int]]]
    weights: list[tuple[onnx.NodeProto, int, onnx.TensorProto]]
    defined: set[str]  # tensors defined in this graph (inputs, initializers, node outputs)


def quantized_scopes(model: onnx.ModelProto, skip_nodes: Iterable[str] = (), residual_add: bool = True
                     ) -> list[Scope]:
    """quantized_uses and quantized_weight_uses, per graph: the main graph first, then each If/Loop/Scan body
    (depth first). A body sees the constants, producers and weights of the scopes around it, so a body's Conv on
    an outer activation is quantized inside the body, and an outer Constant weight read by a body counts as one."""
    types = model_elem_types(infer_types(model))
    skip = with_bodies(model.graph, skip_nodes)
    out: list[Scope] = []

    def walk(graph: onnx.GraphProto, constants: set[str], producers: dict[str, onnx.NodeProto],
             held: dict[str, onnx.TensorProto], main: bool) -> None:
        constants = constants | constant_names(graph)
        producers = {**producers, **{o: n for n in graph.node for o in n.output if o}}
        held = {**held, **{i.name: i for i in graph.initializer}}
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                for a in node.attribute:
                    if a.name == "value":
                        held.setdefault(node.output[0], a.t)
        uses: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        weights = []
        for node in graph.node:
            if node.name in skip:
                continue
            if node.op_type in ACTIVATION_INPUTS:
                inputs = ACTIVATION_INPUTS[node.op_type]
            elif residual_add and node.op_type == "Add" and len(node.input) == 2 \
                    and not any(t in constants for t in node.input) \
                    and any(t in producers and producers[t].op_type != "Add" for t in node.input):
                inputs = (0, 1)
            else:
                inputs = ()
            for index in inputs:
                name = node.input[index] if index < len(node.input) else ""
                if name and name not in constants and types.get(name) in FLOAT_TYPES:
                    uses.setdefault(name, []).append((node, index))
            wi = WEIGHT_INPUTS.get(node.op_type)
            if wi is not None and wi < len(node.input):
                tensor = held.get(node.input[wi])
                if tensor is not None and tensor.data_type == onnx.TensorProto.FLOAT:
                    weights.append((node, wi, tensor))
        defined = {i.name for i in graph.input} | {i.name for i in graph.initializer} | \
            {o for n in graph.node for o in n.output if o}
        out.append(Scope(graph, main, uses, weights, defined))
        for node in graph.node:
            for body in subgraphs(node):
                walk(body, constants, producers, held, False)

    walk(model.graph, set(), {}, {}, True)
    return out


def quantized_uses(model: onnx.ModelProto, skip_nodes: Iterable[str] = (),
                   residual_add: bool = True) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    """The one rule for which tensors get quantized: {activation: [(consumer node, input index), ...]}, graph order.

    An activation is quantized where it enters Conv/ConvTranspose (input 0) or Gemm/MatMul (inputs 0 and 1), and on
    both inputs of a residual Add (two activations, at least one not itself made by an Add); weights, constants,
    non-float tensors and tensors whose dtype shape inference cannot tell are not. Nodes named in `skip_nodes`
    (fp32 pins) quantize nothing. Nodes inside If/Loop/Scan bodies follow the same rule (quantized_scopes).
    Calibration calibrates exactly these tensors and the Q/DQ inserter puts its pairs on exactly these uses, so a
    table from calibrate() always covers what quantize() needs.
    """
    uses: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for scope in quantized_scopes(model, skip_nodes, residual_add):
        for name, found in scope.activations.items():
            uses.setdefault(name, []).extend(found)
    return uses


# The weight input of each op whose weights are quantized per output channel.
WEIGHT_INPUTS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}


def quantized_weight_uses(model: onnx.ModelProto, skip_nodes: Iterable[str] = ()
                          ) -> list[tuple[onnx.NodeProto, int, onnx.TensorProto]]:
    """The weights that get quantized: [(consumer node, input index, float32 weight tensor)], graph order.

    A weight is the float32 weight input of Conv/ConvTranspose/Gemm/MatMul held in an initializer or produced by a
    `Constant` node (`value`; exporters such as Paddle2ONNX keep every weight there), in the main graph or in a
    body. quantized_uses never treats either as an activation, so the two rules split a node's inputs between them."""
    return [w for scope in quantized_scopes(model, skip_nodes) for w in scope.weights]


def quantizable_tensors(model: onnx.ModelProto) -> list[str]:
    """The tensors that get quantized (see quantized_uses), in graph order: what calibration needs a scale for."""
    return list(quantized_uses(model))
