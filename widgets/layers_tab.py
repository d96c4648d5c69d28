"""Layers tab: per-layer timing bars, op-type breakdown, and two engines side by side."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import ipywidgets as W

from .. import plots
from ..markup import esc, plot_text
from .common import error_html, figure_widget, note_html, section, set_figure

if TYPE_CHECKING:
    from ..tables import LayerProfile
    from ..backends.base import Engine
    from ..session import Session


def _warning_html(text: str) -> str:
    return (f"<div class='trtlab-precision-warning' style='color:#a33'><b>Effective precision: {esc(text)}</b>"
            f"</div>")


class LayerTimings:
    """Per-layer bars (coloured by op type or precision, top-N) and an op-type treemap for one LayerProfile."""

    def __init__(self, profile: "LayerProfile | None" = None) -> None:
        self.profile = profile
        self.color_by = W.ToggleButtons(options=["op_type", "precision", "effective_precision"], value="op_type",
                                        description="colour by")
        self.top = W.IntSlider(value=25, min=5, max=200, step=5, description="top layers")
        self.breakdown = W.ToggleButtons(options=["treemap", "bar"], value="treemap", description="by op type")
        self.mix = W.HTML()  # what the layers compute in, against the precision the engine is named after
        self.bars = figure_widget()
        self.ops = figure_widget()
        for w in (self.color_by, self.top):
            w.observe(lambda _c: self._draw_bars(), "value")
        self.breakdown.observe(lambda _c: self._draw_ops(), "value")
        self.widget = W.VBox([self.mix, W.HBox([self.color_by, self.top]), self.bars, self.breakdown, self.ops],
                             layout=W.Layout(display="none"))  # shown with the first profile
        self.widget.add_class("trtlab-layer-timings")
        if profile is not None:
            self.show(profile)

    def show(self, profile: "LayerProfile") -> None:
        """Draw a new profile."""
        self.profile = profile
        self.top.max = max(200, len(profile.frame))
        mix = profile.effective_precision() if profile.meta.get("precision") else None
        self.mix.value = "" if mix is None else (note_html(esc(f"Effective precision: {mix.summary}"))
                                                 if mix.faithful else _warning_html(mix.summary))
        self._draw_bars()
        self._draw_ops()
        self.widget.layout.display = None

    def _draw_bars(self) -> None:
        if self.profile is not None:
            set_figure(self.bars, plots.layer_timings(self.profile.frame, color_by=self.color_by.value,
                                                      top=self.top.value,
                                                      title=f"{plot_text(self.profile.engine)}: per-layer time"))

    def _draw_ops(self) -> None:
        if self.profile is not None:
            set_figure(self.ops, plots.op_type_breakdown(self.profile.by_op_type(), kind=self.breakdown.value))

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)


class LayerComparison:
    """Two profiles' per-layer times side by side (e.g. fp32 against fp16)."""

    def __init__(self, a: "LayerProfile | None" = None, b: "LayerProfile | None" = None,
                 labels: tuple[str, str] | None = None) -> None:
        self.top = W.IntSlider(value=25, min=5, max=200, step=5, description="top layers")
        self.figure = figure_widget()
        self.a, self.b, self.labels = a, b, labels
        self.top.observe(lambda _c: self._draw(), "value")
        self.widget = W.VBox([self.top, self.figure], layout=W.Layout(display="none"))
        self.widget.add_class("trtlab-layer-comparison")
        if a is not None and b is not None:
            self.show(a, b, labels)

    def show(self, a: "LayerProfile", b: "LayerProfile", labels: tuple[str, str] | None = None) -> None:
        """Compare two profiles."""
        self.a, self.b = a, b
        self.labels = labels or (a.engine or "A", b.engine or "B")
        self._draw()

    def _draw(self) -> None:
        if self.a is not None and self.b is not None:
            set_figure(self.figure, plots.layer_comparison(self.a.frame, self.b.frame, self.labels,
                                                           top=self.top.value))
            self.widget.layout.display = None

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)


class LayersTab:
    """Pick a built engine, profile it in the background, and compare two profiled engines."""

    def __init__(self, session: "Session", engines: Callable[[], list["Engine"]], runs: int = 10) -> None:
        self.session = session
        self._engines = engines
        self.profiles: dict[str, "LayerProfile"] = {}
        self.job = None
        self.engine = W.Dropdown(options=[], description="engine", layout=W.Layout(width="520px"))
        self.runs = W.IntText(value=runs, description="runs", layout=W.Layout(width="160px"))
        self.profile_button = W.Button(description="Profile layers", button_style="primary", icon="clock-o")
        self.status = W.HTML(note_html("Build an engine in the Build tab, then profile it here."))
        self.timings = LayerTimings()
        self.cmp_a = W.Dropdown(options=[], description="A")
        self.cmp_b = W.Dropdown(options=[], description="B")
        self.comparison = LayerComparison()
        for w in (self.cmp_a, self.cmp_b):
            w.observe(lambda _c: self._compare(), "value")
        self.profile_button.on_click(self._on_profile)
        self.widget = W.VBox([W.HBox([self.engine, self.runs, self.profile_button]), self.status,
                              self.timings.widget, section("Two engines side by side (profile two engines first)"),
                              W.HBox([self.cmp_a, self.cmp_b]), self.comparison.widget])
        self.widget.add_class("trtlab-layers-tab")
        self.refresh()

    def refresh(self) -> None:
        """Re-read the list of engines built in this panel."""
        engines = self._engines()
        self.engine.options = [(e.name, e) for e in engines]
        if engines and self.engine.value is None:
            self.engine.value = engines[-1]

    def _on_profile(self, _b: Any = None) -> None:
        eng = self.engine.value
        if eng is None:
            self.status.value = note_html("No engine yet: build one in the Build tab.")
            return
        if self.job is not None and not self.job.done:
            return
        self.status.value = f"profiling {esc(eng.name)} ..."
        self.job = self.session.profile_layers(eng, runs=max(1, self.runs.value), background=True)
        self.job.add_done_callback(lambda job, e=eng: self._on_done(job, e))

    def _on_done(self, job: Any, engine: "Engine") -> None:
        exc = job.exception()
        if exc is not None:
            self.status.value = error_html(exc, "Profiling failed")
            return
        self.add_profile(job.result(), label=engine.name)

    def add_profile(self, profile: "LayerProfile", label: str | None = None) -> None:
        """Show a profile and offer it for side-by-side comparison."""
        label = label or profile.engine
        self.profiles[label] = profile
        self.timings.show(profile)
        names = list(self.profiles)
        self.cmp_a.options = names
        self.cmp_b.options = names
        if len(names) >= 2:
            self.cmp_a.value, self.cmp_b.value = names[-2], names[-1]
        # written last: "total" in the status means every chart above is drawn
        self.status.value = (f"{esc(label)}: {len(profile.frame)} layers, total "
                             f"{profile.total_ms:.3f} ms over {profile.runs} runs")

    def _compare(self) -> None:
        a, b = self.cmp_a.value, self.cmp_b.value
        if a and b and a in self.profiles and b in self.profiles:
            self.comparison.show(self.profiles[a], self.profiles[b], (a, b))
