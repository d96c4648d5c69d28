"""Plugin lifecycle tracer: record every IPluginV3 callback with the object it ran on (TensorRT FAQ 16, visible)."""
from __future__ import annotations

import contextlib
import functools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pandas as pd

from ...errors import ConfigError

# IPluginV3 + IPluginV3OneCore/OneBuild/OneRuntime callbacks, and IPluginCreatorV3One's
PLUGIN_CALLBACKS = ("get_capability_interface", "clone", "destroy", "configure_plugin", "get_output_data_types",
                    "get_output_shapes", "supports_format_combination", "get_workspace_size", "get_valid_tactics",
                    "get_timing_cache_id", "get_metadata_string", "set_tactic", "on_shape_change",
                    "attach_to_context", "enqueue", "get_fields_to_serialize", "get_aliased_input",
                    "get_format_combination_limit")
CREATOR_CALLBACKS = ("create_plugin", "get_field_names")
TRACE_COLUMNS = ["seq", "phase", "object", "class", "callback", "result", "detail", "thread", "t_ms"]


@dataclass
class PluginTracer:
    """Instruments plugin (and creator) classes in place; `table()` shows the callback sequence."""

    events: list[dict[str, Any]] = field(default_factory=list)
    current_phase: str = "setup"
    _labels: dict[int, str] = field(default_factory=dict)
    _keep: list[Any] = field(default_factory=list)
    _patched: list[tuple[type, str, Any, bool]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _t0: float = field(default_factory=time.perf_counter)

    def label(self, obj: Any) -> str:
        """Stable short name of an object ('#1', '#2', ...) in order of first appearance."""
        with self._lock:
            key = id(obj)
            if key not in self._labels:
                self._labels[key] = f"#{len(self._labels) + 1}"
                self._keep.append(obj)  # keep it alive so id() is never reused within one trace
            return self._labels[key]

    def record(self, obj: Any, callback: str, result: Any = None, detail: str = "") -> None:
        """Append one event."""
        me = self.label(obj)  # the caller first, so a creator is labelled before what it creates
        res = self.label(result) if _is_traced(result) else ("" if result is None else _short(result))
        event = {"phase": self.current_phase, "object": me, "class": type(obj).__name__,
                 "callback": callback, "result": res, "detail": detail,
                 "thread": threading.current_thread().name, "t_ms": (time.perf_counter() - self._t0) * 1e3}
        with self._lock:
            event["seq"] = len(self.events)
            self.events.append(event)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator["PluginTracer"]:
        """Label the callbacks made inside the block ('parse', 'build', 'deserialize', 'infer', ...)."""
        old, self.current_phase = self.current_phase, name
        try:
            yield self
        finally:
            self.current_phase = old

    def instrument(self, cls: type, callbacks: tuple[str, ...] | None = None) -> type:
        """Wrap the callbacks `cls` defines (plugin or creator class) so each call is recorded; returns cls."""
        if not isinstance(cls, type):
            raise ConfigError(f"instrument() takes a plugin or creator class, got {cls!r}")
        names = callbacks or (PLUGIN_CALLBACKS + CREATOR_CALLBACKS)
        setattr(cls, "__trtlab_traced__", True)
        for name in names:
            own = name in cls.__dict__
            original = cls.__dict__.get(name) if own else getattr(cls, name, None)
            if original is None or not callable(original) or getattr(original, "__trtlab_wrapped__", False):
                continue
            setattr(cls, name, self._wrap(name, original))
            self._patched.append((cls, name, original, own))
        return cls

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        tracer = self

        @functools.wraps(fn)
        def traced(obj: Any, *args: Any, **kwargs: Any) -> Any:
            result = fn(obj, *args, **kwargs)
            if name in ("clone", "attach_to_context", "create_plugin") and result is not None:
                _mark(result)
            tracer.record(obj, name, result, _describe(name, args))
            return result
        traced.__trtlab_wrapped__ = True  # type: ignore[attr-defined]
        return traced

    def restore(self) -> None:
        """Undo every instrumentation (the classes behave as before)."""
        for cls, name, original, own in reversed(self._patched):
            if own:
                setattr(cls, name, original)
            else:
                delattr(cls, name)
        self._patched.clear()

    def __enter__(self) -> "PluginTracer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.restore()

    # ---- tables ----------------------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        """One row per callback in call order: phase, object label, class, callback, result, detail."""
        return pd.DataFrame(self.events, columns=TRACE_COLUMNS)

    def objects(self) -> pd.DataFrame:
        """One row per object: how it was made (created/cloned from), phases seen, calls, destroyed or not."""
        f = self.table()
        rows = []
        for label, g in f.groupby("object", sort=False):
            origin = f[(f["result"] == label) & f["callback"].isin(["create_plugin", "clone", "attach_to_context"])]
            made = (f"{origin.iloc[0]['callback']} of {origin.iloc[0]['object']}" if len(origin) else "given")
            rows.append({"object": label, "class": g["class"].iloc[0], "made_by": made,
                         "phases": list(dict.fromkeys(g["phase"])), "calls": len(g),
                         "destroyed": bool((g["callback"] == "destroy").any())})
        return pd.DataFrame(rows, columns=["object", "class", "made_by", "phases", "calls", "destroyed"])

    def text(self) -> str:
        """The sequence in the FAQ 16 style: 'phase: Class::callback() #obj -> result'."""
        lines, phase = [], None
        for e in self.events:
            if e["phase"] != phase:
                phase = e["phase"]
                lines.append(f"{phase}:")
            arrow = f" --> {e['result']}" if e["result"] else ""
            lines.append(f"    {e['class']}::{e['callback']}() {e['object']}{arrow}")
        return "\n".join(lines)


def _mark(obj: Any) -> None:
    try:
        obj.__dict__.setdefault("__trtlab_traced__", True)
    except (AttributeError, TypeError):
        pass


def _is_traced(obj: Any) -> bool:
    return obj is not None and bool(getattr(obj, "__trtlab_traced__", False))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(name: str, args: tuple[Any, ...]) -> str:
    if name == "supports_format_combination" and args:
        return f"pos={args[0]}"
    if name == "set_tactic" and args:
        return f"tactic={args[0]}"
    if name == "create_plugin" and args:
        return f"name={args[0]!r}" + (f", phase={getattr(args[2], 'name', args[2])}" if len(args) > 2 else "")
    if name == "get_capability_interface" and args:
        return f"type={getattr(args[0], 'name', args[0])}"
    return ""


def trace_plugin(*classes: type) -> PluginTracer:
    """A tracer with the given plugin/creator classes instrumented; use as a context manager to restore them."""
    tracer = PluginTracer()
    for cls in classes:
        tracer.instrument(cls)
    return tracer
