"""ONNX Runtime's optimised graph of an engine and the source ONNX nodes each of its nodes covers.

ONNX Runtime fuses and renames nodes while it optimises (`Conv@0` + `Relu@0` become one FusedConv, the NCHWc
transformer names its Conv `<output>_nchwc` and adds ReorderInput/ReorderOutput, the CPU provider wraps fp16 work
in `InsertedPrecisionFreeCast_` Casts). `optimized_graph(engine)` writes the graph ORT really runs (the engine's
own optimisation level, options and providers) and maps every node of it to the source model's node ids
(`trtlab.nodemap`); it is computed once per engine. A profile names its rows by the graph of the session that
profiled (node names such as `ReorderOutput_token_225` differ between sessions), so `profile_layers` maps its own
optimised graph with `coverage`.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import nodemap

if TYPE_CHECKING:
    import onnx
    from .base import Engine


def coverage(source: "onnx.ModelProto", variant: "onnx.ModelProto",
             optimized: "onnx.ModelProto") -> dict[str, list[str]]:
    """{optimised node name: source node ids it covers, in source order}."""
    resolve = nodemap.name_resolver(source, nodemap.variant_origin(source, variant))
    return {name: resolve(nodes) for name, nodes in nodemap.ort_coverage(variant, optimized).items()}


@dataclass
class OptimizedGraph:
    """The optimised graph of one ONNX Runtime engine with each node's covered source nodes."""

    proto: "onnx.ModelProto"
    covered: dict[str, list[str]] = field(default_factory=dict)

    def covered_nodes(self, name: str) -> list[str]:
        """Source node ids the optimised node `name` covers ([] for a name not in this graph)."""
        return list(self.covered.get(name, []))

    @property
    def nodes(self) -> list[Any]:
        """The optimised graph's NodeProtos, in execution order."""
        return list(self.proto.graph.node)

    def by_source_node(self) -> dict[str, list[str]]:
        """{source node id: the optimised nodes covering it}."""
        out: dict[str, list[str]] = {}
        for name, nodes in self.covered.items():
            for n in nodes:
                out.setdefault(n, []).append(name)
        return out


_CACHE: "weakref.WeakKeyDictionary[Any, OptimizedGraph]" = weakref.WeakKeyDictionary()


def optimized_graph(engine: "Engine") -> OptimizedGraph:
    """The graph ONNX Runtime runs for `engine` (an ONNX Runtime engine), mapped to source nodes; cached."""
    got = _CACHE.get(engine)
    if got is None:
        proto = engine.optimized_model()
        got = OptimizedGraph(proto, coverage(engine.model.proto, engine.session_proto, proto))
        _CACHE[engine] = got
    return got


__all__ = ["OptimizedGraph", "coverage", "optimized_graph"]
