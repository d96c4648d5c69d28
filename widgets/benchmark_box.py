"""Benchmark the engine just built: iterations, Benchmark button, summary and latency histogram."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import ipywidgets as W

from .. import plots
from ..markup import esc, plot_text
from .common import error_html, figure_widget, set_figure

if TYPE_CHECKING:
    from ..backends.base import Engine
    from ..monitor import Monitor
    from ..session import Session


class BenchmarkBox:
    """Runs Session.benchmark(engine, background=True), attaching the live monitor's samples when one runs."""

    def __init__(self, session: "Session", engine: Callable[[], "Engine | None"],
                 monitor: Callable[[], "Monitor | None"] | None = None) -> None:
        self.session = session
        self._engine = engine
        self._monitor = monitor
        self.job = None
        self.result: Any = None
        self.iterations = W.IntText(value=200, description="iterations", layout=W.Layout(width="200px"))
        self.button = W.Button(description="Benchmark", icon="tachometer", tooltip="time the engine just built")
        self.status = W.HTML()
        self.summary = W.HTML()
        self.figure = figure_widget(height=320)
        self.figure_box = W.VBox([self.figure], layout=W.Layout(display="none"))
        self.button.on_click(self._on_click)
        self.widget = W.VBox([W.HBox([self.iterations, self.button]), self.status, self.summary, self.figure_box])
        self.widget.add_class("trtlab-benchmark")

    def _on_click(self, _b: Any = None) -> None:
        eng = self._engine()
        if eng is None:
            self.status.value = "build an engine first"
            return
        if self.job is not None and not self.job.done:
            return
        mon = self._monitor() if self._monitor else None
        mon = mon if mon is not None and getattr(mon, "running", False) else None
        self.status.value = f"benchmarking {esc(eng.name)} ..."
        self.job = self.session.benchmark(eng, iterations=max(1, self.iterations.value), monitor=mon or False,
                                          background=True)
        self.job.add_done_callback(self._on_done)

    def _on_done(self, job: Any) -> None:
        exc = job.exception()
        if exc is not None:
            self.status.value = error_html(exc, "Benchmark failed")
            return
        self.show(job.result())

    def show(self, result: Any) -> None:
        """Show a BenchmarkResult: its summary table and latency histogram."""
        self.result = result
        set_figure(self.figure, plots.latency_histogram(result.to_frame(),
                                                        title=f"{plot_text(result.engine)}: latency"))
        self.figure_box.layout.display = None
        self.summary.value = result._repr_html_()
        u = result.utilization or {}
        util = (f"; {u.get('device', '')} utilization mean {u.get('util_mean_pct', float('nan')):.0f}% over "
                f"{u.get('samples', 0)} monitor samples" if u else "")
        self.status.value = f"{result.throughput:.1f} qps, median {result.stats['median']:.3f} ms{esc(util)}"
