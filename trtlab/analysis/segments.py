"""Run a model in consecutive segments so every intermediate tensor can be read without holding all at once.

ONNX Runtime allocates every graph output of a run, even ones not fetched, so marking all
tensors of one model makes one run hold all of them (resnet50 at batch 8: 1.15 GB of fp32).
Instead the graph is cut into segments in topological order; segment i's sub-model outputs its
share of the wanted tensors plus the tensors later segments read (the "carries"). Running the
segments in order computes exactly the full graph (each sub-model is the original nodes), while
only one segment's outputs and the carries are alive at a time.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx
from onnx import helper


@dataclass
class Segment:
    """One sub-model: the tensors it reads, the wanted tensors it yields, and the carries it passes on."""

    model: onnx.ModelProto
    inputs: list[str]
    wanted: list[str]
    outputs: list[str]
    carries: list[str] = field(default_factory=list)  # outputs later segments read
    release: list[str] = field(default_factory=list)  # tensors no later segment reads


def tensor_bytes(proto: onnx.ModelProto, batch: int, dims: Mapping[str, int] | None = None) -> dict[str, int]:
    """Estimated bytes of every typed tensor, symbolic dims taken from `dims`, else `batch`."""
    dims = dict(dims or {})
    out = {}
    g = proto.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        n = 1
        for d in t.shape.dim:
            n *= d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else dims.get(d.dim_param, batch)
        try:
            size = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).itemsize
        except Exception:
            size = 2
        out[vi.name] = n * size
    return out


def group_by_bytes(names: list[str], sizes: Mapping[str, int], budget: int) -> list[list[str]]:
    """Consecutive groups of `names` whose estimated sizes sum to at most `budget` (at least one each)."""
    groups: list[list[str]] = [[]]
    used = 0
    for name in names:
        size = sizes.get(name, 0)
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(name)
        used += size
    return [g for g in groups if g]


def split(proto: onnx.ModelProto, groups: list[list[str]]) -> list[Segment]:
    """Sub-models that together run `proto`, segment i yielding `groups[i]` (graph outputs in the last)."""
    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    graph_inputs = [i.name for i in g.input if i.name not in inits]
    nodes = list(g.node)
    producer = {o: k for k, n in enumerate(nodes) for o in n.output if o}
    types: dict[str, onnx.ValueInfoProto] = {v.name: v for v in list(g.input) + list(g.value_info) + list(g.output)}
    assigned = [-1] * len(nodes)
    final_outputs = [o.name for o in g.output]
    targets = [list(grp) for grp in groups]
    targets.append(final_outputs)
    for si, grp in enumerate(targets):
        stack = [producer[t] for t in grp if t in producer]
        while stack:
            k = stack.pop()
            if assigned[k] != -1:
                continue
            assigned[k] = si
            for t in nodes[k].input:
                if t in producer and assigned[producer[t]] == -1:
                    stack.append(producer[t])
            for a in nodes[k].attribute:  # outer-scope names read inside subgraphs
                for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                    for t in _outer_names(sub):
                        if t in producer and assigned[producer[t]] == -1:
                            stack.append(producer[t])
    # nodes nobody needs (dead ends) go with the last segment so nothing is skipped silently
    for k in range(len(nodes)):
        if assigned[k] == -1:
            assigned[k] = len(targets) - 1
    reads: dict[str, list[int]] = {}
    for k, n in enumerate(nodes):
        names = list(n.input) + [t for a in n.attribute for sub in
                                 ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs))
                                 for t in _outer_names(sub)]
        for t in names:
            if t and t not in inits:
                reads.setdefault(t, []).append(assigned[k])
    segments = []
    for si in range(len(targets)):
        seg_nodes = [n for k, n in enumerate(nodes) if assigned[k] == si]
        produced = {o for n in seg_nodes for o in n.output if o}
        needed: list[str] = []
        seen = set()
        for n in seg_nodes:
            names = list(n.input) + [t for a in n.attribute for sub in
                                     ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs))
                                     for t in _outer_names(sub)]
            for t in names:
                if t and t not in produced and t not in seen and (t in producer or t in graph_inputs) and t not in inits:
                    seen.add(t)
                    needed.append(t)
        wanted = [t for t in targets[si] if t in produced] if si < len(groups) else []
        if si == len(groups):
            wanted = []
        carries = [t for t in produced if any(r > si for r in reads.get(t, []))]
        outs = list(dict.fromkeys(wanted + [t for t in final_outputs if t in produced] + sorted(carries)))
        if not seg_nodes:
            continue
        used_inits = [inits[t] for n in seg_nodes for t in n.input if t in inits]
        used_inits = list({i.name: i for i in used_inits}.values())
        sub = helper.make_graph(seg_nodes, f"{g.name}_segment{si}",
                                [_vi(types, t) for t in needed], [_vi(types, t) for t in outs], used_inits)
        model = helper.make_model(sub, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
        segments.append(Segment(model=model, inputs=needed, wanted=wanted, outputs=outs, carries=sorted(carries)))
    # a carry can be dropped once the last segment reading it has run
    last_read: dict[str, int] = {}
    for si, seg in enumerate(segments):
        for t in seg.inputs:
            last_read[t] = si
    for t, si in last_read.items():
        segments[si].release.append(t)
    return segments


def _outer_names(graph: onnx.GraphProto) -> set[str]:
    local = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    local |= {o for n in graph.node for o in n.output}
    names = set()
    for n in graph.node:
        names.update(t for t in n.input if t and t not in local)
    return names


def _vi(types: Mapping[str, onnx.ValueInfoProto], name: str) -> onnx.ValueInfoProto:
    if name in types:
        vi = onnx.ValueInfoProto()
        vi.CopyFrom(types[name])
        return vi
    return helper.make_empty_tensor_value_info(name)


def return_freed_memory_to_os() -> bool:
    """On glibc, fix malloc's mmap threshold at 1 MiB so freed large tensors go back to the OS.

    glibc raises the threshold dynamically (up to 32 MiB) after a large block is freed, after which
    tensor-sized blocks come from the heap and stay resident, so RSS would grow with the number of
    tensors streamed even though only a few are alive. Process-wide and harmless (large blocks only).
    """
    import ctypes
    import sys
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 1 << 20))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


class SegmentedRunner:
    """Runs segment engines in order, yielding (tensor name, array) for the wanted tensors of each segment."""

    def __init__(self, segments: list[Segment], build: Callable[[onnx.ModelProto], Any]) -> None:
        return_freed_memory_to_os()
        self.segments = segments
        self.engines = []
        for s in segments:
            engine = build(s.model)
            # the runtime holds the weights now: drop the protobuf copies (segment engines are private,
            # never profiled or saved), so weights are not held twice
            s.model = None
            engine.variant.model = None
            self.engines.append(engine)

    def run(self, feeds: Mapping[str, np.ndarray]) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """For each segment index, the dict of its wanted tensors (carries kept internally, released early)."""
        live: dict[str, np.ndarray] = dict(feeds)
        for si, (seg, eng) in enumerate(zip(self.segments, self.engines)):
            inputs = {t: live[t] for t in seg.inputs}
            out = eng.run(inputs, seg.outputs) if seg.outputs else {}
            del inputs
            for t in seg.release:
                live.pop(t, None)
            wanted = {t: out[t] for t in seg.wanted}
            for t in seg.carries:
                live[t] = out[t]
            del out
            yield si, wanted
            del wanted

    def close(self) -> None:
        """Release the segment engines."""
        for e in self.engines:
            e.close()
