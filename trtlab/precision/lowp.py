"""FP16 / BF16 as an ONNX-to-ONNX transform: typed low-precision graph, FP32 pins, weight report.

Why not onnxconverter-common's `float16.convert_float_to_float16` (v1.16, not a dependency): tried on the
zoo with ONNX Runtime 1.32 it (a) breaks bert_small (a graph output that is also read inside the
graph gets an fp16 value_info but stays fp32: "Type (tensor(float16)) of output arg
(pooler.first_token) does not match expected type"), (b) depends on stale value_info for its Cast
insertion, (c) silently clamps weights to +-1e4 and lifts tiny ones to 1e-7 by default (so its
output is not what FP16 does, and the weight report would lie), and (d) has no BF16. The rules
it follows are simple, so they are implemented here once for both FP16 and BF16: float tensors of
converted nodes become the low type, Casts are inserted where a converted and an FP32 node meet,
weights are rounded round-to-nearest-even (clamped to the finite range, as TensorRT does).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ConfigError, ModelError
from .graph import place_after_producers

LOW_TYPES = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
NP_TYPES = {"fp16": np.dtype(np.float16), "bf16": np.dtype(ml_dtypes.bfloat16)}

# Ranges of the low types: largest finite, smallest normal, smallest subnormal.
RANGES = {
    "fp16": {"max": 65504.0, "min_normal": 2.0**-14, "min_subnormal": 2.0**-24},
    "bf16": {"max": float(ml_dtypes.finfo(ml_dtypes.bfloat16).max), "min_normal": 2.0**-126,
             "min_subnormal": 2.0**-133},
}

# Ops left in FP32 whatever the precision: control flow (bodies are not converted), random
# generators, and ops whose result is an index or a count that low precision would change.
DEFAULT_OP_BLOCK_LIST = frozenset({
    "If", "Loop", "Scan", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
    "Multinomial", "Range", "CumSum", "TopK", "NonMaxSuppression", "RoiAlign", "Upsample",
    "ConstantOfShape", "EyeLike",
})
# Inputs that stay FP32 on a converted node (the spec allows only float there, or they are
# shape computations): Resize's roi and scales.
FP32_INPUTS = {"Resize": {1, 2}}
# Ops that accept any input type, so never need a Cast in front of them.
ANY_INPUT_OPS = frozenset({"Cast", "Shape", "Size", "CastLike"})


@dataclass
class LowPrecisionResult:
    """The converted model and what the conversion did."""

    model: onnx.ModelProto
    converted_nodes: list[str] = field(default_factory=list)
    pinned_nodes: list[str] = field(default_factory=list)
    casts_inserted: int = 0
    weight_report: Any = None  # pandas DataFrame, one row per converted weight
    notes: list[str] = field(default_factory=list)


def check_node_names(proto: onnx.ModelProto, names: Iterable[str], what: str = "fp32_layers") -> list[str]:
    """Return `names` as a list, or ConfigError naming the first unknown node and close matches."""
    names = list(names)
    known = [n.name for n in proto.graph.node]
    known_set = set(known)
    for name in names:
        if name not in known_set:
            close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
            hint = f"close matches: {close}" if close else "see Session.model.graph() for node names"
            raise ConfigError(f"{what}: no node named {name!r} in the model ({hint})")
    return names


def weight_stats(values: np.ndarray, precision: str) -> dict[str, int]:
    """How converting float32 `values` to fp16/bf16 changes them: flushed, subnormal, clamped counts."""
    r = RANGES[precision]
    a = np.abs(values.astype(np.float32, copy=False))
    nonzero = a > 0
    low = np.clip(values, -r["max"], r["max"]).astype(NP_TYPES[precision])
    la = np.abs(low.astype(np.float32))
    return {
        "elements": int(values.size),
        "flushed_to_zero": int(np.count_nonzero(nonzero & (la == 0))),
        "subnormal": int(np.count_nonzero((la > 0) & (la < r["min_normal"]))),
        "clamped": int(np.count_nonzero(a > r["max"])),
        "max_abs": float(a.max()) if a.size else 0.0,
        "min_abs_nonzero": float(a[nonzero].min()) if nonzero.any() else 0.0,
    }


def to_low_tensor(tensor: onnx.TensorProto, precision: str, name: str | None = None) -> onnx.TensorProto:
    """A float32 TensorProto converted (clamped, round-to-nearest-even) to fp16/bf16."""
    values = numpy_helper.to_array(tensor).astype(np.float32, copy=False)
    r = RANGES[precision]
    low = np.clip(values, -r["max"], r["max"]).astype(NP_TYPES[precision])
    out = TensorProto()
    out.name = name if name is not None else tensor.name
    out.data_type = LOW_TYPES[precision]
    out.dims.extend(values.shape)
    out.raw_data = low.view(np.uint16).tobytes()
    return out


def convert(proto: onnx.ModelProto, precision: str = "fp16", keep_io_types: bool = True,
            node_block_list: Iterable[str] = (), op_block_list: Iterable[str] | None = None) -> LowPrecisionResult:
    """Convert float32 computation to fp16/bf16, keeping pinned nodes, blocked ops and (by default) I/O in FP32."""
    import pandas as pd

    if precision not in LOW_TYPES:
        raise ConfigError(f"low-precision transform takes 'fp16' or 'bf16', not {precision!r}")
    low_t = LOW_TYPES[precision]
    pins = set(check_node_names(proto, node_block_list))
    block_ops = DEFAULT_OP_BLOCK_LIST if op_block_list is None else frozenset(op_block_list)
    try:
        model = onnx.shape_inference.infer_shapes(proto)
    except Exception as exc:
        raise ModelError(f"shape inference failed before the {precision} transform: {exc}") from None
    g = model.graph
    types = _elem_types(g)
    inits = {i.name: i for i in g.initializer}
    graph_inputs = {i.name for i in g.input if i.name not in inits}
    graph_outputs = [o.name for o in g.output]
    nodes = list(g.node)

    def is_float(t: str) -> bool:
        return types.get(t) == TensorProto.FLOAT

    def blocked(n: onnx.NodeProto) -> bool:
        return (n.name in pins or n.op_type in block_ops or n.domain not in ("", "ai.onnx")
                or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute))

    consumers: dict[str, list[tuple[int, int]]] = {}
    for ni, n in enumerate(nodes):
        for ii, t in enumerate(n.input):
            if t:
                consumers.setdefault(t, []).append((ni, ii))

    # 1. which nodes compute in low precision (Constant and Cast-to-float decided from their readers)
    converted = [False] * len(nodes)
    deferred = []
    no_schema: set[str] = set()
    opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
    for ni, n in enumerate(nodes):
        if blocked(n) or n.op_type in ANY_INPUT_OPS and n.op_type != "Cast":
            continue
        if n.op_type in ("Constant", "Cast"):
            deferred.append(ni)
            continue
        if any(is_float(t) for t in list(n.input) + list(n.output) if t):
            if _schema_allows(n, opset, _TYPE_STR[precision]):
                converted[ni] = True
            else:
                no_schema.add(n.op_type)

    def needs_low(ni: int, ii: int) -> bool | None:
        """True/False: input ii of node ni must be low/fp32; None: takes any type."""
        n = nodes[ni]
        if n.op_type in ANY_INPUT_OPS:
            return None
        return converted[ni] and ii not in FP32_INPUTS.get(n.op_type, ())

    out_set = set(graph_outputs)
    for ni in deferred:
        n = nodes[ni]
        if n.op_type == "Cast" and _attr(n, "to") != TensorProto.FLOAT:
            continue
        if not is_float(n.output[0]) or n.output[0] in out_set:
            continue
        readers = consumers.get(n.output[0], [])
        converted[ni] = bool(readers) and all(needs_low(r, i) for r, i in readers)

    # 2. which tensors are low
    low: set[str] = set()
    for ni, n in enumerate(nodes):
        if converted[ni]:
            low.update(t for t in n.output if t and is_float(t))
    if not keep_io_types:
        low.update(t for t in graph_inputs if is_float(t))

    # graph outputs that became low keep their name as FP32 (a Cast at the end) unless keep_io_types=False
    renamed: dict[str, str] = {}
    if keep_io_types:
        for t in graph_outputs:
            if t in low:
                renamed[t] = f"{t}__{precision}"
    for n in nodes:
        for k, t in enumerate(n.output):
            if t in renamed:
                n.output[k] = renamed[t]
        for k, t in enumerate(n.input):
            if t in renamed:
                n.input[k] = renamed[t]
    low = {renamed.get(t, t) for t in low}
    for t, new in renamed.items():
        types[new] = TensorProto.FLOAT

    # 3. weights: converted in place when only low readers use them, else a low copy beside them
    init_needs: dict[str, set[bool]] = {}
    for ni, n in enumerate(nodes):
        for ii, t in enumerate(n.input):
            if t in inits and is_float(t):
                need = needs_low(ni, ii)
                if need is not None:
                    init_needs.setdefault(t, set()).add(bool(need))
    weight_rows = []
    init_low_name: dict[str, str] = {}
    new_inits = []
    for t, needs in init_needs.items():
        if True not in needs:
            continue
        values = numpy_helper.to_array(inits[t])
        weight_rows.append({"weight": t, "shape": list(values.shape), **weight_stats(values, precision)})
        if needs == {True} and t not in graph_inputs:
            lowt = to_low_tensor(inits[t], precision)
            inits[t].CopyFrom(lowt)
            init_low_name[t] = t
        else:
            init_low_name[t] = f"{t}__{precision}"
            new_inits.append(to_low_tensor(inits[t], precision, init_low_name[t]))
    for ni in deferred:
        n = nodes[ni]
        if converted[ni] and n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                    values = numpy_helper.to_array(a.t)
                    weight_rows.append({"weight": n.output[0], "shape": list(values.shape),
                                        **weight_stats(values, precision)})
                    a.t.CopyFrom(to_low_tensor(a.t, precision))
        elif converted[ni] and n.op_type == "Cast":
            for a in n.attribute:
                if a.name == "to":
                    a.i = low_t

    # 4. Casts where the producer's type differs from what the reader needs
    casts: dict[tuple[str, bool], str] = {}
    cast_after: dict[str, list[onnx.NodeProto]] = {}
    tag = {True: precision, False: "fp32"}

    def cast_name(t: str, to_low: bool, out_name: str | None = None) -> str:
        key = (t, to_low)
        if key not in casts:
            name = out_name or f"{t}__to_{tag[to_low]}"
            casts[key] = name
            cast_after.setdefault(t, []).append(helper.make_node(
                "Cast", [t], [name], name=f"{name}__cast", to=low_t if to_low else TensorProto.FLOAT))
        return casts[key]

    for ni, n in enumerate(nodes):
        for ii, t in enumerate(n.input):
            if not t:
                continue
            if t in init_low_name and needs_low(ni, ii):
                n.input[ii] = init_low_name[t]
                continue
            if not (is_float(t) or t in low) or t in inits:
                continue
            need = needs_low(ni, ii)
            if need is None or need == (t in low):
                continue
            n.input[ii] = cast_name(t, need)
    for t, new in renamed.items():
        cast_name(new, False, out_name=t)

    # 5. rebuild the node list with each Cast right after its producer (inputs' Casts first)
    place_after_producers(g, cast_after, first=list(graph_inputs) + list(inits))
    g.initializer.extend(new_inits)

    # 6. types of inputs, outputs and intermediate value_info
    for vi in g.input:
        if vi.name in inits:  # the ONNX-zoo layout lists initializers as inputs: the weight's type decides
            vi.type.tensor_type.elem_type = inits[vi.name].data_type
        elif vi.name in low:
            vi.type.tensor_type.elem_type = low_t
    if model.ir_version < 4 and new_inits:  # IR 3 requires every initializer to be listed as a graph input
        listed = {vi.name for vi in g.input}
        g.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                       for t in new_inits if t.name not in listed)
    for vi in g.output:
        if vi.name in low:
            vi.type.tensor_type.elem_type = low_t
    keep_vi = []
    for vi in g.value_info:
        name = renamed.get(vi.name, vi.name)
        vi.name = name
        if name in inits:  # a value_info entry for a weight converted in place
            vi.type.tensor_type.elem_type = inits[name].data_type
        elif name in low:
            vi.type.tensor_type.elem_type = low_t
        keep_vi.append(vi)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(model)
    except Exception as exc:
        culprit = _blame(model)
        where = f" at node {culprit[0]!r} ({culprit[1]}): {culprit[2]}" if culprit else ""
        fix = f"pin it with fp32_layers=[{culprit[0]!r}]" if culprit and culprit[0] else \
            "pin the node that produces or reads the tensor named there with fp32_layers=[...]"
        raise ModelError(f"the {precision} transform produced an invalid model{where} "
                         f"({str(exc).splitlines()[0]}); {fix} and report this") from None

    frame = pd.DataFrame(weight_rows, columns=["weight", "shape", "elements", "flushed_to_zero", "subnormal",
                                               "clamped", "max_abs", "min_abs_nonzero"])
    conv_names = [n.name for ni, n in enumerate(nodes) if converted[ni]]
    result = LowPrecisionResult(model=model, converted_nodes=conv_names, pinned_nodes=sorted(pins),
                                casts_inserted=sum(1 for n in g.node if n.name.endswith("__cast")),
                                weight_report=frame)
    result.notes.append(weight_note(frame, precision))
    kept = sorted({n.op_type for ni, n in enumerate(nodes) if not converted[ni] and n.op_type in block_ops})
    result.notes.append(
        f"{precision}: {len(conv_names)} of {len(nodes)} nodes converted, {len(pins)} pinned to fp32, "
        f"{result.casts_inserted} Casts inserted; I/O kept "
        f"{'fp32' if keep_io_types else precision}" + (f"; ops kept in fp32: {', '.join(kept)}" if kept else ""))
    if no_schema:
        result.notes.append(
            f"{precision}: {', '.join(sorted(no_schema))} stay fp32 because ONNX opset {opset} does not define them "
            f"for {precision}" + ("; export the model with opset >= 22 to convert them" if precision == "bf16" else ""))
    return result


def weight_note(frame: Any, precision: str) -> str:
    """One line summarising the weight report."""
    if frame is None or frame.empty:
        return f"{precision}: no weights converted"
    total = int(frame["elements"].sum())
    parts = [f"{int(frame[c].sum()):,} {c.replace('_', ' ')}" for c in ("flushed_to_zero", "subnormal", "clamped")]
    worst = frame.sort_values("flushed_to_zero", ascending=False).iloc[0]
    msg = f"{precision} weights: {total:,} values in {len(frame)} tensors; " + ", ".join(parts)
    if worst["flushed_to_zero"] > 0:
        msg += f" (most flushed: {worst['weight']} with {int(worst['flushed_to_zero']):,})"
    return msg


_TYPE_STR = {"fp16": "tensor(float16)", "bf16": "tensor(bfloat16)"}


def _schema_allows(node: onnx.NodeProto, opset: int, type_str: str) -> bool:
    """Whether the op's schema at `opset` accepts `type_str` for the float inputs/outputs this node uses."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    except Exception:
        return False
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    params = []
    for names, formal in ((node.input, schema.inputs), (node.output, schema.outputs)):
        for i, name in enumerate(names):
            if name and formal:
                params.append(formal[min(i, len(formal) - 1)].type_str)
    if "tensor(float)" in params:  # a fixed float32 input or output (e.g. DequantizeLinear-13's y)
        return False
    variables = [p for p in params if p in allowed and "tensor(float)" in allowed[p]]
    return all(type_str in allowed[v] for v in variables)


def _attr(node: onnx.NodeProto, name: str) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return None


def _elem_types(g: onnx.GraphProto) -> dict[str, int]:
    types = {i.name: i.data_type for i in g.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types.setdefault(vi.name, vi.type.tensor_type.elem_type)
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    types.setdefault(n.output[0], a.t.data_type)
    return types


def _blame(model: onnx.ModelProto) -> tuple[str, str, str] | None:
    """(node name, op type, what is wrong) for the first node whose typed inputs or outputs do not fit its schema.

    Walks the graph in order with the declared types (inputs, initializers, value_info), infers each node's output
    types with ONNX's own per-node inference and compares them with what the graph declares."""
    g = model.graph
    opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
    declared: dict[str, onnx.TypeProto] = {}
    for vi in (*g.input, *g.value_info, *g.output):
        if vi.type.HasField("tensor_type"):
            declared[vi.name] = vi.type
    types = dict(declared)
    for init in g.initializer:
        t = helper.make_tensor_type_proto(init.data_type, list(init.dims))
        listed = declared.get(init.name)
        if listed is not None and listed.tensor_type.elem_type != init.data_type:
            reader = next((n for n in g.node if init.name in n.input), None)
            return (reader.name if reader else "", reader.op_type if reader else "initializer",
                    f"weight {init.name!r} is stored as {helper.tensor_dtype_to_np_dtype(init.data_type)} but "
                    f"declared as {helper.tensor_dtype_to_np_dtype(listed.tensor_type.elem_type)}")
        types[init.name] = t
    for n in g.node:
        if n.domain not in ("", "ai.onnx"):
            return None
        try:
            schema = onnx.defs.get_schema(n.op_type, opset, "")
            ins = {t: types[t] for t in n.input if t and t in types}
            if len(ins) < len([t for t in n.input if t]):
                return None
            outs = onnx.shape_inference.infer_node_outputs(schema, n, ins)
        except Exception as exc:
            return n.name, n.op_type, str(exc).splitlines()[0]
        for name, t in outs.items():
            want = declared.get(name)
            if want is not None and t.HasField("tensor_type") and want.tensor_type.elem_type \
                    and t.tensor_type.elem_type != want.tensor_type.elem_type:
                return (n.name, n.op_type, f"output {name!r} is computed as "
                        f"{helper.tensor_dtype_to_np_dtype(t.tensor_type.elem_type)} but declared as "
                        f"{helper.tensor_dtype_to_np_dtype(want.tensor_type.elem_type)}")
            types[name] = t
    return None
