"""Precision tab: compare a reduced-precision engine with a reference, per tensor; click a bar to pin its layer."""
from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Callable

import ipywidgets as W
import pandas as pd

from .. import plots
from ..config import PRECISIONS
from ..errors import ConfigError
from .common import error_html, figure_widget, note_html, section, set_figure

if TYPE_CHECKING:
    from ..session import Session


def compare_available(session: "Session") -> tuple[bool, str]:
    """(True, "") when the precision lab (Session.compare) is present, else (False, why)."""
    try:
        import trtlab.analysis.compare  # noqa: F401
    except ImportError as exc:
        return False, f"trtlab.analysis.compare cannot be imported ({exc})"
    if not callable(getattr(session, "compare", None)):
        return False, "this trtlab has no Session.compare"
    return True, ""


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

    def show(self, frame: pd.DataFrame, ranges: pd.DataFrame | None = None) -> None:
        """Draw a comparison frame (and an optional separate FP16 range frame)."""
        self.frame = frame.reset_index(drop=True)
        cols = [c for c in self.frame.columns if self.frame[c].map(lambda v: not isinstance(v, (list, dict))).all()]
        self.table.value = ("<div style='max-height:260px;overflow:auto'>"
                            + self.frame[cols].to_html(index=False, float_format=lambda v: f"{v:.4g}",
                                                       classes="trtlab-compare-table") + "</div>")
        for fw, make, src in ((self.deviation, plots.deviation_ratio, self.frame),
                              (self.ranges, plots.fp16_range_counts, ranges if ranges is not None else self.frame),
                              (self.growth, plots.error_growth, self.frame)):
            try:
                set_figure(fw, make(src))
            except ConfigError as exc:  # a frame without those columns: say so in place of that chart
                set_figure(fw, plots.empty_figure(make.__name__.replace("_", " "), str(exc)))
                fw.layout.height = 160
        self.widget.layout.display = None
        if self.deviation.data:
            self.deviation.data[0].on_click(self._clicked)
        for trace in self.ranges.data:
            trace.on_click(self._clicked)

    def _clicked(self, trace: Any, points: Any, _state: Any) -> None:
        if points.point_inds and self.on_tensor_click:
            self.on_tensor_click(str(trace.x[points.point_inds[0]]))


class PrecisionTab:
    """Runs Session.compare(reference, candidate) in a job and shows the result; pins producers to FP32."""

    def __init__(self, session: "Session", build_tab: Any = None) -> None:
        self.session = session
        self.build_tab = build_tab
        self.job = None
        self.result: Any = None
        ok, why = compare_available(session)
        self.available = ok
        self.reference = W.Dropdown(options=list(PRECISIONS), value="fp32", description="reference")
        self.candidate = W.ToggleButtons(options=[p for p in PRECISIONS if p != "fp32"], value="fp16",
                                         description="candidate", style={"button_width": "72px"})
        self.compare_button = W.Button(description="Compare", button_style="primary", disabled=not ok)
        self.status = W.HTML(note_html("The precision lab is <b>not available yet</b>: " + html.escape(why))
                             if not ok else "")
        self.pin_note = W.HTML()
        self.rebuild_button = W.Button(description="Rebuild with pins", icon="refresh",
                                       layout=W.Layout(display="none"))
        self.charts = PrecisionCharts(on_tensor_click=self.pin_tensor)
        self.compare_button.on_click(self._on_compare)
        self.rebuild_button.on_click(self._on_rebuild)
        self.widget = W.VBox([W.HBox([self.reference, self.compare_button]), self.candidate, self.status,
                              W.HBox([self.pin_note, self.rebuild_button]),
                              section("Per-tensor comparison (click a bar to pin its layer to FP32)"),
                              self.charts.widget])
        self.widget.add_class("trtlab-precision-tab")

    def _on_compare(self, _b: Any = None) -> None:
        if not self.available or (self.job is not None and not self.job.done):
            return
        ref, cand = self.reference.value, self.candidate.value
        pins = list(self.build_tab.pins.selected) if self.build_tab is not None else []
        cand_spec: Any = {"precision": cand, "fp32_layers": pins} if pins else cand
        self.status.value = f"comparing {html.escape(cand)} against {html.escape(ref)} ..."
        self.job = self.session.submit("compare", lambda rep: self.session.compare(ref, cand_spec))
        self.job.add_done_callback(self._on_done)

    def _on_done(self, job: Any) -> None:
        exc = job.exception()
        if exc is not None:
            self.status.value = error_html(exc, "Comparison failed")
            return
        self.show(job.result())

    def show(self, result: Any) -> None:
        """Show a comparison result (anything with to_frame(), or a DataFrame)."""
        self.result = result
        frame = result_frame(result)
        self.charts.show(frame)
        summary = getattr(result, "summary", None)
        text = ""
        if callable(summary):
            try:
                s = summary()
                text = html.escape(str(s)) if not isinstance(s, dict) else ", ".join(
                    f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in list(s.items())[:8])
            except Exception:
                text = ""
        self.status.value = f"{len(frame)} tensors compared" + (f"<br>{text}" if text else "")

    def pin_tensor(self, tensor: str) -> str | None:
        """Pin the layer producing `tensor` to FP32 in the Build tab and offer a rebuild; returns the layer."""
        node = self.session.model.producers().get(tensor)
        if node is None:
            self.pin_note.value = note_html(f"{html.escape(tensor)} is a graph input: nothing to pin")
            return None
        if self.build_tab is not None:
            self.build_tab.pins.add([node.name])
        self.pin_note.value = f"pinned <b>{html.escape(node.name)}</b> (producer of {html.escape(tensor)}) to FP32"
        self.rebuild_button.layout.display = None
        return node.name

    def _on_rebuild(self, _b: Any = None) -> None:
        if self.build_tab is not None:
            self.build_tab.precision.value = self.candidate.value
            self.build_tab._on_build()
