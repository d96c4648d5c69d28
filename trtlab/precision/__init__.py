"""Precision as ONNX-to-ONNX transforms: the variant a backend builds (precision, FP32 pins, marked outputs)."""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx

from ..config import PRECISION_OPTIONS, BuildConfig
from ..errors import CalibrationCacheError, CalibrationError, ConfigError
from ..model import Model
from .bodies import expose
from .variant import Variant

# BuildConfig options that change the variant (besides precision, pins, outputs and calibration)
VARIANT_OPTIONS = tuple(PRECISION_OPTIONS)


def mark_outputs(proto: onnx.ModelProto, model: Model, names: tuple[str, ...] | list[str]) -> tuple[onnx.ModelProto, list[str]]:
    """Copy of `proto` with the named intermediate tensors (or "*" = all) added as graph outputs, dtypes kept.

    Tensors computed inside If/Loop/Scan bodies are plumbed out to a graph output of their own name
    (bodies.expose; a Loop's come stacked over its iterations, an If branch that did not run gives an empty one);
    "*" includes them."""
    inner = model.body_activation_names()
    wanted = model.observable_names() if tuple(names) == ("*",) else list(names)
    known = set(model.activation_names()) | {i.name for i in model.inputs} | set(inner)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ConfigError(f"cannot mark {unknown[:5]} as outputs: no such tensor in {model.name} "
                          f"(see Session.model.tensors() for names)")
    inner_set = set(inner)
    out, added = expose(proto, [n for n in wanted if n in inner_set])
    present = {o.name for o in out.graph.output}
    infos = {v.name: v for v in list(out.graph.value_info) + list(out.graph.input)}
    for name in wanted:
        if name in present:
            continue
        vi = infos.get(name)
        if vi is None:
            info = model.value_infos.get(name)
            elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(info.dtype)) if info else onnx.TensorProto.FLOAT
            vi = onnx.helper.make_tensor_value_info(name, elem, None)
        out.graph.output.append(vi)
        added.append(name)
    return out, added


def check_calibration(model: Model, proto: onnx.ModelProto, calibration: Any, pins: tuple[str, ...]) -> list[str]:
    """Refuse a cache written for another graph (TensorRT FAQ 12's "Could not find scales for tensor"): tensors
    the Q/DQ inserter needs are missing and the cache names tensors this model does not have. A table that is a
    subset for this model (only missing, nothing foreign) and a model changed since the cache was saved (its
    sidecar) give a warning and a note instead. Returns the notes."""
    import warnings

    from .calibration import CalibrationTable
    from .calibration.coverage import coverage
    written = calibration.provenance if isinstance(calibration, CalibrationTable) else None
    check = coverage(calibration, proto, pins, written_for=written)
    if check.missing and (check.extra or check.stale):
        raise CalibrationCacheError(f"{model.name}: the calibration does not fit this model.\n{check.explain()}")
    if check.missing:  # quantize() notes them too
        warnings.warn(f"{model.name}: {len(check.missing)} of the {len(check.needed)} tensors quantized have no "
                      f"scale in the calibration and stay float: {check.missing[:5]}"
                      f"{' ...' if len(check.missing) > 5 else ''}", RuntimeWarning, stacklevel=4)
    if not check.stale:
        return []
    note = f"the calibration was written for another version of the model: {check.changed}; calibrate again"
    warnings.warn(f"{model.name}: {note}", RuntimeWarning, stacklevel=4)
    return [note]


def make_variant(model: Model, config: BuildConfig, calibration: Any = None) -> Variant:
    """The typed ONNX model for `config`: precision transform, FP32 pins and marked outputs applied.

    fp16/bf16: `lowp.convert` (I/O stay fp32 unless option keep_io_types=False; pins stay fp32).
    int8/fp8: `qdq.quantize` from `calibration` (a CalibrationTable, e.g. loaded from a TensorRT cache);
    pinned nodes get no Q/DQ. int8+fp16: Q/DQ at opset 19 (so DequantizeLinear can yield fp16), then fp16.
    Outputs are marked after the transform, so a marked tensor keeps the type the variant computes it in.
    """
    from .lowp import check_node_names
    precision = config.precision
    pins = list(config.fp32_layers)
    if pins and precision == "fp32":
        raise ConfigError("fp32_layers only apply to reduced precisions (fp16, bf16, int8, fp8, int8+fp16)")
    check_node_names(model.proto, pins)
    keep_io = bool(config.option("keep_io_types", True))
    proto, notes, report, conversion = model.proto, [], None, {}
    if precision in ("int8", "fp8", "int8+fp16"):
        from .qdq import quantize
        if isinstance(calibration, (str, os.PathLike)):
            from .calibration import CalibrationTable
            calibration = CalibrationTable.load(calibration)
        if calibration is None:
            raise CalibrationError(f"precision {precision!r} needs a calibration: pass calibration= a "
                                   f"CalibrationTable, a TensorRT calibration cache file, or Session.calibrate(data)")
        calibration_notes = check_calibration(model, proto, calibration, tuple(pins))
        q = quantize(proto, calibration, dtype="fp8" if precision == "fp8" else "int8",
                     per_channel=bool(config.option("per_channel", True)), skip_nodes=tuple(pins),
                     min_opset=19 if precision == "int8+fp16" else 0)
        proto, notes, conversion = q.model, list(q.notes) + calibration_notes, q.conversion
    if precision in ("fp16", "bf16", "int8+fp16"):
        from .lowp import convert
        low = convert(proto, "bf16" if precision == "bf16" else "fp16", keep_io_types=keep_io, node_block_list=pins)
        proto, report, conversion = low.model, low.weight_report, low.conversion
        notes += low.notes
    if precision != "fp32" and proto is not model.proto:
        notes.append(f"pinned to fp32: {pins}" if pins else f"{precision}: no fp32 pins")
    marked: list[str] = []
    if config.outputs:
        proto, marked = mark_outputs(proto, model, config.outputs)
    return Variant(model=proto, precision=precision, marked_outputs=marked, fp32_layers=pins, notes=notes,
                   weight_report=report, conversion=conversion)
