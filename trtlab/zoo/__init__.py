"""Demo model zoo: deterministic, seeded ONNX models with realistic structure, built in seconds without download.

Every function returns an `onnx.ModelProto` (opset 17, IR 8, dynamic "batch" dimension, unique
readable node names) that passes the full ONNX checker; save one with `onnx.save(model, path)`.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import onnx

from trtlab.errors import ConfigError
from trtlab.zoo.bert import bert
from trtlab.zoo.mlp import mlp
from trtlab.zoo.unet import unet
from trtlab.zoo.vision import mobilenet_v2, resnet18, resnet50

__all__ = ["bert", "get", "mlp", "mobilenet_v2", "names", "resnet18", "resnet50", "unet"]

_ZOO: dict[str, Callable[..., onnx.ModelProto]] = {
    "mlp": mlp,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "unet": unet,
    "bert_small": functools.partial(bert, size="small"),
    "bert_base": functools.partial(bert, size="base"),
}


def names() -> list[str]:
    """Names accepted by `get`, smallest models first."""
    return list(_ZOO)


def get(name: str, **kwargs: Any) -> onnx.ModelProto:
    """Build the zoo model `name` (see `names()`; "bert" takes size=), passing keyword arguments through."""
    key = name.strip().lower().replace("-", "_")
    factory = bert if key == "bert" else _ZOO.get(key)
    if factory is None:
        raise ConfigError(f"trtlab.zoo: no model named {name!r}; choose one of {names()}")
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        func = getattr(factory, "func", factory).__name__
        raise ConfigError(f"trtlab.zoo.get({name!r}): {exc}; see help(trtlab.zoo.{func})") from None
    return factory(**kwargs)
