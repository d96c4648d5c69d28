"""INT8 / FP8 as an ONNX-to-ONNX transform: QuantizeLinear/DequantizeLinear pairs from a CalibrationTable.

Placement follows TensorRT's explicit-quantization recommendations: Q/DQ on the activation
inputs of Conv, ConvTranspose, Gemm and MatMul and on both inputs of residual Adds (an Add of
two activations), weights quantized per output channel, activations per tensor, all symmetric
(zero point 0). Biases stay float (TensorRT folds them into the fused kernel).

Why not onnxruntime.quantization.quantize_static (QuantFormat.QDQ, per_channel=True): it
calibrates by itself through a CalibrationDataReader and has no public way to take ranges
from a table, so a TensorRT calibration cache (the migration path from implicit quantization)
could not drive it; it also places Q/DQ by ORT's own operator registry (quantizing Relu, Pool,
Concat outputs...), not where TensorRT fuses them, and writes temporary model files. The
insertion itself is a few dozen lines, driven here by the table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import CalibrationError, ConfigError, ModelError
from ..model import all_nodes, outer_names, subgraphs
from .graph import ACTIVATION_INPUTS, QMAX, place_after_producers, quantized_scopes

Q_TYPES = {"int8": TensorProto.INT8, "fp8": TensorProto.FLOAT8E4M3FN}
MIN_OPSET = {"int8": 13, "fp8": 19}


@dataclass
class QdqResult:
    """The quantized model and what was (not) quantized."""

    model: onnx.ModelProto
    activations: list[str] = field(default_factory=list)
    weights: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    conversion: dict[str, Any] = field(default_factory=dict)


def weight_axis(node: onnx.NodeProto, ndim: int) -> int | None:
    """The output-channel axis of a weight for per-channel scales (None: use one scale)."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        return 1 if group == 1 else None
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if node.op_type == "MatMul":
        return ndim - 1 if ndim >= 2 else None
    return None


def _quantize_values(values: np.ndarray, scale: np.ndarray, dtype: str) -> np.ndarray:
    q = values / scale
    if dtype == "int8":
        return np.clip(np.rint(q), -127, 127).astype(np.int8)
    return np.clip(q, -448.0, 448.0).astype(ml_dtypes.float8_e4m3fn)


def _tensor(name: str, values: np.ndarray, elem: int) -> onnx.TensorProto:
    t = TensorProto()
    t.name = name
    t.data_type = elem
    t.dims.extend(values.shape)
    t.raw_data = np.ascontiguousarray(values).view(np.uint8).tobytes() if values.dtype.itemsize == 1 \
        else np.ascontiguousarray(values).tobytes()
    return t


def quantize(proto: onnx.ModelProto, table: Any, dtype: str = "int8", per_channel: bool = True,
             residual_add: bool = True, skip_nodes: tuple[str, ...] = (), min_opset: int = 0) -> QdqResult:
    """Insert Q/DQ pairs (int8 or fp8 E4M3) for the tensors in `table` and quantize weights per channel."""
    if dtype not in QMAX:
        raise ConfigError(f"Q/DQ dtype must be 'int8' or 'fp8', not {dtype!r}")
    if table is None or len(table) == 0:
        raise CalibrationError(f"{dtype} needs a calibration: pass calibration=<CalibrationTable or cache file> "
                               f"(Session.calibrate(data) makes one)")
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
    notes = []
    need = max(MIN_OPSET[dtype], min_opset)
    if opset < need:
        try:
            model = onnx.version_converter.convert_version(model, need)
        except Exception as exc:
            raise ModelError(f"{dtype} Q/DQ needs opset {need}, and converting this opset {opset} model "
                             f"failed ({str(exc).splitlines()[0]}); export with opset >= {need}") from None
        notes.append(f"{dtype}: model converted from opset {opset} to {need} for Q/DQ")
    if dtype == "fp8":
        model.ir_version = max(model.ir_version, 9)
    qtype = Q_TYPES[dtype]
    skip = set(skip_nodes)

    quantized, missing, weights = [], [], []
    main_new_inits: list[onnx.TensorProto] = []
    zero = np.zeros((), np.int8) if dtype == "int8" else np.zeros((), ml_dtypes.float8_e4m3fn)
    scopes = quantized_scopes(model, skip, residual_add)  # the main graph, then each If/Loop/Scan body
    # bodies before the graphs holding them: rebuilding a graph's node list copies its nodes (and their bodies),
    # so a body must be finished before its parent is rebuilt
    for si, scope in reversed(list(enumerate(scopes))):
        g = scope.graph
        new_nodes: dict[str, list[onnx.NodeProto]] = {}  # inserted after the producer of the key tensor
        new_inits: list[onnx.TensorProto] = []
        # a pair for an outer tensor lives in this body: its names carry the scope, so no two scopes define one
        tag = "" if scope.main else f"__b{si}"
        for t, uses in scope.activations.items():
            if t not in table:
                missing.append(t)
                continue
            amax = float(table[t])
            scale = np.float32(amax / QMAX[dtype]) if amax > 0 else np.float32(1.0)
            base = t if t in scope.defined else f"{t}{tag}"
            sname, zname = f"{base}__scale", f"{base}__zero_point"
            new_inits += [numpy_helper.from_array(np.array(scale, np.float32), sname), _tensor(zname, zero, qtype)]
            qn = helper.make_node("QuantizeLinear", [t, sname, zname], [f"{base}__q"], name=f"{base}__quantize")
            dqn = helper.make_node("DequantizeLinear", [f"{base}__q", sname, zname], [f"{base}__dq"],
                                   name=f"{base}__dequantize")
            new_nodes.setdefault(t if t in scope.defined else "", []).extend([qn, dqn])
            for n, ii in uses:
                n.input[ii] = f"{base}__dq"
            quantized.append(t)

        done_weights: dict[str, str] = {}
        for n, wi, tensor in scope.weights:
            w = n.input[wi]
            if w in done_weights:
                n.input[wi] = done_weights[w]
                continue
            values = numpy_helper.to_array(tensor).astype(np.float32)
            axis = weight_axis(n, values.ndim) if per_channel else None
            if axis is None:
                amax = np.array(np.abs(values).max(), np.float32)
                scale = np.where(amax > 0, amax / QMAX[dtype], 1.0).astype(np.float32)
                q = _quantize_values(values, scale, dtype)
                zp = zero
            else:
                other = tuple(i for i in range(values.ndim) if i != axis)
                amax = np.abs(values).max(axis=other).astype(np.float32)
                scale = np.where(amax > 0, amax / QMAX[dtype], 1.0).astype(np.float32)
                shape = [1] * values.ndim
                shape[axis] = -1
                q = _quantize_values(values, scale.reshape(shape), dtype)
                zp = np.zeros(scale.shape, zero.dtype)
            base = w if w in scope.defined else f"{w}{tag}"
            qname, sname, zname = f"{base}__quantized", f"{base}__scale", f"{base}__zero_point"
            new_inits += [_tensor(qname, q, qtype), numpy_helper.from_array(scale, sname), _tensor(zname, zp, qtype)]
            attrs = {"axis": axis} if axis is not None else {}
            new_nodes.setdefault("", []).append(helper.make_node(
                "DequantizeLinear", [qname, sname, zname], [f"{base}__dq"], name=f"{base}__dequantize", **attrs))
            n.input[wi] = done_weights[w] = f"{base}__dq"
            weights.append(w)

        # rebuild in topological order: weight DQs, input and outer-tensor Q/DQs first, others after their producer
        place_after_producers(g, new_nodes, first=[""] + [vi.name for vi in g.input])
        g.initializer.extend(new_inits)
        if scope.main:
            main_new_inits = new_inits
    g = model.graph
    if model.ir_version < 4:  # the ONNX-zoo layout: IR 3 requires every initializer to be listed as an input
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output} | \
            {t for n in g.node for b in subgraphs(n) for t in outer_names(b)}
        inits = {i.name for i in g.initializer}
        listed = [v for v in g.input if v.name not in inits or v.name in used]  # replaced weights leave
        listed += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in main_new_inits]
        del g.input[:]
        g.input.extend(listed)
    _drop_dead(model.graph)  # the Constant nodes whose weights now come from the quantized copy are gone
    in_bodies = sum(len(s.activations) for s in scopes if not s.main)
    conversion = _int8_conversion(model)
    try:
        model = onnx.shape_inference.infer_shapes(model)
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelError(f"the {dtype} Q/DQ transform produced an invalid model: {str(exc).splitlines()[0]}") from None
    notes.append(f"{dtype}: Q/DQ on {len(quantized)} activations (per tensor) and {len(weights)} weights "
                 f"({'per channel' if per_channel else 'per tensor'}), symmetric, TensorRT-style placement; ONNX "
                 f"Runtime CPU keeps such pairs as separate nodes (simulated quantization: INT8 accuracy, not INT8 "
                 f"speed), TensorRT fuses them into INT8 kernels")
    if in_bodies:
        notes.append(f"{dtype}: {in_bodies} of the quantized activations are inside If/Loop/Scan bodies")
    notes.append(f"{dtype}: {conversion['quantized']} of {conversion['quantizable']} Conv/ConvTranspose/Gemm/MatMul "
                 f"nodes take quantized inputs ({conversion['fraction']:.0%}, node-weighted)"
                 + (f"; float ops with no Q/DQ rule stay float: "
                    + ", ".join(f"{op} x{k}" for op, k in conversion["unquantized_ops"].items())
                    if conversion["unquantized_ops"] else "") if conversion["quantizable"] else
                 f"{dtype}: the model has no Conv/ConvTranspose/Gemm/MatMul node, so nothing computes in {dtype}")
    if missing:
        notes.append(f"{dtype}: {len(missing)} tensors have no scale in the calibration and stay float: "
                     f"{missing[:5]}{' ...' if len(missing) > 5 else ''} (TensorRT would say 'Could not find scales "
                     f"for tensor {missing[0]}'; calibrate this model again)")
    return QdqResult(model=model, activations=quantized, weights=weights, missing=missing, notes=notes,
                     conversion=conversion)


# heavy float ops that the TensorRT-style placement gives no Q/DQ (they run in float in an int8 engine)
_FLOAT_ONLY_OPS = ("LSTM", "GRU", "RNN", "Attention", "MultiHeadAttention", "LayerNormalization")


def _drop_dead(g: onnx.GraphProto) -> None:
    """Remove Constant nodes and initializers nothing reads any more (bodies first: rebuilding copies them)."""
    for n in g.node:
        for body in subgraphs(n):
            _drop_dead(body)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output} | \
        {t for n in g.node for b in subgraphs(n) for t in outer_names(b)}
    live = [n for n in g.node if n.op_type != "Constant" or any(o in used for o in n.output)]
    if len(live) != len(g.node):
        del g.node[:]
        g.node.extend(live)
    inputs = {v.name for v in g.input}
    kept = [i for i in g.initializer if i.name in used or i.name in inputs]
    if len(kept) != len(g.initializer):
        del g.initializer[:]
        g.initializer.extend(kept)


def _int8_conversion(model: onnx.ModelProto) -> dict[str, Any]:
    """How much of the work quantization reaches, node-weighted over the ops the placement rule quantizes
    (Conv/ConvTranspose/Gemm/MatMul at any depth): those reading a DequantizeLinear output on their activation
    input count as quantized."""
    nodes = all_nodes(model.graph)
    dq_out = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    total = done = 0
    other: dict[str, int] = {}
    for n in nodes:
        if n.op_type in ACTIVATION_INPUTS:
            total += 1
            done += any(n.input[i] in dq_out for i in ACTIVATION_INPUTS[n.op_type] if i < len(n.input))
        elif n.op_type in _FLOAT_ONLY_OPS:
            other[n.op_type] = other.get(n.op_type, 0) + 1
    return {"measure": "Conv/ConvTranspose/Gemm/MatMul nodes (any depth) whose activation input is quantized",
            "quantizable": total, "quantized": done, "fraction": done / total if total else None,
            "unquantized_ops": dict(sorted(other.items()))}
