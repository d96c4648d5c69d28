"""Which ONNX nodes each engine layer covers: ONNX Runtime's optimised nodes, TensorRT layers, trtexec exports.

Every per-layer table names its layers' ONNX nodes by the ids of the *source* model (the model the user loaded,
unnamed nodes named `<op_type>_<index>` by `trtlab.model.name_nodes`), so engines of different precisions,
backends or versions can be lined up node by node. Three steps get there:

1. `variant_origin`: the variant (fp16 Casts, Q/DQ pairs, renamed outputs) back to the source: a node trtlab
   inserted stands for the source node it serves (the first source node reading what it writes, else the one
   producing what it reads).
2. `ort_coverage`: ONNX Runtime's optimised graph back to the variant. An optimised node's outputs that exist in
   the variant (tensor names; ORT's own prefix `InsertedPrecisionFreeCast_` removed) and the tensor its name
   carries (the NCHWc transformer names a node `<output>_nchwc`) bound a region: the variant nodes between those
   tensors and the boundary tensors of the other optimised nodes. Layout and copy nodes ORT adds (ReorderInput,
   ReorderOutput, the Reshapes around an NCHWc Add, Casts of weights) cover nothing of their own and take the
   nodes of the layer they serve (`inherit`).
3. For TensorRT, the layer's `[ONNX Layer: name]` metadata (ProfilingVerbosity.DETAILED) names the variant nodes;
   without it the layer name is unwrapped the way TensorRT Engine Explorer does (`A + B`, `PWN(A, B)`,
   `Reformatting CopyNode for Input Tensor 0 to A`, `{ForeignNode[A...B]}`) and resolved against the model.

`node_costs` gives each source node an estimate of its arithmetic, used to split a fused layer's time over the
nodes it covers (`LayerProfile.by_onnx_node`).
"""
from __future__ import annotations

import re
from collections import deque
from typing import Any, Callable, Iterable

import numpy as np

ORT_CAST_PREFIX = "InsertedPrecisionFreeCast_"
# ONNX Runtime nodes that only move or re-lay data for a neighbour
ORT_AUX_OPS = frozenset({"ReorderInput", "ReorderOutput", "MemcpyToHost", "MemcpyFromHost"})
# source nodes that hold or compute only constants: they never run as a layer and get no time
WEIGHT_OPS = frozenset({"Constant", "ConstantOfShape"})


def _strip_ort(name: str) -> str:
    while name.startswith(ORT_CAST_PREFIX):
        name = name[len(ORT_CAST_PREFIX):]
    return name


def _nodes(model: Any) -> list[Any]:
    graph = model.graph if hasattr(model, "graph") else model
    return list(graph.node)


def _graph(model: Any) -> Any:
    return model.graph if hasattr(model, "graph") else model


def all_node_names(model: Any) -> set[str]:
    """Names of every node, subgraphs (If/Loop/Scan bodies) included."""
    out, stack = set(), [_graph(model)]
    while stack:
        g = stack.pop()
        for n in g.node:
            out.add(n.name)
            for a in n.attribute:
                if a.type == 5:  # GRAPH
                    stack.append(a.g)
                elif a.type == 10:  # GRAPHS
                    stack.extend(a.graphs)
    return out


def constant_tensors(model: Any) -> set[str]:
    """Tensors that hold weights: initializers (not graph inputs), Constant outputs, and what nodes compute from
    those alone (ONNX Runtime and TensorRT fold them before running)."""
    g = _graph(model)
    const = {t.name for t in g.initializer} - {i.name for i in g.input}
    for n in g.node:
        ins = [t for t in n.input if t]
        if n.op_type in WEIGHT_OPS or (ins and all(t in const for t in ins)):
            const.update(t for t in n.output if t)
    return const


def variant_origin(source: Any, variant: Any) -> dict[str, str]:
    """{variant node name: the source node id it stands for}; nodes of the source map to themselves."""
    known = all_node_names(source)
    nodes = _nodes(variant)
    producer = {t: n for n in nodes for t in n.output if t}
    readers: dict[str, list[Any]] = {}
    for n in nodes:
        for t in n.input:
            if t:
                readers.setdefault(t, []).append(n)
    origin = {name: name for name in all_node_names(variant) if name in known}

    def nearest_known(node: Any, step: Any) -> str | None:
        """Breadth-first from `node` along `step(node)` (its readers or its producers): the first known node."""
        seen, queue = {node.name}, deque([node])
        while queue:
            for nxt in step(queue.popleft()):
                if nxt.name in known:
                    return nxt.name
                if nxt.name not in seen:
                    seen.add(nxt.name)
                    queue.append(nxt)
        return None

    def forward(node: Any) -> str | None:
        return nearest_known(node, lambda cur: (r for t in cur.output for r in readers.get(t, [])))

    def backward(node: Any) -> str | None:
        return nearest_known(node, lambda cur: (producer[t] for t in cur.input if t in producer))

    for n in nodes:
        if n.name not in origin:
            target = forward(n) or backward(n)
            if target is not None:
                origin[n.name] = target
    return origin


def ort_coverage(variant: Any, optimized: Any) -> dict[str, list[str]]:
    """{optimised node name: the variant nodes it covers}, in the variant's order (see the module docstring)."""
    vnodes = _nodes(variant)
    order = {n.name: k for k, n in enumerate(vnodes)}
    vproducer = {t: n for n in vnodes for t in n.output if t}
    vnamed = {n.name: n for n in vnodes}
    sub_names = all_node_names(variant) - set(vnamed)
    vg = _graph(variant)
    stop = {i.name for i in vg.input} | {i.name for i in vg.initializer}
    weights = constant_tensors(variant)
    onodes = _nodes(optimized)

    # 1. the variant tensors each optimised node stands for: by its name first, then by its outputs
    ends: dict[str, list[str]] = {}
    claimed: set[str] = set()
    for n in onodes:
        base = _strip_ort(n.name)
        tensors: list[str] = []
        if base in vnamed:
            tensors = [t for t in vnamed[base].output if t in vproducer]
        elif base.endswith("_nchwc") and base[:-6] in vproducer:
            tensors = [base[:-6]]
        ends[n.name] = tensors
        claimed.update(tensors)
    # the NCHWc transformer names a Conv after its output before it fused a following Add (its 4th, "Sum" input)
    # and activation into it: those nodes are this Conv's too
    onames = {_strip_ort(n.name) for n in onodes}
    readers: dict[str, list[Any]] = {}
    for v in vnodes:
        for t in v.input:
            readers.setdefault(t, []).append(v)

    def absorb(end: str, ops: tuple[str, ...]) -> str | None:
        for r in readers.get(end, []):
            if r.op_type in ops and r.name not in onames and r.output and r.output[0] not in claimed:
                return r.output[0]
        return None

    for n in onodes:
        if n.op_type != "Conv" or n.domain != "com.microsoft.nchwc" or len(ends[n.name]) != 1:
            continue
        end, added = ends[n.name][0], []
        if len([t for t in n.input if t]) >= 4:
            nxt = absorb(end, ("Add", "Sum"))
            if nxt:
                added.append(nxt)
                end = nxt
        act = next((a.s.decode() for a in n.attribute if a.name == "activation"), None)
        if act:
            nxt = absorb(end, (act,))
            if nxt:
                added.append(nxt)
        ends[n.name] = ends[n.name] + added
        claimed.update(added)
    for n in onodes:
        if n.op_type in ORT_AUX_OPS:
            continue
        extra = [t for t in (_strip_ort(o) for o in n.output) if t in vproducer and t not in claimed]
        ends[n.name] = ends[n.name] + extra
        claimed.update(extra)
    stop |= claimed

    # 2. each node's region: variant producers walked back from its tensors up to other nodes' tensors
    cover: dict[str, list[str]] = {}
    for n in onodes:
        seen: set[str] = set()
        passed: set[str] = set()
        stack = list(ends[n.name])
        while stack:
            p = vproducer[stack.pop()]
            if p.name in seen or p.name in passed:
                continue
            if all(t in weights for t in p.output if t):
                # a weight (a Constant, or computed from weights: folded, never run) is no layer's work, but what
                # computes its shape (ConstantOfShape of a runtime shape) is this node's
                passed.add(p.name)
            else:
                seen.add(p.name)
            stack.extend(i for i in p.input if i and i in vproducer and i not in stop)
        if not seen and _strip_ort(n.name) in sub_names:
            cover[n.name] = [_strip_ort(n.name)]
        else:
            cover[n.name] = sorted(seen, key=order.get)

    # 3. layout, copy and cast nodes serve their neighbour
    layers = [{"name": n.name, "inputs": list(n.input), "outputs": list(n.output), "nodes": cover[n.name],
               "feeds_forward": n.op_type == "ReorderInput"} for n in onodes]
    return {r["name"]: r["nodes"] for r in inherit(layers)}


def inherit(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Layers that cover no node take the nodes of the layer they serve, found through the tensors they share:
    the producer of what they read (a reformat after a layer), else a reader of what they write (a reformat in
    front of one; first when the row says `feeds_forward`). Rows are dicts with name, inputs, outputs, nodes."""
    producer = {t: k for k, r in enumerate(layers) for t in r.get("outputs") or [] if t}
    readers: dict[str, list[int]] = {}
    for k, r in enumerate(layers):
        for t in r.get("inputs") or []:
            if t:
                readers.setdefault(t, []).append(k)
    own = [list(r.get("nodes") or []) for r in layers]

    def search(k: int, forward: bool) -> list[str]:
        seen, queue = {k}, deque([k])
        while queue:
            cur = queue.popleft()
            if forward:
                nxt = [j for t in layers[cur].get("outputs") or [] for j in readers.get(t, [])]
            else:
                nxt = [producer[t] for t in layers[cur].get("inputs") or [] if t in producer]
            for j in nxt:
                if own[j]:
                    return own[j]
                if j not in seen:
                    seen.add(j)
                    queue.append(j)
        return []

    out = []
    for k, r in enumerate(layers):
        nodes = own[k]
        if not nodes:
            first = bool(r.get("feeds_forward"))
            nodes = search(k, first) or search(k, not first)
        out.append({**r, "nodes": list(nodes)})
    return out


# ---- TensorRT layer names and metadata ---------------------------------------------------------------
_META = re.compile(r"\[ONNX Layer: (.*?)\](?=\x1f|\x1e|\[|$|\s)", re.S)
_FOREIGN = re.compile(r"\{ForeignNode\[(.*?)\.\.\.(.*?)\]\}")
_REFORMAT = re.compile(r"^Reformatting CopyNode for (?:Input|Output) Tensor \d+ to (.*)$")
_PWN = re.compile(r"^PWN\((.*)\)$")
_UNNAMED = re.compile(r"^\(Unnamed Layer\* ?\d+\) \[[^\]]+\](?:_output)?_?")


def metadata_nodes(metadata: str | None) -> list[str]:
    """The ONNX node names in a TensorRT layer's Metadata ('[ONNX Layer: a]\\x1f[ONNX Layer: b]')."""
    if not metadata:
        return []
    found: list[str] = []
    for part in re.split(r"[\x1f\x1e]", str(metadata)):
        names = re.findall(r"\[ONNX Layer: (.*?)\]", part)
        if names:
            found.extend(names)
            # Myelin sometimes lists further nodes as bare '[name]' after the first '[ONNX Layer: ...]'
            tail = part[part.rfind("[ONNX Layer: ") :]
            tail = tail[tail.find("]") + 1:]
            found.extend(re.findall(r"\[([^\[\]]+)\]", tail))
    return list(dict.fromkeys(n.strip() for n in found if n.strip()))


def layer_name_nodes(name: str) -> list[str]:
    """Node names a TensorRT layer name spells out (TensorRT Engine Explorer's unwrapping rules); a
    '{ForeignNode[A...B]}' gives the marker 'A...B' that `resolve_names` expands over the model."""
    name = str(name).strip()
    m = _REFORMAT.match(name)
    if m:
        return layer_name_nodes(m.group(1))
    m = _PWN.match(name)
    if m:
        name = m.group(1)
    out: list[str] = []
    for part in re.split(r" \+ |, ", name):
        part = part.strip()
        f = _FOREIGN.search(part)
        if f:
            out.append(f"{f.group(1)}...{f.group(2)}")
            continue
        part = _UNNAMED.sub("", part)
        if part:
            out.append(part)
    return list(dict.fromkeys(out))


def layer_nodes(name: str, metadata: str | None = None, layer_type: str | None = None) -> list[str]:
    """The node names a TensorRT layer record gives: its metadata when it has any, else its name unwrapped;
    Myelin's own kernels and events (`__myl_...`, `__mye...`) and bare reformats name no node."""
    found = metadata_nodes(metadata)
    if found:
        return found
    name = str(name)
    if name.startswith(("__myl_", "__mye")) or (layer_type == "Reformat" and not _REFORMAT.match(name)):
        return []
    return layer_name_nodes(name)


def resolve_names(names: Iterable[str], model: Any, origin: dict[str, str] | None = None) -> list[str]:
    """Map node names as TensorRT reports them to source node ids: a node name; the output tensor of a node
    (TensorRT names unnamed ONNX nodes after it, also as 'node_of_<tensor>'); 'A...B' as every node from A to
    B in graph order. `origin` (from `variant_origin`) maps variant-only nodes. Names that match nothing are
    dropped."""
    return name_resolver(model, origin)(names)


def name_resolver(model: Any, origin: dict[str, str] | None = None) -> Callable[[Iterable[str]], list[str]]:
    """`resolve_names` for one model, its lookups built once (for mapping many layers)."""
    nodes = _nodes(model)
    index = {n.name: k for k, n in enumerate(nodes)}
    known = all_node_names(model)
    sub = {n: len(index) + k for k, n in enumerate(sorted(known - set(index)))}  # subgraph nodes after the rest
    by_output = {t: n.name for n in nodes for t in n.output if t}
    origin = origin or {}

    def one(name: str) -> list[str]:
        if name in origin:
            return [origin[name]]
        if name in known:
            return [name]
        if name.startswith("node_of_") and name[8:] in by_output:
            return [by_output[name[8:]]]
        if name in by_output:
            return [by_output[name]]
        if "..." in name:
            a, b = (one(x) for x in name.split("...", 1))
            if a and b and a[0] in index and b[0] in index:
                lo, hi = sorted((index[a[0]], index[b[0]]))
                return [n.name for n in nodes[lo:hi + 1]]
        return []

    def resolve(names: Iterable[str]) -> list[str]:
        out: list[str] = []
        for n in names:
            out.extend(one(n))
        return sorted(dict.fromkeys(out), key=lambda x: index.get(x, sub.get(x, 0)))
    return resolve


# ---- cost of each node: how a fused layer's time is split ---------------------------------------------
def _shape_map(model: Any) -> dict[str, list[int]]:
    g = _graph(model)
    out = {}
    for vi in list(g.value_info) + list(g.output) + list(g.input):
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            out[vi.name] = [int(d.dim_value) for d in dims]
    for t in g.initializer:
        out[t.name] = list(t.dims)
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = list(a.t.dims)
    return out


def node_costs(model: Any, input_shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, float]:
    """Estimated arithmetic of each main-graph node (multiply-adds count 2): Conv, ConvTranspose, MatMul and Gemm
    from their shapes, every other op one operation per output element, Constants and nodes computing only from
    weights (folded before running) zero. A node whose shapes are unknown is missing from the result."""
    import onnx
    proto = model
    if input_shapes:
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
        for vi in proto.graph.input:
            if vi.name in input_shapes:
                shape = input_shapes[vi.name]
                vi.type.tensor_type.ClearField("shape")
                for d in shape:
                    vi.type.tensor_type.shape.dim.add().dim_value = int(d)
    try:
        proto = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # a model shape inference cannot follow: sizes stay unknown, times split equally
        pass
    shapes = _shape_map(proto)
    g = _graph(proto)
    const = {t.name for t in g.initializer} - {i.name for i in g.input}
    costs: dict[str, float] = {}
    for n in g.node:
        ins = [t for t in n.input if t]
        if n.op_type in WEIGHT_OPS or (ins and all(t in const for t in ins)):
            costs[n.name] = 0.0
            const.update(t for t in n.output if t)
            continue
        out = shapes.get(n.output[0]) if n.output else None
        if out is None:
            continue
        elems = float(np.prod(out)) if out else 1.0
        if n.op_type in ("Conv", "ConvTranspose") and len(ins) > 1 and ins[1] in shapes:
            w = shapes[ins[1]]
            per = float(np.prod(w[1:])) if n.op_type == "Conv" else float(np.prod(w[2:])) * w[0]
            if n.op_type == "ConvTranspose" and ins[0] in shapes:
                x = shapes[ins[0]]
                costs[n.name] = 2.0 * float(np.prod(x)) * float(np.prod(w[1:]))
                continue
            costs[n.name] = 2.0 * elems * per
        elif n.op_type in ("MatMul", "Gemm") and ins and ins[0] in shapes and shapes[ins[0]]:
            a = shapes[ins[0]]
            trans_a = any(x.name == "transA" and x.i for x in n.attribute)
            k = a[-2] if (n.op_type == "Gemm" and trans_a) else a[-1]
            costs[n.name] = 2.0 * elems * float(k)
        else:
            costs[n.name] = elems
    return costs


def split_time(ms: float, nodes: list[str], costs: dict[str, float] | None) -> dict[str, float]:
    """A layer's time over the nodes it covers: in proportion to their costs when every node's cost is known
    and their sum is positive, else in equal parts."""
    if not nodes:
        return {}
    w = [costs.get(n) for n in nodes] if costs else [None]
    if costs and all(x is not None for x in w) and sum(w) > 0:  # type: ignore[arg-type]
        total = float(sum(w))  # type: ignore[arg-type]
        return {n: ms * float(x) / total for n, x in zip(nodes, w)}  # type: ignore[arg-type]
    return {n: ms / len(nodes) for n in nodes}


__all__ = ["variant_origin", "ort_coverage", "inherit", "metadata_nodes", "layer_name_nodes", "layer_nodes",
           "resolve_names", "name_resolver", "constant_tensors",
           "node_costs", "split_time", "all_node_names"]
