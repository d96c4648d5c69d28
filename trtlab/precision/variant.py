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
    # how much of the float work the precision transform converted (lowp.LowPrecisionResult.conversion, or for
    # int8/fp8 qdq.QdqResult.conversion); empty for fp32
    conversion: dict[str, Any] = field(default_factory=dict)

    @property
    def converted_fraction(self) -> float | None:
        """The share of the float work computed in the reduced precision (node-weighted, see `conversion`), or
        None for fp32."""
        return self.conversion.get("fraction") if self.conversion else None
