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
from ..model import all_nodes, outer_names, subgraphs
from .graph import place_after_producers, with_bodies

LOW_TYPES = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
NP_TYPES = {"fp16": np.dtype(np.float16), "bf16": np.dtype(ml_dtypes.bfloat16)}

# Ranges of the low types: largest finite, smallest normal, smallest subnormal.
RANGES = {
    "fp16": {"max": 65504.0, "min_normal": 2.0**-14, "min_subnormal": 2.0**-24},
    "bf16": {"max": float(ml_dtypes.finfo(ml_dtypes.bfloat16).max), "min_normal": 2.0**-126,
             "min_subnormal": 2.0**-133},
}

# Ops left in FP32 whatever the precision: control-flow nodes themselves (their bodies are converted), random
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
    """The converted model and what the conversion did.

    `conversion` says how much of the float work was converted, node-weighted: every node at any depth (If, Loop
    and Scan bodies included) that computes on float32 tensors counts once (Constant, Identity, Cast, Shape, Size
    and the control-flow nodes themselves do not: they compute nothing); and weight-weighted: float32 weight
    elements converted of all float32 weight elements. `auto_pinned` names the nodes the transform itself kept in
    fp32 (BatchNormalization whose statistics the low type would change) with the reason."""

    model: onnx.ModelProto
    converted_nodes: list[str] = field(default_factory=list)
    pinned_nodes: list[str] = field(default_factory=list)
    casts_inserted: int = 0
    weight_report: Any = None  # pandas DataFrame, one row per converted weight
    notes: list[str] = field(default_factory=list)
    auto_pinned: dict[str, str] = field(default_factory=dict)
    conversion: dict[str, Any] = field(default_factory=dict)


def check_node_names(proto: onnx.ModelProto, names: Iterable[str], what: str = "fp32_layers") -> list[str]:
    """Return `names` as a list, or ConfigError naming the first unknown node and close matches.

    Nodes are addressed by name at any depth: a node inside an If branch or a Loop/Scan body is pinned by its own
    name (trtlab names unnamed nodes `<op_type>_<index>` at load, unique over the model and its bodies)."""
    names = list(names)
    known = [n.name for n in all_nodes(proto.graph)]
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


def to_low_array(values: np.ndarray, precision: str) -> np.ndarray:
    """float32 values as the low type stores them: clamped to its finite range, rounded to nearest even."""
    r = RANGES[precision]
    return np.clip(values.astype(np.float32, copy=False), -r["max"], r["max"]).astype(NP_TYPES[precision])


def to_low_tensor(tensor: onnx.TensorProto, precision: str, name: str | None = None) -> onnx.TensorProto:
    """A float32 TensorProto converted (clamped, round-to-nearest-even) to fp16/bf16."""
    values = numpy_helper.to_array(tensor).astype(np.float32, copy=False)
    low = to_low_array(values, precision)
    out = TensorProto()
    out.name = name if name is not None else tensor.name
    out.data_type = LOW_TYPES[precision]
    out.dims.extend(values.shape)
    out.raw_data = low.view(np.uint16).tobytes()
    return out


# A BatchNormalization stays fp32 when the low type would move its per-channel affine y = a*x + b
# (a = scale / sqrt(var + eps), b = B - mean * a) by more than this, relative to |a| (and |B| + |mean * a| for b).
# fp16 rounding of the four parameters moves them by ~1e-3; clamping a 1e7 variance to 65504 moves a by 12x.
BN_TOLERANCE = 1e-2


def batchnorm_pins(graph: onnx.GraphProto, precision: str, skip: Iterable[str] = ()) -> dict[str, str]:
    """{node name: why} for each BatchNormalization (at any depth) whose statistics and parameters, stored in the
    low type, change what it computes: a clamped |value| > the type's max (a variance of 1e7 becomes 65504), or a
    per-channel scale/shift moved by more than BN_TOLERANCE (a variance that flushes to zero matters only when it
    is not small against epsilon, so it is judged by the affine it gives, not by the flush itself)."""
    out: dict[str, str] = {}
    skip = set(skip)
    r = RANGES[precision]

    def walk(g: onnx.GraphProto, held: dict[str, onnx.TensorProto]) -> None:
        held = dict(held)
        held.update({i.name: i for i in g.initializer})
        for n in g.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        held[n.output[0]] = a.t
        for n in g.node:
            for body in subgraphs(n):
                walk(body, held)
            if n.op_type != "BatchNormalization" or n.name in skip or len(n.input) < 5:
                continue
            ts = [held.get(t) for t in n.input[1:5]]
            if any(t is None or t.data_type != TensorProto.FLOAT for t in ts):
                continue
            scale, bias, mean, var = (numpy_helper.to_array(t).astype(np.float64) for t in ts)
            eps = float(_attr(n, "epsilon") or 1e-5)
            lows = [to_low_array(v.astype(np.float32), precision).astype(np.float64) for v in (scale, bias, mean, var)]
            with np.errstate(all="ignore"):
                a = scale / np.sqrt(var + eps)
                b = bias - mean * a
                la = lows[0] / np.sqrt(lows[3] + eps)
                lb = lows[1] - lows[2] * la
                da = float(np.nanmax(np.abs(la - a) / np.maximum(np.abs(a), 1e-30))) if a.size else 0.0
                db = float(np.nanmax(np.abs(lb - b) / np.maximum(np.abs(bias) + np.abs(mean * a), 1e-30))) \
                    if b.size else 0.0
            clamped = [(label, v) for label, v in zip(("scale", "B", "mean", "variance"), (scale, bias, mean, var))
                       if v.size and np.abs(v).max() > r["max"]]
            if not clamped and max(da, db) <= BN_TOLERANCE:
                continue
            what = "; ".join(f"its {label} reaches {np.abs(v).max():.3g}, beyond {precision}'s {r['max']:g}"
                             for label, v in clamped)
            out[n.name] = (f"{what + '; ' if what else ''}in {precision} its per-channel scale would move by up "
                           f"to {da:.0%} and its shift by {db:.0%}")

    walk(graph, {})
    return out


@dataclass
class _Pass:
    """What one conversion collects over the main graph and every body."""

    precision: str
    pins: set[str]
    block_ops: frozenset[str]
    opset: int
    ir_version: int
    no_schema: dict[str, str] = field(default_factory=dict)
    converted: list[str] = field(default_factory=list)
    converted_in_bodies: int = 0
    float_ops: int = 0
    kept: dict[str, int] = field(default_factory=dict)
    weight_rows: list[dict[str, Any]] = field(default_factory=list)
    scopes: int = 0

    @property
    def low_t(self) -> int:
        return LOW_TYPES[self.precision]


# Nodes that compute nothing themselves: left out of the converted fraction (control flow counts through its bodies).
_NO_WORK = frozenset({"Constant", "Identity", "Cast", "CastLike", "Shape", "Size"})


def convert(proto: onnx.ModelProto, precision: str = "fp16", keep_io_types: bool = True,
            node_block_list: Iterable[str] = (), op_block_list: Iterable[str] | None = None) -> LowPrecisionResult:
    """Convert float32 computation to fp16/bf16, keeping pinned nodes, blocked ops and (by default) I/O in FP32.

    If/Loop/Scan bodies are converted too, recursively: a body reads each outer tensor in the type the outer
    scope gives it (a Cast inside the body where its reader needs the other type), and every body output keeps
    the type it had (a Cast back to fp32 at the end of the body where it became low), so an If's branches agree
    and a Loop's carried values keep their type. BatchNormalization nodes whose statistics the low type would
    change are kept in fp32 (batchnorm_pins) and named in the notes."""
    import pandas as pd

    if precision not in LOW_TYPES:
        raise ConfigError(f"low-precision transform takes 'fp16' or 'bf16', not {precision!r}")
    pins = with_bodies(proto.graph, check_node_names(proto, node_block_list))  # a pinned If pins its bodies
    block_ops = DEFAULT_OP_BLOCK_LIST if op_block_list is None else frozenset(op_block_list)
    try:
        model = onnx.shape_inference.infer_shapes(proto)
    except Exception as exc:
        raise ModelError(f"shape inference failed before the {precision} transform: {exc}") from None
    opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
    auto = batchnorm_pins(model.graph, precision, pins)
    run = _Pass(precision, pins | set(auto), block_ops, opset, model.ir_version)
    _convert_graph(model.graph, run, None, set(), keep_io_types)
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

    frame = pd.DataFrame(run.weight_rows, columns=["weight", "shape", "elements", "flushed_to_zero", "subnormal",
                                                   "clamped", "max_abs", "min_abs_nonzero"])
    casts = sum(1 for n in all_nodes(model.graph) if n.name.endswith("__cast"))
    weights_total = _float32_weight_elements(proto.graph)
    weights_done = int(frame["elements"].sum()) if not frame.empty else 0
    conversion = {
        "measure": "nodes computing on float32 (any depth; Constant, Identity, Cast, Shape, control flow excluded)",
        "float_ops": run.float_ops, "converted": len(run.converted), "in_bodies": run.converted_in_bodies,
        "fraction": len(run.converted) / run.float_ops if run.float_ops else None,
        "weights_total": weights_total, "weights_converted": weights_done,
        "weight_fraction": weights_done / weights_total if weights_total else None,
        "kept": dict(sorted(run.kept.items())), "pinned": sorted(pins), "auto_pinned": dict(auto),
    }
    result = LowPrecisionResult(model=model, converted_nodes=run.converted, pinned_nodes=sorted(pins),
                                casts_inserted=casts, weight_report=frame, auto_pinned=auto, conversion=conversion)
    result.notes.append(weight_note(frame, precision))
    result.notes.append(conversion_note(conversion, precision, casts, keep_io_types))
    for name, why in auto.items():
        result.notes.append(f"{precision}: kept BatchNormalization {name!r} in fp32 automatically ({why})")
    if run.no_schema:
        result.notes.append(
            f"{precision}: {', '.join(sorted(run.no_schema))} stay fp32 because "
            + "; ".join(why for _, why in sorted(run.no_schema.items()))
            + ("; export the model with opset >= 22 to convert them" if precision == "bf16" else ""))
    return result


def conversion_note(conversion: dict[str, Any], precision: str, casts: int, keep_io_types: bool) -> str:
    """One line: how much of the float work was converted, where, and what stayed fp32."""
    c = conversion
    frac = f" ({c['fraction']:.0%}, node-weighted)" if c["fraction"] is not None else ""
    wfrac = f"; {c['weights_converted']:,} of {c['weights_total']:,} float32 weight values " \
            f"({c['weight_fraction']:.0%})" if c["weight_fraction"] is not None else ""
    bodies = f", {c['in_bodies']} of them inside If/Loop/Scan bodies" if c["in_bodies"] else ""
    kept = ", ".join(f"{op} x{k}" for op, k in c["kept"].items())
    pinned = len(c["pinned"]) + len(c["auto_pinned"])
    return (f"{precision}: {c['converted']} of {c['float_ops']} float ops converted{frac}{bodies}{wfrac}; "
            f"{pinned} pinned to fp32, {casts} Casts inserted; I/O kept {'fp32' if keep_io_types else precision}"
            + (f"; left in fp32: {kept}" if kept else ""))


def _body_reads(body: onnx.GraphProto, t: str, run: _Pass, types: dict[str, int]) -> set[bool | None]:
    """What the readers of outer tensor `t` inside `body` (and its own bodies) need, by the rules of step 1 of
    _convert_graph: True low, False fp32, None any type. A reader that is a Constant/Cast-to-float decision or a
    shadowing definition does not occur: `t` is an outer name, and Cast takes any type."""
    local = {**types, **_elem_types(body)}
    out: set[bool | None] = set()
    for n in body.node:
        for ii, name in enumerate(n.input):
            if name != t:
                continue
            if n.op_type in ANY_INPUT_OPS:
                out.add(None)
            elif (n.name in run.pins or n.op_type in run.block_ops or n.domain not in ("", "ai.onnx")
                  or subgraphs(n)):
                out.add(False)
            else:
                out.add(_schema_allows(n, run.opset, _TYPE_STR[run.precision])
                        and ii not in FP32_INPUTS.get(n.op_type, ()))
        for inner in subgraphs(n):
            if t in outer_names(inner):
                out |= _body_reads(inner, t, run, local)
    return out


def _float32_weight_elements(graph: onnx.GraphProto) -> int:
    total = 0
    for g in [graph] + [b for n in all_nodes(graph) for b in subgraphs(n)]:
        for t in list(g.initializer) + [a.t for n in g.node if n.op_type == "Constant"
                                        for a in n.attribute if a.name == "value"]:
            if t.data_type == TensorProto.FLOAT:
                total += int(np.prod(t.dims)) if t.dims else 1
    return total


def _convert_graph(g: onnx.GraphProto, run: _Pass, outer_types: dict[str, int] | None, outer_low: set[str],
                   keep_io_types: bool) -> None:
    """Convert one graph in place, then its bodies. `outer_types`/`outer_low`: the enclosing scopes' tensors
    (their original types, and which of them the conversion made low); None for the main graph."""
    precision, low_t = run.precision, run.low_t
    top = outer_types is None
    types = {**_elem_types(g), **(outer_types or {})}
    inits = {i.name: i for i in g.initializer}
    graph_inputs = {i.name for i in g.input if i.name not in inits}
    graph_outputs = [o.name for o in g.output]
    nodes = list(g.node)
    suffix = "" if top else f"__s{run.scopes}"
    run.scopes += 1

    def is_float(t: str) -> bool:
        return types.get(t) == TensorProto.FLOAT

    def blocked(n: onnx.NodeProto) -> bool:
        return (n.name in run.pins or n.op_type in run.block_ops or n.domain not in ("", "ai.onnx")
                or bool(subgraphs(n)))

    consumers: dict[str, list[tuple[int, int]]] = {}
    for ni, n in enumerate(nodes):
        for ii, t in enumerate(n.input):
            if t:
                consumers.setdefault(t, []).append((ni, ii))
        for body in subgraphs(n):  # a body's reads count as fp32 reads here; the body casts what it needs
            for t in outer_names(body):
                consumers.setdefault(t, []).append((ni, -1))

    # 1. which nodes compute in low precision (Constant and Cast-to-float decided from their readers)
    converted = [False] * len(nodes)
    deferred = []
    for ni, n in enumerate(nodes):
        floats = any(is_float(t) for t in list(n.input) + list(n.output) if t)
        work = floats and n.op_type not in _NO_WORK and not subgraphs(n)
        if work:
            run.float_ops += 1
        if blocked(n) or n.op_type in ANY_INPUT_OPS and n.op_type != "Cast":
            if work:
                run.kept[n.op_type] = run.kept.get(n.op_type, 0) + 1
            continue
        if n.op_type in ("Constant", "Cast"):
            deferred.append(ni)
            continue
        if floats:
            if _schema_allows(n, run.opset, _TYPE_STR[precision]):
                converted[ni] = True
            else:
                run.no_schema.setdefault(n.op_type, _schema_reason(n, run.opset, _TYPE_STR[precision]))
                if work:
                    run.kept[n.op_type] = run.kept.get(n.op_type, 0) + 1
        if converted[ni] and work:
            run.converted.append(n.name)
            run.converted_in_bodies += not top

    def needs_low(ni: int, ii: int, t: str = "") -> bool | None:
        """True/False: input ii of node ni must be low/fp32; None: takes any type. ii < 0: node ni's bodies read
        tensor t: True when every reader inside them computes in low precision."""
        n = nodes[ni]
        if ii < 0:
            needs = {need for body in subgraphs(n) for need in _body_reads(body, t, run, types)} - {None}
            return needs == {True}
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
        converted[ni] = bool(readers) and all(needs_low(r, i, n.output[0]) for r, i in readers)

    # 2. which tensors are low
    low: set[str] = set(outer_low)
    for ni, n in enumerate(nodes):
        if converted[ni]:
            low.update(t for t in n.output if t and is_float(t))
    if top and not keep_io_types:
        low.update(t for t in graph_inputs if is_float(t))

    # graph outputs that became low keep their name as FP32 (a Cast at the end) unless keep_io_types=False;
    # a body's outputs are positional, so a body's low output is replaced by its Cast's output instead
    renamed: dict[str, str] = {}
    if top and keep_io_types:
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
        for body in subgraphs(n):
            for t in outer_names(body):
                if t in inits and is_float(t):
                    init_needs.setdefault(t, set()).add(False)
    init_low_name: dict[str, str] = {}
    new_inits = []
    for t, needs in init_needs.items():
        if True not in needs:
            continue
        values = numpy_helper.to_array(inits[t])
        run.weight_rows.append({"weight": t, "shape": list(values.shape), **weight_stats(values, precision)})
        if needs == {True} and t not in graph_inputs:
            lowt = to_low_tensor(inits[t], precision)
            inits[t].CopyFrom(lowt)
            init_low_name[t] = t
        else:
            init_low_name[t] = f"{t}__{precision}{suffix}"
            new_inits.append(to_low_tensor(inits[t], precision, init_low_name[t]))
    for ni in deferred:
        n = nodes[ni]
        if converted[ni] and n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                    values = numpy_helper.to_array(a.t)
                    run.weight_rows.append({"weight": n.output[0], "shape": list(values.shape),
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
            name = out_name or f"{t}__to_{tag[to_low]}{suffix}"
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
    if not top:
        for vi in g.output:
            if vi.name in low:
                vi.name = cast_name(vi.name, False)

    # 5. rebuild the node list with each Cast right after its producer (inputs' and outer tensors' Casts first)
    produced = {t for n in nodes for t in n.output if t}
    place_after_producers(g, cast_after, first=list(graph_inputs) + list(inits)
                          + [t for t in cast_after if t not in produced])
    g.initializer.extend(new_inits)

    # 6. types of inputs, outputs and intermediate value_info
    for vi in g.input:
        if vi.name in inits:  # the ONNX-zoo layout lists initializers as inputs: the weight's type decides
            vi.type.tensor_type.elem_type = inits[vi.name].data_type
        elif vi.name in low:
            vi.type.tensor_type.elem_type = low_t
    if top and new_inits and run.ir_version < 4:  # IR 3 requires every initializer to be listed as an input
        listed = {vi.name for vi in g.input}
        g.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                       for t in new_inits if t.name not in listed)
    if top:
        for vi in g.output:
            if vi.name in low:
                vi.type.tensor_type.elem_type = low_t
    for vi in g.value_info:
        name = renamed.get(vi.name, vi.name)
        vi.name = name
        if name in inits:  # a value_info entry for a weight converted in place
            vi.type.tensor_type.elem_type = inits[name].data_type
        elif name in low:
            vi.type.tensor_type.elem_type = low_t

    # 7. the bodies, each seeing this scope's tensors as they now are
    inner_low = low | {t for t, new in init_low_name.items() if new == t}
    for n in g.node:  # (not `nodes`: place_after_producers rebuilt g.node from copies)
        for body in subgraphs(n):
            _convert_graph(body, run, types, inner_low, True)


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
    return _schema_reason(node, opset, type_str) is None


def _schema_reason(node: onnx.NodeProto, opset: int, type_str: str) -> str | None:
    """None when the op's schema at `opset` accepts `type_str` for the float inputs/outputs the conversion gives it
    (inputs in FP32_INPUTS stay float32 and are not asked), else why not, naming the schema and the input."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    except Exception:
        return f"no ONNX schema for {node.domain or 'ai.onnx'}::{node.op_type} at opset {opset}"
    label = f"ONNX {node.op_type}-{schema.since_version}"
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    keep = FP32_INPUTS.get(node.op_type, ())
    params = []
    for names, formal, kind in ((node.input, schema.inputs, "input"), (node.output, schema.outputs, "output")):
        for i, name in enumerate(names):
            if name and formal and not (kind == "input" and i in keep):
                f = formal[min(i, len(formal) - 1)]
                params.append((f, kind))
    for f, kind in params:
        if f.type_str == "tensor(float)":  # a fixed float32 input or output (e.g. DequantizeLinear-13's y)
            return f"{label} fixes its {kind} {f.name!r} to float32"
    for f, kind in params:
        if f.type_str in allowed and "tensor(float)" in allowed[f.type_str] and type_str not in allowed[f.type_str]:
            return f"{label} does not allow {type_str} for {f.type_str} ({kind} {f.name!r})"
    return None


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
