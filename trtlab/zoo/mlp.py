"""A tiny multilayer perceptron (Gemm/Relu) for fast tests and harness-overhead measurements."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto

from trtlab.errors import ConfigError
from trtlab.zoo._graph import GraphBuilder


def mlp(seed: int = 0, in_features: int = 64, hidden: Sequence[int] = (128, 128),
        num_classes: int = 10) -> onnx.ModelProto:
    """MLP, input 'input' [batch, in_features], output 'logits' [batch, num_classes]; save with onnx.save."""
    widths = [in_features, *hidden, num_classes]
    if min(widths) < 1:
        raise ConfigError(f"trtlab.zoo.mlp: layer widths {widths} must all be at least 1")
    g = GraphBuilder("mlp", seed)
    x = g.input("input", TensorProto.FLOAT, ["batch", in_features])
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        last = i == len(widths) - 2
        w = g.normal((fan_in, fan_out), math.sqrt((1.0 if last else 2.0) / fan_in))
        b = g.normal((fan_out,), 0.05)
        inputs = [x, g.const(f"fc{i}.weight", w), g.const(f"fc{i}.bias", b)]
        x = g.node("Gemm", inputs, f"fc{i}", outputs=["logits"] if last else None)
        if not last:
            x = g.node("Relu", [x], f"relu{i}")
    g.output("logits", TensorProto.FLOAT, ["batch", num_classes])
    return g.build(f"mlp: random-weight MLP {widths} (Gemm + Relu), input 'input' [batch,{in_features}], "
                   f"output 'logits' [batch,{num_classes}].")
