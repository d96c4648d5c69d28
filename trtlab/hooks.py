"""Entry points that the UI layer registers (the dashboard panel, the HTML report), so the hub reaches them by
name without importing the UI: importing `trtlab.widgets` or `trtlab.report` registers them."""
from __future__ import annotations

import importlib
from typing import Any, Callable

from .errors import ExtraNotInstalledError

# hook name -> the module that registers it when imported
PROVIDERS = {"panel": "trtlab.widgets", "report": "trtlab.report"}
_HOOKS: dict[str, Callable[..., Any]] = {}


def register(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Make `fn` the entry point called for `name` (e.g. "panel": fn(session, **kwargs) -> widget)."""
    _HOOKS[name] = fn
    return fn


def hook(name: str) -> Callable[..., Any]:
    """The entry point registered for `name`, importing its provider module first when needed."""
    if name not in _HOOKS:
        try:
            importlib.import_module(PROVIDERS[name])
        except ImportError as exc:
            missing = getattr(exc, "name", None) or str(exc)
            raise ExtraNotInstalledError(f"Session.{name}() needs {missing}, which is not installed: "
                                         f"pip install 'trtlab[lab]'") from None
    if name not in _HOOKS:
        raise ExtraNotInstalledError(f"nothing provides Session.{name}() ({PROVIDERS[name]} registered no "
                                     f"{name!r} hook); reinstall with pip install 'trtlab[lab]'")
    return _HOOKS[name]
