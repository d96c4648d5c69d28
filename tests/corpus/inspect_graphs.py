"""What each corpus graph covers, read from the graph itself and from one run on plain ONNX Runtime.

    python -m corpus.inspect_graphs          # (from tests/) prints the Markdown coverage table

Independent of trtlab: only onnx, onnxruntime and numpy.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
INT_TYPES = {onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32, onnx.TensorProto.INT64,
             onnx.TensorProto.UINT8, onnx.TensorProto.UINT16, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64}
PLACEHOLDER = re.compile(r"^(\?|unk__\d+|(p2o\.)?DynamicDimension\.\d+|s\d+)$")
WEIGHT_MIN = 16          # a float Constant with at least this many elements counts as weights

FEATURES = {
    "constant-weights": "float weights held in Constant nodes",
    "weights-in-subgraphs": "Constant weights inside If/Loop bodies",
    "all-dynamic": "every dimension of some input is dynamic",
    "unnamed-dims": "dynamic dimensions with no name at all",
    "placeholder-dims": "exporter placeholder names for dimensions (?, unk__N, DynamicDimension.N, sN)",
    "placeholder-shared": "one placeholder name standing for two axes of one input",
    "symbolic-output-dims": "output dimensions declared as expressions of input dimensions",
    "attention": "Softmax feeding a MatMul",
    "layernorm": "LayerNormalization op",
    "layernorm-decomposed": "LayerNorm spelled out (ReduceMean -> Sub -> Pow/Mul -> ReduceMean -> Sqrt)",
    "gelu": "GELU (Erf or Gelu)",
    "qdq": "QuantizeLinear / DequantizeLinear",
    "integer-input": "an integer graph input",
    "scalar-input": "a 0-d graph input",
    "multi-input": "several graph inputs",
    "multi-output": "several graph outputs",
    "control-flow": "If / Loop / Scan",
    "lstm": "LSTM / GRU / RNN",
    "batchnorm": "BatchNormalization",
    "resize": "Resize",
    "zoo-layout": "IR <= 3 and initializers also listed as graph inputs",
    "wrong-output-shape": "an output's actual shape contradicts its declared shape",
}


def walk(graph: onnx.GraphProto, depth: int = 0) -> Iterator[tuple[onnx.NodeProto, int]]:
    """Every node of the graph and of its subgraphs, with its nesting depth."""
    for node in graph.node:
        yield node, depth
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from walk(a.g, depth + 1)
            for g in a.graphs:
                yield from walk(g, depth + 1)


def dims(value: onnx.ValueInfoProto) -> list | None:
    """Declared dims: int, str (dim_param) or None (unnamed); None when no shape is declared."""
    t = value.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param if d.HasField("dim_param") else None)
            for d in t.shape.dim]


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {i.name for i in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in inits]


def constant_weights(model: onnx.ModelProto) -> tuple[int, int]:
    """(elements of float weights in Constant nodes, of which inside subgraphs)."""
    total = nested = 0
    for node, depth in walk(model.graph):
        if node.op_type != "Constant":
            continue
        for a in node.attribute:
            if a.name == "value" and a.t.data_type in FLOAT_TYPES:
                n = int(np.prod(a.t.dims)) if a.t.dims else 1
                if n >= WEIGHT_MIN:
                    total += n
                    nested += n if depth else 0
    return total, nested


def _softmax_feeds_matmul(graph_nodes: list[onnx.NodeProto]) -> bool:
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph_nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for n in graph_nodes:
        if n.op_type != "Softmax":
            continue
        frontier, seen = list(n.output), set()
        while frontier:                                     # through casts / dropout / reshapes
            t = frontier.pop()
            for c in consumers.get(t, []):
                if c.op_type in ("MatMul", "Einsum"):
                    return True
                if c.op_type in ("Cast", "Dropout", "Reshape", "Identity", "QuantizeLinear",
                                 "DequantizeLinear") and c.name not in seen:
                    seen.add(c.name)
                    frontier.extend(c.output)
    return False


def _decomposed_layernorm(graph_nodes: list[onnx.NodeProto]) -> bool:
    producer = {o: n for n in graph_nodes for o in n.output}
    for n in graph_nodes:
        if n.op_type == "Sqrt":
            # Sqrt(ReduceMean(Pow(Sub(x, ReduceMean(x))) + eps))
            chain = []
            cur = producer.get(n.input[0])
            while cur is not None and len(chain) < 4:
                chain.append(cur.op_type)
                if cur.op_type == "Sub":
                    break
                cur = producer.get(cur.input[0])
            if "ReduceMean" in chain and chain[-1:] == ["Sub"] and ("Pow" in chain or "Mul" in chain):
                sub = cur
                if any(producer.get(i) is not None and producer[i].op_type == "ReduceMean" for i in sub.input):
                    return True
    return False


def run_shapes(model_path, feeds: dict) -> dict[str, tuple[int, ...]]:
    """The actual output shapes on plain ONNX Runtime (CPU, one thread)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return {n: tuple(np.asarray(v).shape) for n, v in zip(names, sess.run(names, feeds))}


def wrong_output_shapes(model: onnx.ModelProto, feeds: dict, actual: dict[str, tuple[int, ...]]) -> list[str]:
    """Outputs whose actual shape contradicts the declaration: rank, a fixed dim, or a dim name bound elsewhere."""
    bound: dict[str, int] = {}
    for v in graph_inputs(model):
        for d, n in zip(dims(v) or [], np.shape(feeds[v.name])):
            if isinstance(d, str) and d:
                bound.setdefault(d, n)
    wrong = []
    for v in model.graph.output:
        declared, got = dims(v), actual[v.name]
        if declared is None:
            continue
        if len(declared) != len(got):
            wrong.append(f"{v.name}: declared rank {len(declared)} {declared}, actual {list(got)}")
            continue
        for i, (d, n) in enumerate(zip(declared, got)):
            if (isinstance(d, int) and d > 0 and d != n) or (isinstance(d, str) and bound.get(d, n) != n):
                wrong.append(f"{v.name}: axis {i} declared {d!r}, actual {n} (shape {list(got)})")
                break
    return wrong


def features(model_path, feeds: dict | None = None,
             actual: dict[str, tuple[int, ...]] | None = None) -> dict[str, object]:
    """Feature name -> evidence (a truthy value) for every feature the graph has.

    With `feeds`, the output shapes of one run (`actual`, or a plain-ORT run made here) are checked too."""
    model = onnx.load(str(model_path))
    g = model.graph
    nodes = [n for n, _ in walk(g)]
    ops = Counter(n.op_type for n in nodes)
    ins, outs = graph_inputs(model), list(g.output)
    found: dict[str, object] = {}
    cw, nested = constant_weights(model)
    if cw:
        found["constant-weights"] = f"{cw} elements"
    if nested:
        found["weights-in-subgraphs"] = f"{nested} elements"
    in_dims = {v.name: dims(v) or [] for v in ins}
    if any(d and all(not isinstance(x, int) or x <= 0 for x in d) for d in in_dims.values()):
        found["all-dynamic"] = [k for k, d in in_dims.items() if d and all(not isinstance(x, int) or x <= 0 for x in d)]
    every = [x for v in ins + outs for x in (dims(v) or [])]
    if any(x is None for x in every):
        found["unnamed-dims"] = True
    names = sorted({x for x in every if isinstance(x, str) and PLACEHOLDER.match(x)}
                   | ({"-1"} if any(isinstance(x, int) and x < 0 for x in every) else set()))
    if names:
        found["placeholder-dims"] = names
    shared = [f"{k}: {d}" for k, d in in_dims.items()
              for p in {x for x in d if isinstance(x, str)} if d.count(p) > 1]
    if shared:
        found["placeholder-shared"] = shared
    sym = [x for v in outs for x in (dims(v) or []) if isinstance(x, str) and re.search(r"[()/*+]", x)]
    if sym:
        found["symbolic-output-dims"] = sym[0][:40] + "..."
    if _softmax_feeds_matmul(nodes):
        found["attention"] = f"{ops['Softmax']} Softmax"
    if ops["LayerNormalization"]:
        found["layernorm"] = ops["LayerNormalization"]
    if _decomposed_layernorm(nodes):
        found["layernorm-decomposed"] = True
    if ops["Erf"] or ops["Gelu"]:
        found["gelu"] = ops["Erf"] + ops["Gelu"]
    if ops["QuantizeLinear"] or ops["DequantizeLinear"]:
        found["qdq"] = ops["QuantizeLinear"] + ops["DequantizeLinear"]
    ints = [v.name for v in ins if v.type.tensor_type.elem_type in INT_TYPES]
    if ints:
        found["integer-input"] = ints
    scalars = [v.name for v in ins if dims(v) == []]
    if scalars:
        found["scalar-input"] = scalars
    if len(ins) > 1:
        found["multi-input"] = len(ins)
    if len(outs) > 1:
        found["multi-output"] = len(outs)
    cf = {op: ops[op] for op in ("If", "Loop", "Scan") if ops[op]}
    if cf:
        found["control-flow"] = cf
    rnn = {op: ops[op] for op in ("LSTM", "GRU", "RNN") if ops[op]}
    if rnn:
        found["lstm"] = rnn
    if ops["BatchNormalization"]:
        found["batchnorm"] = ops["BatchNormalization"]
    if ops["Resize"]:
        found["resize"] = ops["Resize"]
    inits = {i.name for i in g.initializer}
    if model.ir_version <= 3 and any(v.name in inits for v in g.input):
        found["zoo-layout"] = f"IR {model.ir_version}, {sum(v.name in inits for v in g.input)} initializers as inputs"
    if feeds is not None:
        wrong = wrong_output_shapes(model, feeds, actual if actual is not None else run_shapes(model_path, feeds))
        if wrong:
            found["wrong-output-shape"] = wrong
    return found


def table(models) -> str:
    """Markdown: one row per model, the features found (inspected, with the feeds run once on ORT)."""
    rows = ["| id | package==version | file | sha256 | licence | covers (inspected) |", "| --- | --- | --- | --- | --- | --- |"]
    for m in models:
        found = features(m.path, m.feeds()[0])
        rows.append(f"| {m.id} | {m.wheel} | `{m.member.rsplit('/', 1)[-1]}` | `{m.sha256[:12]}` | {m.licence} | "
                    f"{', '.join(found)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from corpus import MODELS
    for m in MODELS:
        m.fetch()
    if "--evidence" in sys.argv:
        for m in MODELS:
            print(m.id, features(m.path, m.feeds()[0]))
    else:
        print(table(MODELS))
