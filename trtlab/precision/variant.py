"""Variant: the model as a backend will build it (precision transform, FP32 pins and marked outputs applied)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx


@dataclass
class Variant:
    """The model as a backend will build it: precision transform and marked outputs applied."""

    model: "onnx.ModelProto"
    precision: str = "fp32"
    marked_outputs: list[str] = field(default_factory=list)
    fp32_layers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    weight_report: Any = None
