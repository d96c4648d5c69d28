"""Log tab: the session's captured build and run log, filtered by severity and searched by text."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import ipywidgets as W

from ..events import LEVELS
from ..markup import esc
from .common import Throttle

if TYPE_CHECKING:
    from ..session import Session

COLORS = {"verbose": "#888", "info": "#222", "warning": "#b8860b", "error": "#c9302c"}


class LogView:
    """Severity selector, search box and the newest `limit` matching records; follows new records live."""

    def __init__(self, session: "Session", level: str = "info", limit: int = 500) -> None:
        self.session = session
        self.limit = limit
        self.level = W.ToggleButtons(options=list(reversed(LEVELS)), value=level, description="at least",
                                     style={"button_width": "72px"})
        self.search = W.Text(placeholder="search (substring)", description="search")
        self.count = W.HTML()
        self.text = W.HTML(layout=W.Layout(max_height="420px", overflow="auto", border="1px solid #ddd"))
        self.level.observe(lambda _c: self.refresh(), "value")
        self.search.observe(lambda _c: self.refresh(), "value")
        self._throttle = Throttle(self.refresh, 0.3)
        self._unsub = session.events.subscribe(self._on_event)
        self.widget = W.VBox([W.HBox([self.level, self.search]), self.count, self.text])
        self.widget.add_class("trtlab-log-tab")
        self.refresh()

    def _on_event(self, kind: str, _payload: Any) -> None:
        if kind == "log":
            self._throttle()

    def records(self) -> list:
        """The records shown (severity at least the selected one, containing the search text)."""
        return self.session.log.records(self.level.value, self.search.value.strip() or None)

    def refresh(self) -> None:
        """Redraw from the session log."""
        recs = self.records()
        shown = recs[-self.limit:]
        lines = []
        for r in shown:
            t = dt.datetime.fromtimestamp(r.time).strftime("%H:%M:%S.%f")[:-3]
            lines.append(f"<span style='color:{COLORS.get(r.severity, '#222')}'>{t} [{r.severity[0].upper()}] "
                         f"{esc(r.source)}: {esc(r.message)}</span>")
        self.count.value = f"{len(recs)} records" + (f" (newest {len(shown)} shown)" if len(recs) > len(shown) else "")
        self.text.value = ("<pre style='margin:4px;font-size:12px;white-space:pre-wrap'>" + "\n".join(lines)
                           + "</pre>")

    def close(self) -> None:
        """Stop following the log."""
        self._unsub()
        self._throttle.cancel()
