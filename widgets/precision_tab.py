"""Precision tab: compare a reduced-precision engine with a reference, per tensor; click a bar to pin its layer."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import ipywidgets as W
import pandas as pd

from .. import plots
from ..config import PRECISIONS
from ..errors import ConfigError
from ..markup import esc
from .common import error_html, figure_widget, note_html, section, set_figure

if TYPE_CHECKING:
    from ..session import Session


def result_frame(result: Any) -> pd.DataFrame:
    """The per-tensor table of a comparison result (its to_frame()), or the frame itself."""
    if isinstance(result, pd.DataFrame):
        return result
    to_frame = getattr(result, "to_frame", None)
    if callable(to_frame):
        return to_frame()
    raise TypeError(f"cannot tabulate {type(result).__name__}: expected a ComparisonResult or a DataFrame")


class PrecisionCharts:
    """Table and charts of one comparison frame: deviation per tensor, FP16 range counts, error growth."""

    def __init__(self, on_tensor_click: Callable[[str], None] | None = None) -> None:
        self.on_tensor_click = on_tensor_click
        self.frame: pd.DataFrame | None = None
        self.table = W.HTML()
        self.deviation = figure_widget()
        self.ranges = figure_widget()
        self.growth = figure_widget()
        self.widget = W.VBox([self.table, self.deviation, self.ranges, self.growth],
                             layout=W.Layout(display="none"))  # shown with the first result
        self.widget.add_class("trtlab-precision-charts")

    def show(self, frame: pd.DataFrame, ranges: pd.DataFrame | None = None, divergence: Any = None,
             range_precision: str = "fp16") -> None:
        """Draw a comparison frame (and an optional separate FP16 range frame), marking the first divergence."""
        self.frame = frame.reset_index(drop=True)
        cols = [c for c in self.frame.columns if self.frame[c].map(lambda v: not isinstance(v, (list, dict))).all()]
        self.table.value = ("<div style='max-height:260px;overflow:auto'>"
                            + self.frame[cols].to_html(index=False, float_format=lambda v: f"{v:.4g}",
                                                       classes="trtlab-compare-table") + "</div>")
        draw = ((self.deviation, lambda: plots.deviation_ratio(self.frame, divergence=divergence)),
                (self.ranges, lambda: plots.fp16_range_counts(ranges if ranges is not None else self.frame,
                                                              precision=range_precision)),
                (self.growth, lambda: plots.error_growth(self.frame, divergence=divergence)))
        for fw, make in draw:
            try:
                set_figure(fw, make())
            except ConfigError as exc:  # a frame without those columns: say so in place of that chart
                set_figure(fw, plots.empty_figure("not drawn", str(exc)))
                fw.layout.height = 160
        self.widget.layout.display = None
        self.deviation_tensor_click()

    def show_ranges(self, ranges: pd.DataFrame, precision: str = "fp16") -> None:
        """Draw only the FP16/BF16 range chart (from Session.fp16_range_report().to_frame())."""
        set_figure(self.ranges, plots.fp16_range_counts(ranges, precision=precision))
        self.ranges.layout.height = None
        self.widget.layout.display = None
        self.deviation_tensor_click()

    def deviation_tensor_click(self) -> None:
        """Route clicks on the deviation and range bars to on_tensor_click."""
        if self.deviation.data:
            self.deviation.data[0].on_click(self._clicked)
        for trace in self.ranges.data:
            trace.on_click(self._clicked)

    def _clicked(self, trace: Any, points: Any, _state: Any) -> None:
        if points.point_inds and self.on_tensor_click:
            self.on_tensor_click(str(trace.x[points.point_inds[0]]))


class PrecisionTab:
    """Runs Session.compare(reference, candidate) and fp16_range_report() as jobs; pins producers to FP32."""

    def __init__(self, session: "Session", build_tab: Any = None) -> None:
        self.session = session
        self.build_tab = build_tab
        self.job = None
        self.result: Any = None
        self.ranges: Any = None
        self.reference = W.Dropdown(options=list(PRECISIONS), value="fp32", description="reference")
        self.candidate = W.ToggleButtons(options=[p for p in PRECISIONS if p != "fp32"], value="fp16",
                                         description="candidate", style={"button_width": "100px"})
        self.batches = W.IntText(value=1, description="batches", tooltip="random input batches to compare over",
                                 layout=W.Layout(width="180px"))
        self.compare_button = W.Button(description="Compare", button_style="primary",
                                       tooltip="layer-wise comparison: every tensor marked, streamed by segments")
        self.range_button = W.Button(description="FP16 range report",
                                     tooltip="FP32 run: per-tensor magnitudes against the FP16/BF16 ranges")
        self.cancel_button = W.Button(description="Cancel", button_style="warning", disabled=True)
        self.progress = W.FloatProgress(value=0, min=0, max=1, layout=W.Layout(width="300px"))
        self.status = W.HTML()
        self.pin_note = W.HTML()
        self.pin_note.add_class("trtlab-pin-note")
        self.rebuild_button = W.Button(description="Rebuild with pins", icon="refresh",
                                       layout=W.Layout(display="none"))
        self.charts = PrecisionCharts(on_tensor_click=self.pin_tensor)
        self.compare_button.on_click(self._on_compare)
        self.range_button.on_click(self._on_ranges)
        self.cancel_button.on_click(lambda _b: self.job.cancel() if self.job is not None else None)
        self.rebuild_button.on_click(self._on_rebuild)
        self._unsubscribe = session.events.subscribe(self._on_event)
        self.widget = W.VBox([W.HBox([self.reference, self.batches]), self.candidate,
                              W.HBox([self.compare_button, self.range_button, self.cancel_button, self.progress]),
                              self.status, W.HBox([self.pin_note, self.rebuild_button]),
                              section("Per-tensor comparison (click a bar to pin its layer to FP32)"),
                              self.charts.widget])
        self.widget.add_class("trtlab-precision-tab")

    def _busy(self) -> bool:
        return self.job is not None and not self.job.done

    def _start(self, job: Any, what: str, done: Callable[[Any], None]) -> None:
        self.job = job
        self.progress.value = 0
        self.progress.bar_style = "info"
        self.status.value = esc(what) + " ..."
        self.cancel_button.disabled = False
        job.add_done_callback(done)

    def _on_event(self, kind: str, payload: Any) -> None:
        job = self.job
        if kind == "progress" and job is not None and not job.done and payload.job == job.id:
            frac = payload.fraction
            self.progress.value = frac if frac is not None else min(0.95, self.progress.value + 0.05)

    def candidate_spec(self) -> Any:
        """The candidate as Session.compare takes it: a precision, or build arguments with the Build tab's pins."""
        cand = self.candidate.value
        pins = list(self.build_tab.pins.selected) if self.build_tab is not None else []
        return {"precision": cand, "fp32_layers": pins} if pins else cand

    def _on_compare(self, _b: Any = None) -> None:
        if self._busy():
            return
        ref, cand = self.reference.value, self.candidate_spec()
        try:
            job = self.session.compare(ref, cand, data=max(1, self.batches.value), background=True)
        except Exception as exc:
            self.status.value = error_html(exc, "Comparison rejected")
            return
        self._start(job, f"comparing {cand if isinstance(cand, str) else cand['precision'] + ' (pinned)'} "
                         f"against {ref}", self._on_compared)

    def _on_ranges(self, _b: Any = None) -> None:
        if self._busy():
            return
        try:
            job = self.session.fp16_range_report(data=max(1, self.batches.value), background=True)
        except Exception as exc:
            self.status.value = error_html(exc, "Range report rejected")
            return
        self._start(job, "measuring FP32 tensor ranges", self._on_ranged)

    def _finish(self, job: Any, what: str) -> Any:
        self.cancel_button.disabled = True
        exc = job.exception()
        if exc is None:
            self.progress.value = 1
            self.progress.bar_style = "success"
            return job.result()
        from ..errors import CancelledError
        self.progress.bar_style = "warning" if isinstance(exc, CancelledError) else "danger"
        self.status.value = ("cancelled" if isinstance(exc, CancelledError) else error_html(exc, what + " failed"))
        return None

    def _on_compared(self, job: Any) -> None:
        result = self._finish(job, "Comparison")
        if result is not None:
            self.show(result)

    def _on_ranged(self, job: Any) -> None:
        report = self._finish(job, "Range report")
        if report is not None:
            self.ranges = report
            self.charts.show_ranges(report.to_frame())
            s = getattr(report, "summary", {})
            self.status.value = "FP16 range report: " + esc(
                ", ".join(f"{k} {v}" for k, v in (s.items() if isinstance(s, dict) else [])))

    def show(self, result: Any) -> None:
        """Show a comparison result (a ComparisonResult, or any DataFrame with its columns)."""
        self.result = result
        frame = result_frame(result)
        div, why, summary = None, "", None
        try:  # both need the frame's NaN/inf counts; without them show the table and charts, and say why
            first = getattr(result, "first_divergence", None)
            div = first() if callable(first) else None
            summary = getattr(result, "summary", None)
            summary = summary() if callable(summary) else summary
        except Exception as exc:
            why = f"no first divergence: {type(exc).__name__}: {exc}"
        self.charts.show(frame, divergence=div, range_precision=getattr(result, "range_precision", "fp16"))
        parts = [f"<b>{len(frame)} tensors compared</b>"]
        if isinstance(summary, dict):
            parts.append(", ".join(f"{esc(str(k))}: {esc(_short(v))}" for k, v in summary.items()))
        if div:
            parts.append(f"first divergence at <b>{esc(str(div.get('tensor')))}</b>: "
                         f"{esc(str(div.get('reason', '')))}")
        if why:
            parts.append(esc(why))
        self.status.value = "<br>".join(parts)

    def pin_tensor(self, tensor: str) -> str | None:
        """Pin the layer producing `tensor` to FP32 in the Build tab and offer a rebuild; returns the layer."""
        node = self.session.model.producers().get(tensor)
        if node is None:
            self.pin_note.value = note_html(f"{esc(tensor)} is not produced by a layer: nothing to pin")
            return None
        if self.build_tab is not None:
            self.build_tab.pins.add([node.name])
        self.pin_note.value = f"pinned <b>{esc(node.name)}</b> (producer of {esc(tensor)}) to FP32"
        self.rebuild_button.layout.display = None
        return node.name

    def _on_rebuild(self, _b: Any = None) -> None:
        if self.build_tab is not None:
            self.build_tab.precision.value = self.candidate.value
            self.build_tab._on_build()

    def close(self) -> None:
        """Stop listening to the session."""
        self._unsubscribe()


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
