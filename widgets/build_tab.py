"""Build tab: backend, precision, FP32 pins, batch/shape ranges, backend options, Build/Cancel, progress, result."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Iterable

import ipywidgets as W

from ..config import PRECISIONS
from ..errors import CancelledError, ConfigError
from ..markup import esc
from .common import error_html, fmt_bytes, ok_html, section

if TYPE_CHECKING:
    from ..backends.base import Engine
    from ..events import Job
    from ..session import Session

DEFAULT = "(default)"


def parse_batch(text: str) -> int | tuple[int, int, int] | None:
    """'' -> None, '8' -> 8, '1,8,32' -> (1, 8, 32) (min, opt, max)."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"batch {text!r}: give one integer (8) or min,opt,max (1,8,32)") from None
    if not nums:
        return None
    if len(nums) == 1:
        return nums[0]
    if len(nums) == 3:
        return tuple(nums)  # type: ignore[return-value]
    raise ConfigError(f"batch {text!r}: give one integer (8) or three, min,opt,max (1,8,32)")


def parse_shape(text: str) -> tuple[int, ...] | tuple[tuple[int, ...], ...] | None:
    """'1x3x224x224' -> a shape; 'AxB..., CxD..., ExF...' -> (min, opt, max) shapes; '' -> None."""
    text = text.strip()
    if not text:
        return None
    try:
        shapes = [tuple(int(d) for d in part.strip().lower().split("x")) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"shape {text!r}: write dimensions joined by x (1x3x224x224), or min,opt,max shapes "
                          f"separated by commas") from None
    if len(shapes) == 1:
        return shapes[0]
    if len(shapes) == 3:
        return tuple(shapes)  # type: ignore[return-value]
    raise ConfigError(f"shape {text!r}: give one shape or three (min,opt,max)")


def _coerce(text: str) -> Any:
    t = text.strip()
    if re.fullmatch(r"-?\d+", t):
        return int(t)
    if re.fullmatch(r"-?\d*\.\d+", t):
        return float(t)
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    return t


class OptionsForm:
    """Widgets generated from Backend.options(): choice lists become dropdowns, defaults become text fields."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.controls: dict[str, Any] = {}
        rows = []
        for name, spec in options.items():
            if isinstance(spec, dict):
                sub = OptionsForm(spec)
                self.controls[name] = sub
                rows.append(W.VBox([W.HTML(f"<i>{esc(name)}</i>"), sub.widget],
                                   layout=W.Layout(margin="0 0 0 12px")))
            elif isinstance(spec, (list, tuple)):
                ctl = W.Dropdown(options=[(DEFAULT, DEFAULT)] + [(str(c), c) for c in spec], value=DEFAULT,
                                 description=name, style={"description_width": "150px"})
                self.controls[name] = ctl
                rows.append(ctl)
            else:
                ctl = W.Text(value="", placeholder="default" if spec is None else str(spec), description=name,
                             style={"description_width": "150px"})
                self.controls[name] = ctl
                rows.append(ctl)
        self.widget = W.VBox(rows)

    def values(self) -> dict[str, Any]:
        """Only the options the user changed from the backend's default."""
        out: dict[str, Any] = {}
        for name, ctl in self.controls.items():
            if isinstance(ctl, OptionsForm):
                sub = ctl.values()
                if sub:
                    out[name] = sub
            elif isinstance(ctl, W.Dropdown):
                if ctl.value != DEFAULT:
                    out[name] = ctl.value
            elif ctl.value.strip():
                out[name] = _coerce(ctl.value)
        return out


class LayerPicker:
    """A searchable multi-select of layer names whose selection survives changes of the search text."""

    def __init__(self, names: Iterable[str], description: str = "pin FP32") -> None:
        self.names = list(names)
        self.selected: list[str] = []
        self.search = W.Text(placeholder="search layers (substring)", description="search",
                             layout=W.Layout(width="360px"))
        self.select = W.SelectMultiple(options=self.names, rows=8, description=description,
                                       layout=W.Layout(width="520px"))
        self.summary = W.HTML()
        self._quiet = False
        self.search.observe(self._on_search, "value")
        self.select.observe(self._on_select, "value")
        self.widget = W.VBox([self.search, self.select, self.summary])
        self.widget.add_class("trtlab-layer-picker")
        self._show()

    def _on_search(self, change: dict) -> None:
        q = change["new"].lower()
        shown = [n for n in self.names if q in n.lower()]
        self._quiet = True
        try:
            self.select.options = shown
            self.select.value = tuple(n for n in shown if n in self.selected)
        finally:
            self._quiet = False

    def _on_select(self, change: dict) -> None:
        if self._quiet:
            return
        visible = set(self.select.options)
        keep = [n for n in self.selected if n not in visible]
        self.selected = [n for n in self.names if n in keep or n in change["new"]]
        self._show()

    def set(self, names: Iterable[str]) -> None:
        """Replace the selection (unknown names raise ConfigError)."""
        names = list(names)
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise ConfigError(f"unknown layer(s) {unknown}: choose from the model's node names")
        self.selected = [n for n in self.names if n in names]
        self._quiet = True
        try:
            self.select.value = tuple(n for n in self.select.options if n in self.selected)
        finally:
            self._quiet = False
        self._show()

    def add(self, names: Iterable[str]) -> None:
        """Add names to the selection."""
        self.set(list(self.selected) + [n for n in names if n not in self.selected])

    def _show(self) -> None:
        n = len(self.selected)
        self.summary.value = ("<i>no layers pinned</i>" if not n else
                              f"{n} pinned: " + esc(", ".join(self.selected[:8])) + (" ..." if n > 8 else ""))


class BuildTab:
    """Build an engine through Session.build(background=True); progress, cancel, result or error box."""

    def __init__(self, session: "Session", outputs: Callable[[], list[str] | None] | None = None,
                 on_engine: Callable[["Engine"], None] | None = None, monitor: Callable[[], Any] | None = None) -> None:
        from ..backends import available_backends
        from .benchmark_box import BenchmarkBox
        self.session = session
        self._outputs = outputs
        self._on_engine = on_engine
        self.job: "Job | None" = None
        self.engine: "Engine | None" = None
        self.error: BaseException | None = None
        self.engines: list["Engine"] = []

        backends = available_backends()
        usable = [n for n, b in backends.items() if b["available"]]
        self.backend = W.Dropdown(options=usable, value=session.backend.name if session.backend.name in usable
                                  else usable[0], description="backend")
        missing = [f"<li><b>{esc(n)}</b>: {esc(str(b['detail']))}</li>"
                   for n, b in backends.items() if not b["available"]]
        self.backend_note = W.HTML("<details><summary>not available here</summary><ul>" + "".join(missing)
                                   + "</ul></details>" if missing else "")
        self.precision = W.ToggleButtons(options=list(PRECISIONS), value="fp32", description="precision",
                                         style={"button_width": "100px"})
        self.precision.add_class("trtlab-precision")
        self.pins = LayerPicker(session.model.node_names)
        self.batch = W.Text(value="1", description="batch", placeholder="8 or min,opt,max",
                            layout=W.Layout(width="260px"))
        self.shape_fields = {i.name: W.Text(value="", placeholder="x".join(str(d) for d in (i.shape or [])),
                                            description=i.name, style={"description_width": "150px"})
                             for i in session.model.inputs}
        shapes_box = W.VBox([W.HTML("<i>per-input shape or min,opt,max shapes (1x3x224x224); empty = from batch"
                                    "</i>"), *self.shape_fields.values()])
        self.options_box = W.VBox()
        self._make_options()
        self.build_button = W.Button(description="Build", button_style="primary", icon="play")
        self.cancel_button = W.Button(description="Cancel", button_style="warning", icon="stop", disabled=True)
        self.progress = W.FloatProgress(value=0, min=0, max=1, description="", layout=W.Layout(width="360px"))
        self.status = W.HTML("")
        self.result = W.HTML("")
        self.bench = BenchmarkBox(session, engine=lambda: self.engine, monitor=monitor)
        self.build_button.on_click(self._on_build)
        self.cancel_button.on_click(self._on_cancel)
        self.backend.observe(self._on_backend, "value")
        self._unsubscribe = session.events.subscribe(self._on_event)

        more = W.Accordion(children=[shapes_box, self.options_box])
        more.set_title(0, "shape ranges")
        more.set_title(1, "backend options")
        self.widget = W.VBox([
            W.HBox([self.backend, self.backend_note]), self.precision, section("Layers to keep in FP32"),
            self.pins.widget, self.batch, more, W.HBox([self.build_button, self.cancel_button, self.progress]),
            self.status, self.result, section("Benchmark the engine"), self.bench.widget])
        self.widget.add_class("trtlab-build-tab")

    # ---- controls ---------------------------------------------------------------------------------
    def _make_options(self) -> None:
        self.options = OptionsForm(self.session.backend.options())
        self.options_box.children = [self.options.widget]

    def _on_backend(self, change: dict) -> None:
        try:
            self.session.use_backend(change["new"])
        except Exception as exc:
            self.result.value = error_html(exc, "Backend unavailable")
            return
        self._make_options()

    def build_args(self) -> dict[str, Any]:
        """The keyword arguments of Session.build() that the controls describe."""
        args: dict[str, Any] = {"precision": self.precision.value}
        shapes = {k: parse_shape(w.value) for k, w in self.shape_fields.items()}
        shapes = {k: v for k, v in shapes.items() if v is not None}
        batch = parse_batch(self.batch.value)
        if shapes:
            args["shapes"] = shapes
        if batch is not None and not (shapes and len(shapes) == len(self.shape_fields)):
            args["batch"] = batch
        if self.pins.selected:
            args["fp32_layers"] = list(self.pins.selected)
        outputs = self._outputs() if self._outputs else None
        if outputs:
            args["outputs"] = list(outputs)
        args.update(self.options.values())
        return args

    # ---- actions ----------------------------------------------------------------------------------
    def _on_build(self, _button: Any = None) -> None:
        """Start a background build and return at once (the click handler never blocks the kernel)."""
        if self.job is not None and not self.job.done:
            return
        self.error = None
        self.result.value = ""
        try:
            args = self.build_args()
            job = self.session.build(background=True, **args)
        except Exception as exc:  # bad arguments: show, do not raise into the event loop
            self.error = exc
            self.result.value = error_html(exc, "Build settings rejected")
            return
        self.job = job
        self.progress.value = 0
        self.progress.bar_style = "info"
        verb = "queued (other jobs hold the session's workers): " if job.status == "queued" else "building"
        self.status.value = f"{verb} <code>{esc(job.task)}</code> ..."
        self.build_button.disabled = True
        self.cancel_button.disabled = False
        job.add_done_callback(self._on_done)

    def _on_cancel(self, _button: Any = None) -> None:
        if self.job is not None and not self.job.done:
            self.job.cancel()
            self.status.value = "cancelling ..."

    def _on_event(self, kind: str, payload: Any) -> None:
        job = self.job
        if kind != "progress" or job is None or job.done or payload.job != job.id:
            return
        frac = payload.fraction
        self.progress.value = frac if frac is not None else min(0.95, self.progress.value + 0.05)
        if payload.message:
            self.status.value = f"{esc(payload.message)} ..."

    def _on_done(self, job: "Job") -> None:
        """Runs in the worker thread when the build ends: show the engine, the cancel or the error."""
        self.build_button.disabled = False
        self.cancel_button.disabled = True
        exc = job.exception()
        if exc is None:
            eng = job.result()
            self.engine = eng
            if eng not in self.engines:
                self.engines.append(eng)
            self.progress.value = 1
            self.progress.bar_style = "success"
            self.status.value = ""
            self.result.value = ok_html(self.describe(eng))
            if self._on_engine:
                try:
                    self._on_engine(eng)
                except Exception as cb_exc:  # a broken listener must not hide the engine
                    self.result.value += error_html(cb_exc, "Panel update failed")
        elif isinstance(exc, CancelledError):
            self.progress.bar_style = "warning"
            self.status.value = "build cancelled"
        else:
            self.error = exc
            self.progress.bar_style = "danger"
            self.status.value = ""
            self.result.value = error_html(exc, "Build failed")

    @staticmethod
    def describe(engine: "Engine") -> str:
        """Engine name, size, build time and cache state as HTML."""
        m = engine.metadata
        cache = m.get("cache", "built")
        cache_text = {"built": "built now (cache miss)", "memory": "cache hit (memory)",
                      "disk": "cache hit (disk)"}.get(cache, cache)
        secs = m.get("build_seconds", m.get("total_build_seconds"))
        return (f"<b>{esc(engine.name)}</b><br>size {fmt_bytes(engine.size_bytes)}, build time "
                f"{'?' if secs is None else f'{secs:.2f} s'}, <span class='trtlab-cache'>{cache_text}</span>, "
                f"device {esc(engine.device)}")

    def close(self) -> None:
        """Stop listening to the session."""
        self._unsubscribe()
