"""Shared widget helpers: FigureWidgets refreshed from plain figures, error boxes, throttled updates."""
from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Callable

import ipywidgets as W
import plotly.graph_objects as go

from ..errors import TrtlabError
from ..markup import esc

ERROR_CLASS = "trtlab-error"


def figure_widget(fig: go.Figure | None = None, height: int | None = None) -> go.FigureWidget:
    """A FigureWidget showing `fig` (an empty one when None)."""
    fw = go.FigureWidget(fig if fig is not None else go.Figure(layout=dict(template="plotly_white")))
    if height:
        fw.layout.height = height
    return fw


def set_figure(fw: go.FigureWidget, fig: go.Figure) -> None:
    """Replace the traces and layout of a FigureWidget by those of `fig` (few messages, safe from a thread)."""
    with fw.batch_update():
        fw.data = []
        fw.layout = fig.layout
    fw.add_traces(list(fig.data))


def error_html(exc: BaseException | str, title: str = "Error") -> str:
    """An HTML error box: the message of a TrtlabError, or the type, message and last frames of anything else."""
    if isinstance(exc, str):
        body = esc(exc)
    elif isinstance(exc, TrtlabError):
        body = f"<b>{type(exc).__name__}</b>: {esc(str(exc))}"
    else:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])
        body = (f"<b>{type(exc).__name__}</b>: {esc(str(exc))}"
                f"<details><summary>traceback</summary><pre>{esc(tb)}</pre></details>")
    return (f'<div class="{ERROR_CLASS}" style="border:1px solid #d9534f;background:#fdf0ef;color:#8a1f1b;'
            f'padding:6px 10px;border-radius:4px;white-space:pre-wrap"><b>{esc(title)}</b><br>{body}</div>')


def note_html(text: str) -> str:
    """A grey note box (for 'not available here' messages)."""
    return (f'<div class="trtlab-note" style="border:1px solid #ccc;background:#f7f7f7;padding:6px 10px;'
            f'border-radius:4px">{text}</div>')


def ok_html(text: str) -> str:
    """A green result box."""
    return (f'<div class="trtlab-ok" style="border:1px solid #5cb85c;background:#f1f9f1;padding:6px 10px;'
            f'border-radius:4px">{text}</div>')


class Throttle:
    """Call `fn()` at most every `interval` seconds; a call arriving early schedules one trailing call."""

    def __init__(self, fn: Callable[[], Any], interval: float = 0.25) -> None:
        self.fn = fn
        self.interval = interval
        self._last = 0.0
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            now = time.monotonic()
            wait = self._last + self.interval - now
            if wait <= 0:
                self._last = now
                run = True
            else:
                run = False
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._trailing)
                    self._timer.daemon = True
                    self._timer.start()
        if run:
            self.fn()

    def _trailing(self) -> None:
        with self._lock:
            self._timer = None
            self._last = time.monotonic()
        self.fn()

    def cancel(self) -> None:
        """Drop a pending trailing call."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


def fmt_bytes(n: float) -> str:
    """Bytes as KiB/MiB/GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def section(title: str) -> W.HTML:
    """A small heading."""
    return W.HTML(f"<h4 style='margin:6px 0 2px 0'>{esc(title)}</h4>")
