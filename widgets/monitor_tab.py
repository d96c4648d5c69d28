"""Monitor tab: a live chart of GPU (NVML) or CPU (psutil) utilization from trtlab.monitor.Monitor."""
from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as W

from .. import plots
from ..markup import esc, plot_text
from .common import Throttle, error_html, figure_widget, set_figure

if TYPE_CHECKING:
    from ..monitor import Monitor
    from ..session import Session

HISTORY_S = 3600.0
INTERVALS = [("50 ms", 0.05), ("100 ms", 0.1), ("250 ms", 0.25), ("500 ms", 0.5), ("1 s", 1.0)]


class MonitorChart:
    """Live plot of a Monitor's samples (last `window_s` seconds), redrawn at most `fps` times a second."""

    def __init__(self, monitor: "Monitor | None" = None, window_s: float = 60.0, fps: float = 2.0) -> None:
        self.window_s = window_s
        self.figure = figure_widget(height=420)
        self.figure.layout.title = "Monitor: not started"
        self._buf: collections.deque[dict[str, Any]] = collections.deque()
        self._lock = threading.Lock()
        self._columns: list[str] = []
        self._unsub = None
        self._draw = Throttle(self._redraw, 1.0 / fps)
        self.monitor: "Monitor | None" = None
        self.widget = self.figure
        if monitor is not None:
            self.attach(monitor)

    def attach(self, monitor: "Monitor") -> None:
        """Follow `monitor` (past samples included); detaches from a previous one."""
        self.detach()
        self.monitor = monitor
        with self._lock:
            self._buf.clear()
            self._buf.extend(monitor.samples)
            self._columns = []
        self._unsub = monitor.subscribe(self._on_sample)
        self._redraw()

    def detach(self) -> None:
        """Stop following the monitor."""
        if self._unsub is not None:
            self._unsub()
            self._unsub = None
        self._draw.cancel()

    def _on_sample(self, sample: dict[str, Any]) -> None:
        with self._lock:
            self._buf.append(sample)
            cutoff = sample.get("time_s", 0.0) - self.window_s
            while self._buf and self._buf[0].get("time_s", 0.0) < cutoff:
                self._buf.popleft()
        self._draw()

    def frame(self):
        """The samples currently shown, as a DataFrame."""
        from ..monitor import samples_to_frame
        with self._lock:
            samples = list(self._buf)
        cols = self.monitor.columns if self.monitor is not None else ()
        return samples_to_frame(samples, cols)

    def _redraw(self) -> None:
        frame = self.frame()
        if not len(frame):
            return
        cols = [c for _label, group in plots.monitor_groups(frame.columns) for c in group]
        if cols != self._columns or len(self.figure.data) != len(cols):
            title = None
            if self.monitor is not None:
                title = plot_text(f"Live monitor: {self.monitor.source}" + (f" ({self.monitor.gpu_name})"
                                                                            if self.monitor.gpu_name else ""))
            set_figure(self.figure, plots.monitor_timeline(frame, title=title))
            self._columns = cols
            return
        with self.figure.batch_update():  # one message for all traces
            for trace, c in zip(self.figure.data, cols):
                trace.x = frame["time_s"].to_numpy()
                trace.y = frame[c].to_numpy(dtype=float, na_value=float("nan"))

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)


class MonitorTab:
    """Start/stop sampling at a chosen rate; the chart keeps running while builds and benchmarks run."""

    def __init__(self, session: "Session", interval: float = 0.25, autostart: bool = True) -> None:
        self.session = session
        self.monitor: "Monitor | None" = None
        self.interval = W.Dropdown(options=INTERVALS, value=interval if interval in dict(INTERVALS).values()
                                   else 0.25, description="sample every")
        self.running = W.ToggleButton(value=False, description="Live", icon="heartbeat",
                                      tooltip="start/stop sampling")
        self.note = W.HTML()
        self.chart = MonitorChart()
        self.running.observe(self._on_toggle, "value")
        self.interval.observe(self._on_interval, "value")
        self.widget = W.VBox([W.HBox([self.interval, self.running]), self.note, self.chart.widget])
        self.widget.add_class("trtlab-monitor-tab")
        if autostart:
            self.running.value = True

    def _on_toggle(self, change: dict) -> None:
        if change["new"]:
            self.start()
        else:
            self.stop()

    def _on_interval(self, _change: dict) -> None:
        if self.running.value:
            self.stop()
            self.start()

    def start(self) -> None:
        """Start a fresh Monitor at the selected interval."""
        if self.monitor is not None and self.monitor.running:
            return
        try:
            make = getattr(self.session, "monitor", None)
            if callable(make):
                mon = make(interval=self.interval.value, max_samples=self.max_samples())
            else:
                from ..monitor import Monitor
                mon = Monitor(interval=self.interval.value, max_samples=self.max_samples())
            mon.start()
        except Exception as exc:
            self.note.value = error_html(exc, "Monitor could not start")
            self.running.value = False
            return
        self.monitor = mon
        self.chart.attach(mon)
        what = mon.gpu_name or ("GPU" if mon.source == "nvml" else "CPU and memory")
        self.note.value = (f"sampling {esc(what)} with {esc(mon.source)} every "
                           f"{mon.interval:g} s" + (f"<br><i>{esc(mon.note)}</i>" if mon.note else ""))
        if not self.running.value:
            self.running.value = True

    def max_samples(self) -> int:
        """Samples kept by the tab's monitor: the last hour (a panel may stay open all day)."""
        return max(1, int(HISTORY_S / self.interval.value))

    def stop(self) -> None:
        """Stop sampling (the chart keeps its last samples)."""
        if self.monitor is not None:
            self.chart.detach()
            self.monitor.stop()
        if self.running.value:
            self.running.value = False

    def close(self) -> None:
        """Stop the sampler thread."""
        self.stop()
