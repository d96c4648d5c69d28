"""Progress and log events, and Jobs: long work on a bounded pool of worker threads with progress, logs
and cancel; every event a job causes carries the job's id."""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .errors import CancelledError, ConfigError

LEVELS = ("verbose", "info", "warning", "error")
_logger = logging.getLogger("trtlab")
_PY_LEVEL = {"verbose": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@dataclass(frozen=True)
class LogRecord:
    """One line of the session log: when, how severe, from where, what, and the job it came from (or None)."""

    time: float
    severity: str
    source: str
    message: str
    job: str | None = None


@dataclass
class Progress:
    """Where a long operation stands: `done` of `total` steps (total None when unknown); `job` is the id of the
    job reporting it (two jobs may share a task name, never an id)."""

    task: str
    done: float = 0
    total: float | None = None
    message: str = ""
    job: str | None = None

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

    def write(self, severity: str, message: str, source: str = "trtlab", job: str | None = None) -> None:
        """Append a record and publish it as a "log" event."""
        if severity not in LEVELS:
            severity = "info"
        rec = LogRecord(time.time(), severity, source, message, job)
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
        """The log as a pandas DataFrame (time, severity, source, message, job)."""
        import pandas as pd
        return pd.DataFrame([r.__dict__ for r in self.records(level, search)],
                            columns=["time", "severity", "source", "message", "job"])

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


_job_ids = itertools.count(1)
_active: ContextVar["Reporter | None"] = ContextVar("trtlab_active_reporter", default=None)


def new_job_id() -> str:
    """A process-wide unique job id, 'job-<n>'."""
    return f"job-{next(_job_ids)}"


def job_reporter(task: str, bus: EventBus | None, log: SessionLog | None) -> "Reporter":
    """The reporter for work started here: inside a job's work (a build that tune makes) it shares that job's
    id and cancel token, so its events are the job's and cancelling the job stops it; otherwise a new id."""
    parent = _active.get()
    if parent is not None:
        return Reporter(task, bus, log, parent.cancel, job=parent.job)
    return Reporter(task, bus, log, job=new_job_id())


@dataclass
class Reporter:
    """What a long operation gets to report progress and logs and to honour cancel; `job` tags every event."""

    task: str
    bus: EventBus | None = None
    log: SessionLog | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    progress: Progress | None = None
    job: str | None = None

    def update(self, done: float, total: float | None = None, message: str = "") -> None:
        """Publish progress, then stop here if cancellation was requested."""
        self.progress = Progress(self.task, done, total, message, self.job)
        if self.bus:
            self.bus.emit("progress", self.progress)
        self.cancel.check(self.task)

    def write(self, severity: str, message: str, source: str | None = None) -> None:
        """Write to the session log (if any)."""
        if self.log:
            self.log.write(severity, message, source or self.task, self.job)

    def child(self, task: str, events: bool = True, log: bool = False) -> "Reporter":
        """A reporter for one part of this work: same job and cancel token; its progress goes to the bus
        when `events`, its log lines to the session log when `log`."""
        return Reporter(task, self.bus if events else None, self.log if log else None, self.cancel, job=self.job)

    @contextmanager
    def active(self) -> Iterator["Reporter"]:
        """While the block runs (in this thread), work started through job_reporter() belongs to this job."""
        token = _active.set(self)
        try:
            yield self
        finally:
            _active.reset(token)


_worker_of = threading.local()  # .executors: the JobExecutor(s) whose worker this thread is


class JobExecutor:
    """Runs jobs at most `max_workers` at a time, the rest waiting in submission order. Workers are daemon
    threads started on demand that end when nothing waits, so an exiting kernel never waits on queued work."""

    def __init__(self, max_workers: int = 2) -> None:
        if not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1:
            raise ConfigError(f"max_jobs must be a positive number of worker threads, got {max_workers!r}")
        self.max_workers = max_workers
        self._pending: deque[Job] = deque()
        self._workers = 0
        self._lock = threading.Lock()

    def submit(self, job: "Job") -> None:
        """Queue `job`; it starts as soon as a worker is free. A job submitted from inside one of this
        executor's jobs starts at once on a thread of its own: the outer job may be waiting for it, and queueing
        it behind the outer job (max_jobs=1) would wait forever."""
        if self in getattr(_worker_of, "executors", ()):
            threading.Thread(target=self._work_nested, args=(job,), name="trtlab-job-nested", daemon=True).start()
            return
        with self._lock:
            self._pending.append(job)
            if self._workers >= self.max_workers:
                return
            self._workers += 1
        threading.Thread(target=self._work, name="trtlab-job", daemon=True).start()

    def _work_nested(self, job: "Job") -> None:
        _worker_of.executors = {self}
        job._run()

    def withdraw(self, job: "Job") -> bool:
        """Take a job that has not started out of the queue; False when it already started (or finished)."""
        with self._lock:
            try:
                self._pending.remove(job)
            except ValueError:
                return False
            return True

    @property
    def queued(self) -> int:
        """Jobs waiting for a worker."""
        with self._lock:
            return len(self._pending)

    def _work(self) -> None:
        _worker_of.executors = {self}
        while True:
            with self._lock:
                if not self._pending:
                    self._workers -= 1
                    return
                job = self._pending.popleft()
            job._run()


class Job:
    """Long work on an executor's worker thread: `id`, `result()`, `cancel()`, `done`, `progress`, `status`.

    It waits its turn in the executor (status "queued"); a job cancelled before it starts never runs."""

    def __init__(self, task: str, fn: Callable[[Reporter], Any], executor: JobExecutor,
                 bus: EventBus | None = None, log: SessionLog | None = None) -> None:
        self.id = new_job_id()
        self.task = task
        self.reporter = Reporter(task, bus, log, job=self.id)
        self._fn = fn
        self._future: Future = Future()
        self._bus = bus
        self._executor = executor
        self._started = False
        executor.submit(self)

    def _run(self) -> None:
        if not self._future.set_running_or_notify_cancel():
            return
        self._started = True
        try:
            self.reporter.cancel.check(self.task)  # cancelled while it waited for a worker
            with self.reporter.active():
                value = self._fn(self.reporter)
        except BaseException as exc:  # delivered to whoever asks for result()
            self._future.set_exception(exc)
        else:
            self._future.set_result(value)
        self._fn = None
        self._announce()

    def _announce(self) -> None:
        if self._bus:
            self._bus.emit("job", self)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the work and return its value (or raise its error)."""
        return self._future.result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The error the work raised, or None."""
        return self._future.exception(timeout)

    def cancel(self) -> None:
        """Ask the work to stop: a queued job is dropped before it starts; a running one raises CancelledError
        at its next progress check."""
        self.reporter.cancel.cancel()
        if self._executor.withdraw(self):
            self._fn = None
            self._future.set_running_or_notify_cancel()
            self._future.set_exception(CancelledError(f"{self.task} was cancelled before it started"))
            self._announce()

    def add_done_callback(self, fn: Callable[["Job"], Any]) -> None:
        """Call `fn(job)` once the work has finished (from the worker thread, or at once when it has)."""
        self._future.add_done_callback(lambda _f: fn(self))

    @property
    def done(self) -> bool:
        """True when the work has finished, successfully or not (a job cancelled while queued included)."""
        return self._future.done()

    @property
    def started(self) -> bool:
        """True once a worker began the work."""
        return self._started

    @property
    def progress(self) -> Progress | None:
        """The latest progress reported."""
        return self.reporter.progress

    @property
    def status(self) -> str:
        """'queued', 'running', 'done', 'cancelled' or 'failed'."""
        if not self._future.done():
            return "running" if self._started else "queued"
        exc = self._future.exception()
        if exc is None:
            return "done"
        return "cancelled" if isinstance(exc, CancelledError) else "failed"

    def __repr__(self) -> str:
        p = self.progress
        where = f" {p.done}/{p.total}" if p and p.total else ""
        return f"<Job {self.id} {self.task} {self.status}{where}>"
