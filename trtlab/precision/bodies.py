"""Tensors computed inside If/Loop/Scan bodies, made readable: a body tensor cannot be a graph output, so
`expose` plumbs it out through the nodes that hold the body, as an extra output of each (If: both branches gain an
output, the branch that does not compute the tensor an empty one of its type; Loop/Scan: a scan output, so the
tensor comes out stacked over the iterations), up to a main-graph output of the tensor's own name (the definition
inside the body is renamed). Every backend then reads it as it reads any marked output, with the backend's own
kernels: this is how calibration observes activations inside bodies and how compare sees them, on the engine under
test. (onnx.reference can evaluate bodies, but it is neither the backend nor fast enough for LSTMs over a stream.)
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper

from ..model import body_tensors, subgraphs
from .graph import model_elem_types

def _rename(g: onnx.GraphProto, old: str, new: str) -> None:
    """Rename tensor `old` to `new` everywhere in `g` and the bodies inside it."""
    for n in g.node:
        for k, t in enumerate(n.input):
            if t == old:
                n.input[k] = new
        for k, t in enumerate(n.output):
            if t == old:
                n.output[k] = new
        for body in subgraphs(n):
            _rename(body, old, new)
    for vi in (*g.input, *g.value_info, *g.output):
        if vi.name == old:
            vi.name = new


def expose(proto: onnx.ModelProto, names: Iterable[str]) -> tuple[onnx.ModelProto, list[str]]:
    """(copy of `proto` where each body tensor in `names` is also a main-graph output of that name, the names
    exposed). Names that are not body tensors are left alone (mark those with precision.mark_outputs)."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    where = body_tensors(model.graph)
    wanted = [t for t in dict.fromkeys(names) if t in where]
    if not wanted:
        return model, []
    try:
        types = model_elem_types(onnx.shape_inference.infer_shapes(model))
    except Exception:
        types = model_elem_types(model)
    for t in wanted:
        elem = types.get(t, onnx.TensorProto.FLOAT)
        path = where[t]
        chain = [model.graph]  # chain[j] holds node path[j]
        for i, attr in path:
            node = chain[-1].node[i]
            chain.append(next(a.g for a in node.attribute if a.name == attr))
        _rename(chain[-1], t, f"{t}__in_body")
        # a fresh name for the body output: the tensor may already be one of the body's outputs, and a body
        # listing one value twice as outputs loses it in ONNX Runtime
        current = f"{t}__to_outer"
        chain[-1].node.append(helper.make_node("Identity", [f"{t}__in_body"], [current], name=f"{t}__expose"))
        for j in range(len(path) - 1, -1, -1):
            i, attr = path[j]
            node = chain[j].node[i]
            for a in node.attribute:
                if a.type != onnx.AttributeProto.GRAPH:
                    continue
                if a.name == attr:
                    a.g.output.append(helper.make_tensor_value_info(current, elem, None))
                else:  # If's other branch: an empty tensor of the same type in that position
                    empty = f"{t}__not_computed_{j}"
                    a.g.node.append(helper.make_node("Constant", [], [empty], name=f"{empty}__const", value=
                                                     helper.make_tensor(empty, elem, [0], np.zeros(0).tolist())))
                    a.g.output.append(helper.make_tensor_value_info(empty, elem, None))
            if node.op_type == "Scan":
                for a in node.attribute:
                    if a.name in ("scan_output_axes", "scan_output_directions"):
                        a.ints.append(0)
            current = t if j == 0 else f"{t}__from_body_{j}"
            node.output.append(current)
        model.graph.output.append(helper.make_tensor_value_info(t, elem, None))
    return model, wanted
