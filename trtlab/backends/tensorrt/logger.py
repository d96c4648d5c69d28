"""ILogger and IProgressMonitor subclasses that feed the session log and progress bar, and honour Cancel."""
from __future__ import annotations

import collections
import contextlib
import logging
import re
import threading
from typing import TYPE_CHECKING, Any, Iterator

from ...errors import CancelledError

if TYPE_CHECKING:
    from ...events import Reporter
    from ._import import TrtApi


class LogSink:
    """Messages of one operation (a build, a parse, a deserialization), forwarded to its reporter as they come."""

    ORDER = ["verbose", "info", "warning", "error"]

    def __init__(self, reporter: "Reporter | None" = None, source: str = "tensorrt") -> None:
        self.reporter = reporter
        self.source = source
        self.records: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def write(self, severity: str, msg: str) -> None:
        """Keep one message and pass it to the reporter (the session log)."""
        with self._lock:
            self.records.append((severity, msg))
        if self.reporter is not None:
            self.reporter.write(severity, msg, self.source)

    def text(self, level: str = "verbose") -> str:
        """Every message at or above `level`, one per line."""
        keep = set(self.ORDER[self.ORDER.index(level):])
        return "\n".join(m for s, m in self.records if s in keep)

    def errors(self) -> list[str]:
        """Messages of severity error."""
        return [m for s, m in self.records if s == "error"]


_LOGGERS: dict[str, Any] = {}
_SINKS: list[LogSink] = []
# the last errors TensorRT logged, numbered, so a failed call can name what it logged (error_mark/errors_since)
_RECENT: collections.deque[tuple[int, str]] = collections.deque(maxlen=32)
_ERRORS = [0]
_SINKS_LOCK = threading.Lock()
_FALLBACK = logging.getLogger("trtlab.tensorrt")


def shared_logger(api: "TrtApi") -> Any:
    """The process-wide ILogger of `api`: TensorRT keeps the first logger it is given, so trtlab passes one only.

    Messages go to every sink opened with capture_log(); with none open, warnings and errors go to Python logging.
    """
    key = f"{api.module_name}:{id(api.module)}"
    with _SINKS_LOCK:
        if key in _LOGGERS:
            return _LOGGERS[key]

        class TrtLogger(api.module.ILogger):
            """Feeds TensorRT's log (verbose included, TensorRT FAQ 13) to the session log with its severity."""

            def __init__(self) -> None:
                api.module.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                sev = api.severity_name(severity)
                with _SINKS_LOCK:
                    sinks = list(_SINKS)
                    if sev == "error":
                        _ERRORS[0] += 1
                        _RECENT.append((_ERRORS[0], msg))
                for sink in sinks:
                    sink.write(sev, msg)
                if not sinks and sev in ("warning", "error"):
                    _FALLBACK.log(logging.ERROR if sev == "error" else logging.WARNING, "%s", msg)

        _LOGGERS[key] = TrtLogger()
        return _LOGGERS[key]


def error_mark() -> int:
    """A mark to pass to errors_since(): how many errors TensorRT has logged so far (cheap: no lock)."""
    return _ERRORS[0]


def errors_since(mark: int) -> list[str]:
    """TensorRT's error messages logged after `mark` (the last 32 at most; other threads' errors included)."""
    with _SINKS_LOCK:
        return [m for k, m in _RECENT if k > mark]


@contextlib.contextmanager
def capture_log(reporter: "Reporter | None" = None, source: str = "tensorrt") -> Iterator[LogSink]:
    """Collect TensorRT's messages while the block runs (concurrent operations each see all of them)."""
    sink = LogSink(reporter, source)
    with _SINKS_LOCK:
        _SINKS.append(sink)
    try:
        yield sink
    finally:
        with _SINKS_LOCK:
            _SINKS.remove(sink)


_FIGURES = {
    "engine_generation_s": r"Engine generation completed in ([0-9.eE+-]+) seconds",
    "peak_cpu_mib": r"Peak memory usage of TRT CPU/GPU memory allocators: CPU (\d+) MiB",
    "peak_gpu_mib": r"Peak memory usage of TRT CPU/GPU memory allocators: CPU \d+ MiB, GPU (\d+) MiB",
    "activation_bytes": r"Total Activation Memory: (\d+) bytes",
    "weights_bytes": r"Total Weights Memory: (\d+) bytes",
    "scratch_bytes": r"Max Scratch Memory: (\d+) bytes",
    "host_persistent_bytes": r"Total Host Persistent Memory: (\d+) bytes",
    "device_persistent_bytes": r"Total Device Persistent Memory: (\d+) bytes",
}


def build_figures(log_text: str) -> dict[str, float]:
    """Build time and memory figures that TensorRT prints while building (last occurrence of each)."""
    out: dict[str, float] = {}
    for key, pattern in _FIGURES.items():
        found = re.findall(pattern, log_text)
        if found:
            out[key] = float(found[-1]) if "." in found[-1] or "e" in found[-1].lower() else int(found[-1])
    return out


def make_progress_monitor(api: "TrtApi", reporter: "Reporter | None") -> Any:
    """An IProgressMonitor that reports phases/steps as progress and returns False once Cancel is pressed."""

    class TrtProgress(api.module.IProgressMonitor):
        """Phase tree -> one fraction for the progress bar; step_complete returns False to cancel the build."""

        def __init__(self) -> None:
            api.module.IProgressMonitor.__init__(self)
            self.phases: dict[str, list[int]] = {}  # name -> [done, total]
            self.parents: dict[str, str | None] = {}
            self.cancelled = False
            self.steps = 0
            self._lock = threading.Lock()

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self._lock:
                self.phases[phase_name] = [0, max(int(num_steps), 1)]
                self.parents[phase_name] = parent_phase

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self._lock:
                self.steps += 1
                if phase_name in self.phases:
                    self.phases[phase_name][0] = int(step) + 1
                top = [p for p, parent in self.parents.items() if parent is None]
                done, total = self.phases.get(top[0], [0, 1]) if top else (0, 1)
            if reporter is None:
                return not self.cancelled
            try:
                # exceptions must not cross into TensorRT: turn Cancel into a False return
                reporter.update(done, total, phase_name)
            except CancelledError:
                self.cancelled = True
            return not self.cancelled

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                self.phases.pop(phase_name, None)
                self.parents.pop(phase_name, None)

    return TrtProgress()
