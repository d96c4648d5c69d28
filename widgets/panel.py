"""The session dashboard: Build, Outputs, Layers, Precision, Monitor and Log tabs in one ipywidgets Tab."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as W

from ..markup import esc
from .build_tab import BuildTab
from .layers_tab import LayersTab
from .log_tab import LogView
from .monitor_tab import MonitorTab
from .outputs_tab import OutputsTab
from .precision_tab import PrecisionTab

if TYPE_CHECKING:
    from ..backends.base import Engine
    from ..session import Session

TITLES = ("Build", "Outputs", "Layers", "Precision", "Monitor", "Log")


class Panel:
    """`Session.panel()`: one dashboard per session; display it in a notebook cell."""

    def __init__(self, session: "Session", monitor: bool = True, monitor_interval: float = 0.25) -> None:
        self.session = session
        self.outputs = OutputsTab(session)
        self.build = BuildTab(session, outputs=lambda: self.outputs.selected, on_engine=self._on_engine,
                              monitor=lambda: self.monitor.monitor)
        self.layers = LayersTab(session, engines=lambda: list(self.build.engines))
        self.precision = PrecisionTab(session, build_tab=self.build)
        self.monitor = MonitorTab(session, interval=monitor_interval, autostart=monitor)
        self.log = LogView(session)
        self.tabs = W.Tab(children=[self.build.widget, self.outputs.widget, self.layers.widget,
                                    self.precision.widget, self.monitor.widget, self.log.widget])
        for i, t in enumerate(TITLES):
            self.tabs.set_title(i, t)
        m = session.model
        header = W.HTML(f"<b>trtlab</b> &middot; {esc(m.name)} &middot; {len(m.node_names)} nodes &middot; "
                        f"backend <code>{esc(session.backend.name)}</code>")
        self.widget = W.VBox([header, self.tabs])
        self.widget.add_class("trtlab-panel")

    def add_engine(self, engine: "Engine") -> None:
        """Offer an engine built elsewhere (e.g. in a notebook cell) in the Layers tab."""
        if engine not in self.build.engines:
            self.build.engines.append(engine)
        self.layers.refresh()

    def _on_engine(self, engine: "Engine") -> None:
        self.layers.refresh()
        self.layers.engine.value = engine

    def select(self, title: str) -> None:
        """Switch to a tab by its title."""
        self.tabs.selected_index = TITLES.index(title)

    def close(self) -> None:
        """Stop the monitor and the event subscriptions, and close the widgets."""
        self.monitor.close()
        self.build.close()
        self.log.close()
        self.precision.close()
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<trtlab Panel for {self.session.model.name}: {', '.join(TITLES)}>"
