"""trtlab.widgets: the ipywidgets layer (installed as a subpackage of trtlab by pyproject's package-dir mapping).

`Session.panel()` returns a `Panel`; the smaller widgets work on their own:
`LayerTimings(profile)`, `LayerComparison(a, b)`, `MonitorChart(monitor)`, `LogView(session)`.
"""
from __future__ import annotations

from .benchmark_box import BenchmarkBox
from .build_tab import BuildTab, LayerPicker
from .layers_tab import LayerComparison, LayersTab, LayerTimings
from .log_tab import LogView
from .monitor_tab import MonitorChart, MonitorTab
from .outputs_tab import OutputsTab
from .panel import Panel
from .precision_tab import PrecisionCharts, PrecisionTab
from ..hooks import register

register("panel", Panel)  # Session.panel(monitor=..., monitor_interval=...) -> Panel(session, ...)

__all__ = ["BenchmarkBox", "BuildTab", "LayerComparison", "LayerPicker", "LayerTimings", "LayersTab", "LogView", "MonitorChart",
           "MonitorTab", "OutputsTab", "Panel", "PrecisionCharts", "PrecisionTab"]
