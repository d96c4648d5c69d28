"""Precision as ONNX-to-ONNX transforms: the variant a backend builds (precision, FP32 pins, marked outputs)."""
from __future__ import annotations

from typing import Any

import onnx

from ..backends.base import Variant
from ..config import BuildConfig
from ..errors import ConfigError, PrecisionNotSupportedError
from ..model import Model


def mark_outputs(proto: onnx.ModelProto, model: Model, names: tuple[str, ...] | list[str]) -> tuple[onnx.ModelProto, list[str]]:
    """Copy of `proto` with the named intermediate tensors (or "*" = all) added as graph outputs, dtypes kept."""
    wanted = model.activation_names() if tuple(names) == ("*",) else list(names)
    known = set(model.activation_names()) | {i.name for i in model.inputs}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ConfigError(f"cannot mark {unknown[:5]} as outputs: no such tensor in {model.name} "
                          f"(see Session.model.tensors() for names)")
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    present = {o.name for o in out.graph.output}
    infos = {v.name: v for v in list(out.graph.value_info) + list(out.graph.input)}
    added = []
    for name in wanted:
        if name in present:
            continue
        vi = infos.get(name)
        if vi is None:
            info = model.value_infos.get(name)
            elem = onnx.helper.np_dtype_to_tensor_dtype(__import__("numpy").dtype(info.dtype)) if info else onnx.TensorProto.FLOAT
            vi = onnx.helper.make_tensor_value_info(name, elem, None)
        out.graph.output.append(vi)
        added.append(name)
    return out, added


def make_variant(model: Model, config: BuildConfig, calibration: Any = None) -> Variant:
    """The typed ONNX model for `config`: precision transform, FP32 pins and marked outputs applied."""
    if config.precision != "fp32":
        raise PrecisionNotSupportedError(f"precision {config.precision!r} is not implemented yet")
    if config.fp32_layers:
        raise ConfigError("fp32_layers only apply to reduced precisions (fp16, bf16, int8, fp8)")
    proto = model.proto
    marked: list[str] = []
    if config.outputs:
        proto, marked = mark_outputs(proto, model, config.outputs)
    return Variant(model=proto, precision="fp32", marked_outputs=marked)
