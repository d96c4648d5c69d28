"""Graph surgery shared by the precision transforms."""
from __future__ import annotations

from typing import Iterable

import onnx


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
