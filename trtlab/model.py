"""Loading, validating and viewing ONNX models: the first step of the one data flow."""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import ConfigError, DynamicShapeError, ModelError, ModelTooLargeError, UnsupportedOpsetError

_TWO_GB = 2**31
_FLOAT_ELEM_TYPES = frozenset({TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE})
ModelSource = Union[str, os.PathLike, bytes, onnx.ModelProto, "Model"]


@dataclass(frozen=True)
class TensorInfo:
    """A named tensor: shape (ints, or str/None for unknown dims) and numpy dtype name."""

    name: str
    shape: tuple[int | str | None, ...] | None
    dtype: str

    @property
    def is_static(self) -> bool:
        """True when every dimension is a known integer."""
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)


def onnx_dtype_name(elem_type: int) -> str:
    """numpy dtype name of an ONNX element type ('float32', 'int64', 'bfloat16', ...)."""
    if elem_type == TensorProto.BFLOAT16:
        return "bfloat16"
    if elem_type in (TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2,
                     TensorProto.FLOAT8E5M2FNUZ):
        return TensorProto.DataType.Name(elem_type).lower()
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except Exception:
        return TensorProto.DataType.Name(elem_type).lower()


def _value_info(vi: onnx.ValueInfoProto) -> TensorInfo:
    t = vi.type.tensor_type
    shape = None
    if t.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)
    return TensorInfo(vi.name, shape, onnx_dtype_name(t.elem_type))


@lru_cache(maxsize=1)
def onnxruntime_max_opset() -> int | None:
    """Highest ai.onnx opset the installed onnxruntime officially runs (None if unknown)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    import re
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 999)])
    m.ir_version = 8
    try:
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:
        found = re.search(r"till opset (\d+)", str(exc))
        return int(found.group(1)) if found else None
    return None


def _tensor_identity(tensor: TensorProto, base_dir: str) -> bytes:
    """Name, element type, dims and data of a tensor (external data read from `base_dir`), as bytes."""
    data = numpy_helper.to_array(tensor, base_dir=base_dir)
    head = f"{tensor.name}|{tensor.data_type}|{list(tensor.dims)}|".encode()
    if data.dtype.kind == "O":  # string tensors: the strings themselves, not the object pointers
        return head + b"".join(len(v).to_bytes(8, "little") + bytes(v) for v in data.ravel())
    return head + np.ascontiguousarray(data).tobytes()


def subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The bodies a node holds (If's branches, Loop's and Scan's body), in attribute order."""
    out: list[onnx.GraphProto] = []
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            out.append(a.g)
        elif a.type == onnx.AttributeProto.GRAPHS:
            out.extend(a.graphs)
    return out


def all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Every node of `graph` and of the bodies inside it, depth first: each node followed by its bodies' nodes."""
    out: list[onnx.NodeProto] = []
    for node in graph.node:
        out.append(node)
        for body in subgraphs(node):
            out.extend(all_nodes(body))
    return out


def outer_names(graph: onnx.GraphProto) -> set[str]:
    """Tensors a body (and the bodies inside it) reads from the scopes around it: read, but defined nowhere inside."""
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    read: set[str] = set()
    for node in graph.node:
        read.update(t for t in node.input if t)
        for body in subgraphs(node):
            read |= outer_names(body)
        defined.update(t for t in node.output if t)
    read.update(o.name for o in graph.output)
    return read - defined


# the body that defines a tensor: [(node index, attribute name), ...] from the main graph down
BodyPath = tuple[tuple[int, str], ...]


def body_tensors(graph: onnx.GraphProto) -> dict[str, BodyPath]:
    """{tensor: path to the body defining it} for every input and node output of a body (not the main graph's),
    in graph order, Constant outputs excluded (they are weights, not activations)."""
    out: dict[str, BodyPath] = {}

    def walk(g: onnx.GraphProto, path: BodyPath) -> None:
        if path:  # a Loop/Scan body's inputs (iteration count, condition, carried state, scan slices)
            for vi in g.input:
                out.setdefault(vi.name, path)
        for i, node in enumerate(g.node):
            if path and node.op_type != "Constant":
                for t in node.output:
                    if t:
                        out.setdefault(t, path)
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g, path + ((i, a.name),))

    walk(graph, ())
    return out


def name_nodes(model: onnx.ModelProto) -> int:
    """Give every unnamed node (subgraphs included) the id `<op_type>_<index>`, unique in the model; returns how
    many were named. Done once when trtlab loads a model, so pins, rankings and reports all use the same ids."""
    graphs, taken, unnamed = [model.graph], set(), []
    while graphs:
        g = graphs.pop()
        for node in g.node:
            (taken.add(node.name) if node.name else unnamed.append(node))
            for a in node.attribute:
                graphs.extend([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs))
    counts: dict[str, int] = {}
    for node in unnamed:
        while True:
            i = counts.get(node.op_type, 0)
            counts[node.op_type] = i + 1
            name = f"{node.op_type}_{i}"
            if name not in taken:
                break
        node.name = name
        taken.add(name)
    return len(unnamed)


def _copy_if_unnamed(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` itself when every node (in subgraphs too) has a name, else a copy that ``name_nodes`` may edit."""
    graphs = [proto.graph]
    while graphs:
        g = graphs.pop()
        for node in g.node:
            if not node.name:
                copy = onnx.ModelProto()
                copy.CopyFrom(proto)
                return copy
            for a in node.attribute:
                graphs.extend([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs))
    return proto


class Model:
    """A checked ONNX model with inferred shapes, a hash, and a graph view."""

    def __init__(self, proto: onnx.ModelProto, name: str = "model", path: Path | None = None) -> None:
        self.proto = proto
        self.name = name
        self.path = path

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, source: ModelSource, name: str | None = None, check_runtime: bool = True) -> "Model":
        """Load from a path, bytes or ModelProto; check it and infer shapes, or raise ModelError."""
        if isinstance(source, Model):
            return source
        path: Path | None = None
        if isinstance(source, onnx.ModelProto):
            proto = _copy_if_unnamed(source)  # the caller's proto is theirs: naming nodes must not change it
            label = name or (source.graph.name or "model")
        elif isinstance(source, (bytes, bytearray)):
            label = name or "model (bytes)"
            proto = _parse(bytes(source), label)
        else:
            path = Path(source)
            label = name or path.stem
            proto = _read_file(path)
        name_nodes(proto)  # unnamed nodes get stable ids before anything reads node names
        model = cls(proto, name=label, path=path)
        model._validate(check_runtime)
        return model

    def _validate(self, check_runtime: bool) -> None:
        where = str(self.path) if self.path else self.name
        if not self.proto.graph.node and not self.proto.graph.output:
            raise ModelError(f"{where} holds no graph: is it really an ONNX model? Export it again with torch.onnx.export or tf2onnx.")
        opset = self.opset
        if opset > onnx.defs.onnx_opset_version():
            raise UnsupportedOpsetError(
                f"{where} uses opset {opset} but the installed onnx knows opsets up to "
                f"{onnx.defs.onnx_opset_version()}: upgrade onnx, or export the model with an older opset")
        ort_max = onnxruntime_max_opset() if check_runtime else None
        if ort_max is not None and opset > ort_max:
            raise UnsupportedOpsetError(
                f"{where} uses opset {opset} but the installed onnxruntime runs opsets up to {ort_max}: "
                f"upgrade onnxruntime, or export with opset_version<={ort_max}")
        try:
            if self.proto.ByteSize() < _TWO_GB:
                onnx.checker.check_model(self.proto)
            elif self.path is not None:
                onnx.checker.check_model(str(self.path))
        except onnx.checker.ValidationError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ModelError(f"{where} is not a valid ONNX model: {first}. Fix the exporter output "
                             f"(onnx.checker.check_model shows the full report)") from None
        try:
            if self.proto.ByteSize() < _TWO_GB:
                self.proto = onnx.shape_inference.infer_shapes(self.proto, data_prop=True)
        except Exception as exc:  # shape inference failing is not fatal: shapes stay unknown
            self.shape_inference_error = str(exc)

    # ---- identity ------------------------------------------------------------------------
    @cached_property
    def hash(self) -> str:
        """sha256 (first 16 hex digits) of everything that decides what the model computes: IR version, every
        opset import, model-local functions, nodes (attributes and subgraphs included), graph inputs and
        outputs, and each initializer's name, dtype, dims and data (sparse ones too). Names the workspace folder."""
        h = hashlib.sha256()

        def put(tag: str, data: bytes) -> None:  # framed, so no two different sequences hash alike
            h.update(tag.encode() + b"\0" + len(data).to_bytes(8, "little") + data)

        base = str(self.path.parent) if self.path else ""
        put("ir_version", str(self.proto.ir_version).encode())
        for imp in sorted(self.proto.opset_import, key=lambda o: (o.domain or "ai.onnx", o.version)):
            put("opset", f"{imp.domain or 'ai.onnx'}={imp.version}".encode())
        for fn in self.proto.functions:
            put("function", fn.SerializeToString(deterministic=True))
        g = self.proto.graph
        for node in g.node:
            put("node", node.SerializeToString(deterministic=True))
        for init in g.initializer:
            put("initializer", _tensor_identity(init, base))
        for sparse in g.sparse_initializer:
            put("sparse.values", _tensor_identity(sparse.values, base))
            put("sparse.indices", _tensor_identity(sparse.indices, base))
            put("sparse.dims", repr(list(sparse.dims)).encode())
        for vi in g.input:
            put("input", vi.SerializeToString(deterministic=True))
        for vi in g.output:
            put("output", vi.SerializeToString(deterministic=True))
        return h.hexdigest()[:16]

    @property
    def opset(self) -> int:
        """The model's ai.onnx opset version."""
        for imp in self.proto.opset_import:
            if imp.domain in ("", "ai.onnx"):
                return imp.version
        return 0

    # ---- tensors and nodes ---------------------------------------------------------------
    @cached_property
    def _initializer_names(self) -> set[str]:
        return {i.name for i in self.proto.graph.initializer}

    @property
    def inputs(self) -> list[TensorInfo]:
        """Graph inputs that are fed at run time (initializers excluded)."""
        return [_value_info(v) for v in self.proto.graph.input if v.name not in self._initializer_names]

    @property
    def outputs(self) -> list[TensorInfo]:
        """Graph outputs."""
        return [_value_info(v) for v in self.proto.graph.output]

    @cached_property
    def value_infos(self) -> dict[str, TensorInfo]:
        """Every tensor with a known type: inputs, outputs and inferred intermediates."""
        g = self.proto.graph
        out = {v.name: _value_info(v) for v in list(g.input) + list(g.value_info) + list(g.output)}
        for init in g.initializer:
            out[init.name] = TensorInfo(init.name, tuple(init.dims), onnx_dtype_name(init.data_type))
        return out

    @property
    def node_names(self) -> list[str]:
        """Node names in graph (topological) order."""
        return [n.name for n in self.proto.graph.node]

    def observable_names(self) -> list[str]:
        """activation_names() with the tensors of each If/Loop/Scan body (body_activation_names) placed just before
        the outputs of the node holding the body: every tensor that can be marked, in the order it is computed."""
        by_node: dict[int, list[str]] = {}
        for t, path in body_tensors(self.proto.graph).items():
            by_node.setdefault(path[0][0], []).append(t)
        top = set(self.activation_names())
        out: list[str] = []
        seen: set[str] = set()
        for i, node in enumerate(self.proto.graph.node):
            for t in by_node.get(i, []) + [o for o in node.output if o in top]:
                if t not in seen:
                    seen.add(t)
                    out.append(t)
        return out

    def body_activation_names(self) -> list[str]:
        """Tensors computed inside If/Loop/Scan bodies (Constant outputs excluded), in graph order: what
        calibration and compare observe there through precision.bodies.expose."""
        return list(body_tensors(self.proto.graph))

    def activation_names(self, float_only: bool = False) -> list[str]:
        """Intermediate and output tensors in graph order (what can be marked as outputs)."""
        seen: list[str] = []
        known = set()
        for node in self.proto.graph.node:
            for o in node.output:
                if o and o not in known:
                    known.add(o)
                    info = self.value_infos.get(o)
                    if float_only and (info is None or info.dtype not in ("float32", "float16", "bfloat16", "float64")):
                        continue
                    seen.append(o)
        return seen

    def producers(self) -> dict[str, onnx.NodeProto]:
        """Map tensor name -> the node that produces it."""
        return {o: n for n in self.proto.graph.node for o in n.output if o}

    def consumers(self) -> dict[str, list[onnx.NodeProto]]:
        """Map tensor name -> nodes that read it."""
        out: dict[str, list[onnx.NodeProto]] = {}
        for n in self.proto.graph.node:
            for i in n.input:
                if i:
                    out.setdefault(i, []).append(n)
        return out

    def graph(self):
        """Nodes in topological order: name, op_type, inputs, outputs, output shapes and dtypes."""
        import pandas as pd
        rows = []
        for i, n in enumerate(self.proto.graph.node):
            outs = [self.value_infos.get(o) for o in n.output]
            rows.append({"index": i, "name": n.name, "op_type": n.op_type, "domain": n.domain or "ai.onnx",
                         "inputs": list(n.input), "outputs": list(n.output),
                         "output_shapes": [list(o.shape) if o and o.shape is not None else None for o in outs],
                         "output_dtypes": [o.dtype if o else None for o in outs]})
        return pd.DataFrame(rows, columns=["index", "name", "op_type", "domain", "inputs", "outputs",
                                           "output_shapes", "output_dtypes"])

    def tensors(self):
        """Every tensor: kind (input, initializer, activation, output), dtype, shape, producer, consumers."""
        import pandas as pd
        prod = {o: n.name for n in self.proto.graph.node for o in n.output}
        cons = {k: [n.name for n in v] for k, v in self.consumers().items()}
        outputs = {o.name for o in self.outputs}
        names = [i.name for i in self.inputs] + [i.name for i in self.proto.graph.initializer] + self.activation_names()
        rows = []
        for name in names:
            info = self.value_infos.get(name)
            kind = ("initializer" if name in self._initializer_names else "input" if name not in prod
                    else "output" if name in outputs else "activation")
            rows.append({"name": name, "kind": kind, "dtype": info.dtype if info else None,
                         "shape": list(info.shape) if info and info.shape is not None else None,
                         "producer": prod.get(name), "consumers": cons.get(name, [])})
        return pd.DataFrame(rows, columns=["name", "kind", "dtype", "shape", "producer", "consumers"])

    @cached_property
    def _weight_tensors(self) -> list[tuple[str, int, int]]:
        """(where, element count, bytes) of every weight: initializers, and float tensors held in `Constant` nodes
        (value or sparse_value), in the main graph and in If/Loop/Scan bodies.

        Constants of other types (int64 shapes, axes, indices) are shape arithmetic, not weights, and are left out;
        initializers count whatever their type, as before."""
        out: list[tuple[str, int, int]] = []

        def size(t: onnx.TensorProto) -> tuple[int, int]:
            n = int(np.prod(t.dims)) if t.dims else 1
            item = 2 if t.data_type == TensorProto.BFLOAT16 else helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
            return n, n * item

        def walk(g: onnx.GraphProto) -> None:
            for init in g.initializer:
                out.append(("initializer", *size(init)))
            for node in g.node:
                for a in node.attribute:
                    if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                        t = a.t if a.name == "value" else a.sparse_tensor.values if a.name == "sparse_value" else None
                        if t is not None and t.data_type in _FLOAT_ELEM_TYPES:
                            out.append(("constant", *size(t)))
                    if a.type == onnx.AttributeProto.GRAPH:
                        walk(a.g)
                    elif a.type == onnx.AttributeProto.GRAPHS:
                        for sub in a.graphs:
                            walk(sub)

        walk(self.proto.graph)
        return out

    @cached_property
    def parameter_count(self) -> int:
        """Number of weight values: initializer elements plus float tensors in Constant nodes (subgraphs included)."""
        return sum(n for _, n, _ in self._weight_tensors)

    @cached_property
    def parameter_bytes(self) -> int:
        """Bytes of all weights (the same tensors as parameter_count; a sparse Constant counts its stored values)."""
        return sum(b for _, _, b in self._weight_tensors)

    @property
    def parameters_by_source(self) -> dict[str, int]:
        """parameter_count split by where the weights are held: {'initializers': N, 'constants': M}."""
        return {"initializers": sum(n for w, n, _ in self._weight_tensors if w == "initializer"),
                "constants": sum(n for w, n, _ in self._weight_tensors if w == "constant")}

    def summary(self) -> dict[str, Any]:
        """Name, opset, node/op-type counts, inputs, outputs, parameters."""
        ops: dict[str, int] = {}
        for n in self.proto.graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        return {"name": self.name, "path": str(self.path) if self.path else None, "hash": self.hash,
                "opset": self.opset, "nodes": len(self.proto.graph.node), "op_types": ops,
                "inputs": [i.__dict__ for i in self.inputs], "outputs": [o.__dict__ for o in self.outputs],
                "parameters": self.parameter_count, "parameter_bytes": self.parameter_bytes,
                "parameters_by_source": self.parameters_by_source}

    # ---- shapes --------------------------------------------------------------------------
    def resolve_input_shapes(self, batch: int | None = None, shapes: dict[str, tuple[int, ...]] | None = None,
                             dims: dict[str, int] | None = None) -> dict[str, tuple[int, ...]]:
        """Concrete shape of every input: explicit shapes, then named dims, then batch for the first dim.

        A batch that contradicts axis 0 of a shape given for a dynamic-batch input is refused (ConfigError), as
        are unresolved dimensions: one DynamicShapeError lists every one of every input."""
        shapes = dict(shapes or {})
        dims = dict(dims or {})
        names = [i.name for i in self.inputs]
        unknown = sorted(k for k in shapes if k not in names)
        if unknown:
            raise DynamicShapeError(f"shapes= names {unknown}, which are not inputs of {self.name}; inputs are "
                                    f"{names}")
        bad = {k: v for k, v in dims.items() if not isinstance(v, (int, np.integer)) or v <= 0}
        if bad or (batch is not None and batch <= 0):
            raise DynamicShapeError(f"dimension sizes must be positive integers, got "
                                    f"{bad or {'batch': batch}} for {self.name}")
        _check_batch_agrees(self, batch, shapes)
        out: dict[str, tuple[int, ...]] = {}
        missing: list[tuple[TensorInfo, list[int | None], list[int]]] = []
        for inp in self.inputs:
            if inp.name in shapes:
                out[inp.name] = tuple(int(d) for d in shapes[inp.name])
                continue
            if inp.shape is None:
                missing.append((inp, [], []))
                continue
            resolved: list[int | None] = []
            for axis, d in enumerate(inp.shape):
                if isinstance(d, int) and d > 0:
                    resolved.append(d)
                elif isinstance(d, str) and d in dims:
                    resolved.append(int(dims[d]))
                elif axis == 0 and batch is not None:
                    resolved.append(int(batch))
                else:
                    resolved.append(None)
            if None in resolved:
                missing.append((inp, resolved, [a for a, r in enumerate(resolved) if r is None]))
            else:
                out[inp.name] = tuple(int(r) for r in resolved)
        if missing:
            raise DynamicShapeError(_unresolved(self.name, missing, cli=False),
                                    cli_message=_unresolved(self.name, missing, cli=True))
        return out

    def random_inputs(self, shapes: dict[str, tuple[int, ...]],
                      seed: int | np.random.Generator = 0) -> dict[str, np.ndarray]:
        """Seeded random feed for the given input shapes: normal floats, ints in the input's range (or one of the
        values the graph compares them with: `compared_values`), random bools; a shape () gives a 0-d array.

        `seed` may be a Generator, so a caller drawing many batches continues one random stream."""
        rng = np.random.default_rng(seed)
        feeds = {}
        for inp in self.inputs:
            shape = shapes[inp.name]
            if inp.dtype.startswith("float") or inp.dtype == "bfloat16":
                feeds[inp.name] = rng.standard_normal(shape).astype(np.float32 if inp.dtype == "bfloat16" else inp.dtype)
            elif inp.dtype == "bool":
                feeds[inp.name] = rng.integers(0, 2, shape).astype(bool)
            elif inp.name in self.compared_values:  # a selector: take a value the graph tests it for
                feeds[inp.name] = rng.choice(np.asarray(self.compared_values[inp.name]), shape).astype(inp.dtype)
            else:
                lo, hi = self.input_range(inp.name)
                feeds[inp.name] = rng.integers(lo, hi, shape).astype(inp.dtype)
        return feeds

    @cached_property
    def compared_values(self) -> dict[str, tuple[int, ...]]:
        """Integer inputs the graph compares for equality with constants (silero-vad's `sr == 16000`), and those
        constants: random inputs take one of them, so a selector picks a branch the model was written for."""
        consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in self.proto.graph.initializer
                                         if len(t.dims) <= 1 and not t.data_location}
        for n in self.proto.graph.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name in ("value", "value_int", "value_ints"):
                a = n.attribute[0]
                consts[n.output[0]] = numpy_helper.to_array(a.t) if a.name == "value" else np.asarray(
                    a.i if a.name == "value_int" else list(a.ints))
        ints = {i.name for i in self.inputs if i.dtype.startswith(("int", "uint"))}
        found: dict[str, list[int]] = {}
        for n in self.proto.graph.node:
            if n.op_type != "Equal" or len(n.input) != 2:
                continue
            for x, c in (n.input, n.input[::-1]):
                if x in ints and c in consts and consts[c].dtype.kind in "iu" and consts[c].size <= 16:
                    found.setdefault(x, []).extend(int(v) for v in np.ravel(consts[c]))
        return {k: tuple(sorted(set(v))) for k, v in found.items()}

    def input_range(self, name: str) -> tuple[int, int]:
        """[low, high) for random integer inputs: the model's `trtlab.zoo.input_range.<name>` metadata, else [0, 100)."""
        for prop in self.proto.metadata_props:
            if prop.key == f"trtlab.zoo.input_range.{name}":
                lo, hi = (int(v) for v in prop.value.split(","))
                return lo, hi
        return 0, 100

    def serialized(self) -> bytes:
        """The model as bytes (for backends that take a buffer)."""
        return self.proto.SerializeToString()

    def __repr__(self) -> str:
        return (f"<Model {self.name} opset={self.opset} nodes={len(self.proto.graph.node)} "
                f"params={self.parameter_count:,} inputs={[i.name for i in self.inputs]}>")


def _check_batch_agrees(model: "Model", batch: int | None, shapes: dict[str, Any]) -> None:
    """batch= and shapes= both setting axis 0 of a dynamic-batch input must agree (trtexec's --shapes is explicit:
    a contradiction is refused, not guessed)."""
    if batch is None:
        return
    clash = {i.name: tuple(int(d) for d in shapes[i.name]) for i in model.inputs
             if i.name in shapes and i.shape and not (isinstance(i.shape[0], int) and i.shape[0] > 0)
             and len(shapes[i.name]) and int(shapes[i.name][0]) != int(batch)}
    if clash:
        fixed = {k: (int(batch),) + v[1:] for k, v in clash.items()}
        raise ConfigError(f"batch={batch} contradicts shapes={clash} of {model.name}: axis 0 (the batch) of "
                          f"{', '.join(repr(k) for k in clash)} is {sorted({v[0] for v in clash.values()})} there; "
                          f"give the batch once: drop batch= (the shapes set it) or pass shapes={fixed}")


def _is_placeholder(name: str | None) -> bool:
    """True for dims an exporter named without meaning ('?', 'unk__12', 'p2o.DynamicDimension.0', unnamed): they
    do not promise one size wherever they appear, so dims= cannot set them."""
    return not name or not name.isidentifier() or re.fullmatch(r"unk__\d+|s\d+|N\d*|dim_?\d*", name) is not None


def _unresolved(model_name: str, missing: list[tuple[TensorInfo, list[int | None], list[int]]],
                cli: bool) -> str:
    """One message for every unresolved dimension of every input, with the fix in Python or in CLI syntax:
    dims= for a proper name on one axis per input, shapes= (a filled-in template) otherwise, batch= for axis 0."""
    parts, shape_fix, dim_fix, batch_fix = [], {}, [], False
    for inp, resolved, axes in missing:
        if inp.shape is None:
            parts.append(f"input {inp.name!r} has no known rank")
            shape_fix[inp.name] = None
            continue
        labels = [f"{repr(inp.shape[a]) if inp.shape[a] else 'unnamed'} at axis {a}" for a in axes]
        parts.append(f"input {inp.name!r} has {len(axes)} unknown dimension{'s' if len(axes) > 1 else ''} "
                     f"({', '.join(labels)}; shape {list(inp.shape)})")
        named = [inp.shape[a] for a in axes if a != 0]
        repeated = {d for d in named if sum(1 for x in inp.shape if x == d) > 1}
        if any(_is_placeholder(d) or d in repeated for d in named):
            shape_fix[inp.name] = resolved
        else:
            dim_fix += [d for d in named if d not in dim_fix]
            batch_fix |= 0 in axes
    if cli:
        def template(name, resolved):
            if resolved is None:
                return f"{name}:<dims>"
            return f"{name}:" + "x".join(str(r) if r is not None else f"<axis{a}>"
                                                   for a, r in enumerate(resolved))
        fixes = ["--shapes " + " ".join(template(n, r) for n, r in shape_fix.items())] if shape_fix else []
        fixes += [" ".join(f"--dims {d}=N" for d in dim_fix)] if dim_fix else []
        fixes += ["--batch N"] if batch_fix else []
    else:
        def template(resolved):
            if resolved is None:
                return "(...)"
            items = [str(r) if r is not None else f"<axis {a}>" for a, r in enumerate(resolved)]
            return f"({', '.join(items)}{',' if len(items) == 1 else ''})"
        fixes = ["shapes={" + ", ".join(f"{n!r}: {template(r)}" for n, r in shape_fix.items()) + "}"] \
            if shape_fix else []
        fixes += ["dims={" + ", ".join(f"{d!r}: N" for d in dim_fix) + "}"] if dim_fix else []
        fixes += ["batch=N"] if batch_fix else []
    why = (" (a placeholder or unnamed dimension does not stand for one size, so give each such input's whole "
           "shape)") if shape_fix else ""
    where = "" if cli else " to build/benchmark"
    return f"{model_name}: {'; '.join(parts)}: pass {' and '.join(fixes)}{where}{why}"


def _read_file(path: Path) -> onnx.ModelProto:
    if not path.exists():
        raise ModelError(f"model file {path} not found: check the path (current folder is {os.getcwd()})")
    if path.is_dir():
        raise ModelError(f"{path} is a folder, not an ONNX file: pass the .onnx file inside it")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"model file {path} is empty: the export or download did not finish; export it again")
    if size >= _TWO_GB:
        try:
            return onnx.load(str(path))
        except Exception:
            raise ModelTooLargeError(
                f"{path} is {size / 2**30:.1f} GiB, over protobuf's 2 GB limit, and keeps its weights inside the "
                f"file: save it with external data (onnx.save_model(m, path, save_as_external_data=True)) "
                f"and load that") from None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"{path} is not a readable ONNX file ({type(exc).__name__}: {exc}); it may be "
                         f"truncated or another format: export it again") from None
    _check_parsed(proto, str(path))
    _check_external_data(proto, path)
    try:
        onnx.external_data_helper.load_external_data_for_model(proto, str(path.parent))
    except Exception as exc:  # onnx raises OSError or its checker's ValidationError
        raise ModelError(f"{path} refers to external weight data that is missing ({exc}): keep the data "
                         f"file(s) next to the .onnx file") from None
    return proto


def _check_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Every external-data location must be a plain relative path to a file inside the model's folder: not
    absolute, no '..', no symbolic link on the way (a model cannot make trtlab read, say, /etc/passwd)."""
    from pathlib import PurePosixPath, PureWindowsPath

    from onnx.external_data_helper import _get_all_tensors, uses_external_data
    folder = path.parent
    real_folder = os.path.realpath(folder)
    for tensor in _get_all_tensors(proto):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        parts = PurePosixPath(location.replace("\\", "/")).parts
        why = None
        if not location:
            why = "names no file"
        elif os.path.isabs(location) or PureWindowsPath(location).drive or location.startswith(("/", "\\")):
            why = "is an absolute path"
        elif ".." in parts:
            why = "climbs out of the model's folder with '..'"
        else:
            here = folder
            for part in parts:
                here = here / part
                if here.is_symlink():
                    why = f"goes through the symbolic link {here}"
                    break
            else:
                real = os.path.realpath(folder / location)
                if os.path.commonpath([real, real_folder]) != real_folder:
                    why = f"resolves outside {folder}"
        if why:
            raise ModelError(f"{path}: the external data of tensor {tensor.name!r} is at {location!r}, which {why}; "
                             f"refusing to read it. External data must be files inside the model's folder: save the "
                             f"model again with onnx.save_model(m, path, save_as_external_data=True)")


def _parse(data: bytes, label: str) -> onnx.ModelProto:
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:
        raise ModelError(f"{label} is not a readable ONNX model ({type(exc).__name__}); it may be truncated "
                         f"or another format: export it again") from None
    _check_parsed(proto, label)
    return proto


def _check_parsed(proto: onnx.ModelProto, label: str) -> None:
    # protobuf parses many random byte strings "successfully" into an empty message
    if not proto.graph.node and not proto.graph.input and not proto.opset_import:
        raise ModelError(f"{label} does not contain an ONNX graph: it may be truncated or another format "
                         f"(e.g. a TensorRT plan or PyTorch checkpoint); export it to ONNX again")


def output_shapes(proto: onnx.ModelProto, feeds: "dict[str, np.ndarray]") -> dict[str, tuple[int, ...] | None]:
    """Concrete output shapes for these feeds: symbolic dims named like input dims, else ONNX shape inference."""
    def dims_of(vi: Any, sym: "dict[str, int]") -> tuple[int, ...] | None:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            return None
        out = []
        for d in t.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                out.append(int(d.dim_value))
            elif d.dim_param in sym:
                out.append(int(sym[d.dim_param]))
            else:
                return None
        return tuple(out)
    sym: dict[str, int] = {}
    for inp in proto.graph.input:
        if inp.name in feeds:
            for d, n in zip(inp.type.tensor_type.shape.dim, feeds[inp.name].shape):
                if d.dim_param:
                    sym[d.dim_param] = int(n)
    shapes = {o.name: dims_of(o, sym) for o in proto.graph.output}
    if all(v is not None for v in shapes.values()):
        return shapes
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    for inp in m.graph.input:
        if inp.name in feeds:
            for d, n in zip(inp.type.tensor_type.shape.dim, feeds[inp.name].shape):
                d.Clear()
                d.dim_value = int(n)
    for o in m.graph.output:
        if shapes.get(o.name) is None:
            o.type.tensor_type.ClearField("shape")
    try:
        inferred = onnx.shape_inference.infer_shapes(m, data_prop=True)
    except Exception:
        return shapes
    for o in inferred.graph.output:
        if shapes.get(o.name) is None:
            shapes[o.name] = dims_of(o, {})
    return shapes


def load_model(source: ModelSource, name: str | None = None) -> Model:
    """Load and check an ONNX model (path, bytes, ModelProto)."""
    return Model.load(source, name=name)
