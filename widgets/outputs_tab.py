"""Outputs tab: the model's tensors in graph order with checkboxes to mark them as engine outputs."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import ipywidgets as W

from ..markup import esc

if TYPE_CHECKING:
    from ..session import Session

MAX_SHOWN = 300  # more checkboxes than this make the browser slow; the search narrows the list


class OutputsTab:
    """Searchable tensor list; `selected` (graph order) is passed to builds, or to Session.mark_outputs if present."""

    def __init__(self, session: "Session", on_change: Callable[[list[str]], None] | None = None) -> None:
        self.session = session
        self.on_change = on_change
        vi = session.model.value_infos
        self.names = session.model.activation_names()
        outputs = {o.name for o in session.model.outputs}
        self._labels = {}
        for n in self.names:
            info = vi.get(n)
            shape = list(info.shape) if info is not None and info.shape is not None else "?"
            dtype = info.dtype if info is not None else "?"
            self._labels[n] = f"{n}  {dtype} {shape}" + ("  (model output)" if n in outputs else "")
        self._selected: set[str] = set()
        self._boxes: dict[str, W.Checkbox] = {}
        self.search = W.Text(placeholder="search tensors (substring)", description="search",
                             layout=W.Layout(width="360px"))
        self.mark_all = W.Button(description="mark all", tooltip="mark every tensor matching the search")
        self.clear = W.Button(description="clear", tooltip="unmark every tensor")
        self.summary = W.HTML()
        self.listing = W.VBox(layout=W.Layout(max_height="360px", overflow="auto"))
        self.search.observe(lambda _c: self._refresh(), "value")
        self.mark_all.on_click(lambda _b: self.set(self._selected | set(self.visible())))
        self.clear.on_click(lambda _b: self.set(()))
        self.widget = W.VBox([W.HBox([self.search, self.mark_all, self.clear]), self.summary, self.listing])
        self.widget.add_class("trtlab-outputs-tab")
        self._refresh()

    def visible(self) -> list[str]:
        """Tensor names matching the search, in graph order."""
        q = self.search.value.strip().lower()
        return [n for n in self.names if q in n.lower()]

    @property
    def selected(self) -> list[str]:
        """Marked tensors in graph order."""
        return [n for n in self.names if n in self._selected]

    def set(self, names: Any) -> None:
        """Mark exactly `names` (graph-order list afterwards)."""
        names = set(names)
        unknown = names - set(self.names)
        if unknown:
            from ..errors import ConfigError
            raise ConfigError(f"unknown tensor(s) {sorted(unknown)}: choose from Model.activation_names()")
        self._selected = names
        for n, box in self._boxes.items():
            if box.value != (n in names):
                box.value = n in names
        self._changed()

    def _box(self, name: str) -> W.Checkbox:
        box = self._boxes.get(name)
        if box is None:
            box = W.Checkbox(value=name in self._selected, description=self._labels[name], indent=False,
                             layout=W.Layout(width="auto"))
            box.observe(lambda c, n=name: self._toggle(n, c["new"]), "value")
            self._boxes[name] = box
        return box

    def _toggle(self, name: str, on: bool) -> None:
        if on == (name in self._selected):
            return
        (self._selected.add if on else self._selected.discard)(name)
        self._changed()

    def _refresh(self) -> None:
        shown = self.visible()
        self.listing.children = [self._box(n) for n in shown[:MAX_SHOWN]]
        self._summary(len(shown))

    def _summary(self, matching: int | None = None) -> None:
        matching = len(self.visible()) if matching is None else matching
        more = f" (showing the first {MAX_SHOWN}; refine the search)" if matching > MAX_SHOWN else ""
        sel = self.selected
        self.summary.value = (f"{len(self.names)} tensors, {matching} match{more}; <b>{len(sel)} marked</b>"
                              + (": " + esc(", ".join(sel[:6])) + (" ..." if len(sel) > 6 else "")
                                 if sel else ""))

    def _changed(self) -> None:
        self._summary()
        mark = getattr(self.session, "mark_outputs", None)
        if callable(mark):
            try:
                mark(self.selected)
            except Exception as exc:  # shown, not raised: the list stays usable
                from .common import error_html
                self.summary.value += error_html(exc, "Marking outputs failed")
        if self.on_change:
            self.on_change(self.selected)
