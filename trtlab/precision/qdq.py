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
from .graph import QMAX, place_after_producers, quantized_uses, quantized_weight_uses

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
    g = model.graph
    qtype = Q_TYPES[dtype]
    skip = set(skip_nodes)

    act_uses = quantized_uses(model, skip, residual_add)  # the (node, input) pairs to quantize
    weight_uses = quantized_weight_uses(model, skip)  # float32 weights in initializers or Constant nodes

    new_nodes: dict[str, list[onnx.NodeProto]] = {}  # inserted after the producer of the key tensor
    new_inits: list[onnx.TensorProto] = []
    quantized, missing = [], []
    zero = np.zeros((), np.int8) if dtype == "int8" else np.zeros((), ml_dtypes.float8_e4m3fn)
    for t, uses in act_uses.items():
        if t not in table:
            missing.append(t)
            continue
        amax = float(table[t])
        scale = np.float32(amax / QMAX[dtype]) if amax > 0 else np.float32(1.0)
        sname, zname = f"{t}__scale", f"{t}__zero_point"
        new_inits += [numpy_helper.from_array(np.array(scale, np.float32), sname), _tensor(zname, zero, qtype)]
        qn = helper.make_node("QuantizeLinear", [t, sname, zname], [f"{t}__q"], name=f"{t}__quantize")
        dqn = helper.make_node("DequantizeLinear", [f"{t}__q", sname, zname], [f"{t}__dq"], name=f"{t}__dequantize")
        new_nodes.setdefault(t, []).extend([qn, dqn])
        for n, ii in uses:
            n.input[ii] = f"{t}__dq"
        quantized.append(t)

    weights = []
    done_weights: dict[str, str] = {}
    for n, wi, tensor in weight_uses:
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
        qname, sname, zname = f"{w}__quantized", f"{w}__scale", f"{w}__zero_point"
        new_inits += [_tensor(qname, q, qtype), numpy_helper.from_array(scale, sname), _tensor(zname, zp, qtype)]
        attrs = {"axis": axis} if axis is not None else {}
        new_nodes.setdefault("", []).append(helper.make_node(
            "DequantizeLinear", [qname, sname, zname], [f"{w}__dq"], name=f"{w}__dequantize", **attrs))
        n.input[wi] = done_weights[w] = f"{w}__dq"
        weights.append(w)

    # rebuild in topological order: weight DQs and graph-input Q/DQs first, others after their producer
    place_after_producers(g, new_nodes, first=[""] + [vi.name for vi in g.input])
    g.initializer.extend(new_inits)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    live = [n for n in g.node if n.op_type != "Constant" or any(o in used for o in n.output)]
    del g.node[:]
    g.node.extend(live)  # the Constant nodes whose weights now come from the quantized copy are gone
    inits = {i.name for i in g.initializer}
    if model.ir_version < 4:  # the ONNX-zoo layout: IR 3 requires every initializer to be listed as an input
        listed = [v for v in g.input if v.name not in inits or v.name in used]  # replaced weights leave
        listed += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in new_inits]
        del g.input[:]
        g.input.extend(listed)
    kept = [i for i in g.initializer if i.name in used or i.name in {v.name for v in g.input}]
    del g.initializer[:]
    g.initializer.extend(kept)
    try:
        model = onnx.shape_inference.infer_shapes(model)
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelError(f"the {dtype} Q/DQ transform produced an invalid model: {str(exc).splitlines()[0]}") from None
    notes.append(f"{dtype}: Q/DQ on {len(quantized)} activations (per tensor) and {len(weights)} weights "
                 f"({'per channel' if per_channel else 'per tensor'}), symmetric, TensorRT-style placement; ONNX "
                 f"Runtime CPU keeps such pairs as separate nodes (simulated quantization: INT8 accuracy, not INT8 "
                 f"speed), TensorRT fuses them into INT8 kernels")
    if missing:
        notes.append(f"{dtype}: {len(missing)} tensors have no scale in the calibration and stay float: "
                     f"{missing[:5]}{' ...' if len(missing) > 5 else ''} (TensorRT would say 'Could not find scales "
                     f"for tensor {missing[0]}'; calibrate this model again)")
    return QdqResult(model=model, activations=quantized, weights=weights, missing=missing, notes=notes)
