"""Progress and log events, and Jobs: long work in worker threads with progress, logs and cancel."""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import CancelledError

LEVELS = ("verbose", "info", "warning", "error")
_logger = logging.getLogger("trtlab")
_PY_LEVEL = {"verbose": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@dataclass(frozen=True)
class LogRecord:
    """One line of the session log: when, how severe, from where, what."""

    time: float
    severity: str
    source: str
    message: str


@dataclass
class Progress:
    """Where a long operation stands: `done` of `total` steps (total None when unknown)."""

    task: str
    done: float = 0
    total: float | None = None
    message: str = ""

    @property
    def fraction(self) -> float | None:
        """done/total in [0, 1], or None when the total is unknown."""
        return None if not self.total else min(1.0, self.done / self.total)


class EventBus:
    """Thread-safe publish/subscribe for "progress" and "log" events; subscribers never break the sender."""

    def __init__(self) -> None:
        self._subs: list[Callable[[str, Any], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: Callable[[str, Any], None]) -> Callable[[], None]:
        """Call `callback(kind, payload)` for each event; returns a function that unsubscribes."""
        with self._lock:
            self._subs.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subs:
                    self._subs.remove(callback)
        return unsubscribe

    def emit(self, kind: str, payload: Any) -> None:
        """Deliver an event to every subscriber, logging (not raising) subscriber errors."""
        with self._lock:
            subs = list(self._subs)
        for cb in subs:
            try:
                cb(kind, payload)
            except Exception:  # a broken UI callback must not kill a build
                _logger.exception("trtlab event subscriber failed")


class SessionLog:
    """The captured build and run log of a session, filterable by severity and text."""

    def __init__(self, bus: EventBus, limit: int = 100_000) -> None:
        self._records: list[LogRecord] = []
        self._bus = bus
        self._limit = limit
        self._lock = threading.Lock()

    def write(self, severity: str, message: str, source: str = "trtlab") -> None:
        """Append a record and publish it as a "log" event."""
        if severity not in LEVELS:
            severity = "info"
        rec = LogRecord(time.time(), severity, source, message)
        with self._lock:
            self._records.append(rec)
            if len(self._records) > self._limit:
                del self._records[: len(self._records) - self._limit]
        _logger.log(_PY_LEVEL[severity], "[%s] %s", source, message)
        self._bus.emit("log", rec)

    def records(self, level: str = "verbose", search: str | None = None) -> list[LogRecord]:
        """Records at `level` or more severe, optionally containing `search` (case-insensitive)."""
        floor = LEVELS.index(level)
        with self._lock:
            recs = list(self._records)
        out = [r for r in recs if LEVELS.index(r.severity) >= floor]
        if search:
            s = search.lower()
            out = [r for r in out if s in r.message.lower() or s in r.source.lower()]
        return out

    def to_frame(self, level: str = "verbose", search: str | None = None):
        """The log as a pandas DataFrame (time, severity, source, message)."""
        import pandas as pd
        return pd.DataFrame([r.__dict__ for r in self.records(level, search)],
                            columns=["time", "severity", "source", "message"])

    def text(self, level: str = "info", search: str | None = None) -> str:
        """The log as plain text, one record per line."""
        return "\n".join(f"[{r.severity[0].upper()}] {r.source}: {r.message}" for r in self.records(level, search))


class CancelToken:
    """A cancel flag shared between the caller and the worker; work calls `check()` between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the work to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once cancel() was called."""
        return self._event.is_set()

    def check(self, what: str = "operation") -> None:
        """Raise CancelledError if cancellation was requested."""
        if self._event.is_set():
            raise CancelledError(f"{what} was cancelled")


@dataclass
class Reporter:
    """What a long operation gets to report progress and logs and to honour cancel."""

    task: str
    bus: EventBus | None = None
    log: SessionLog | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    progress: Progress | None = None

    def update(self, done: float, total: float | None = None, message: str = "") -> None:
        """Publish progress, then stop here if cancellation was requested."""
        self.progress = Progress(self.task, done, total, message)
        if self.bus:
            self.bus.emit("progress", self.progress)
        self.cancel.check(self.task)

    def write(self, severity: str, message: str, source: str | None = None) -> None:
        """Write to the session log (if any)."""
        if self.log:
            self.log.write(severity, message, source or self.task)


class Job:
    """Long work running in a worker thread: `result()`, `cancel()`, `done`, `progress`, `status`."""

    def __init__(self, task: str, fn: Callable[[Reporter], Any], bus: EventBus | None = None,
                 log: SessionLog | None = None) -> None:
        self.task = task
        self.reporter = Reporter(task, bus, log)
        self._future: Future = Future()
        self._bus = bus
        self._thread = threading.Thread(target=self._run, args=(fn,), name=f"trtlab-{task}", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[Reporter], Any]) -> None:
        self._future.set_running_or_notify_cancel()
        try:
            value = fn(self.reporter)
        except BaseException as exc:  # delivered to whoever asks for result()
            self._future.set_exception(exc)
            if self._bus:
                self._bus.emit("job", self)
            return
        self._future.set_result(value)
        if self._bus:
            self._bus.emit("job", self)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the work and return its value (or raise its error)."""
        return self._future.result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The error the work raised, or None."""
        return self._future.exception(timeout)

    def cancel(self) -> None:
        """Ask the work to stop; it raises CancelledError at its next progress check."""
        self.reporter.cancel.cancel()

    def add_done_callback(self, fn: Callable[["Job"], Any]) -> None:
        """Call `fn(job)` once the work has finished (from the worker thread)."""
        self._future.add_done_callback(lambda _f: fn(self))

    @property
    def done(self) -> bool:
        """True when the work has finished, successfully or not."""
        return self._future.done()

    @property
    def progress(self) -> Progress | None:
        """The latest progress reported."""
        return self.reporter.progress

    @property
    def status(self) -> str:
        """'running', 'done', 'cancelled' or 'failed'."""
        if not self._future.done():
            return "running"
        exc = self._future.exception()
        if exc is None:
            return "done"
        return "cancelled" if isinstance(exc, CancelledError) else "failed"

    def __repr__(self) -> str:
        p = self.progress
        where = f" {p.done}/{p.total}" if p and p.total else ""
        return f"<Job {self.task} {self.status}{where}>"
