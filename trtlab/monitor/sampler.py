"""Monitor: a daemon thread sampling NVML (GPU) or psutil (CPU) at a fixed interval, with subscribers for live UIs."""
from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..errors import BackendUnavailableError, ConfigError
from . import fields as F
from .cpu import PsutilSource
from .nvml import NvmlSource
from .summary import samples_to_frame, summarize

if TYPE_CHECKING:
    import pandas as pd

_log = logging.getLogger("trtlab.monitor")
SOURCES = ("auto", "nvml", "psutil")
Callback = Callable[[dict[str, Any]], None]


def _open_source(source: str, device: int) -> NvmlSource | PsutilSource:
    """The sampling source for `source`; "auto" falls back to psutil with a note saying why."""
    if source not in SOURCES:
        raise ConfigError(f"Monitor(source={source!r}) is not one of {', '.join(SOURCES)}")
    if source == "psutil":
        return PsutilSource()
    try:
        return NvmlSource(device)
    except BackendUnavailableError as exc:
        if source == "nvml":
            raise BackendUnavailableError(
                f"{exc}. Monitor(source='nvml') needs an NVIDIA driver and nvidia-ml-py; "
                "use source='auto' or 'psutil' to sample the CPU instead") from exc
        reason = str(exc).removeprefix("NVML unavailable: ")
        return PsutilSource(note=f"NVML unavailable: {reason}; sampling CPU and memory with psutil")


class Monitor:
    """Samples GPU (NVML) or CPU (psutil) utilization every `interval` seconds in a daemon thread.

    `with Monitor(interval=0.1) as m: ...` records while the block runs; `m.to_frame()`, `m.to_csv(path)`,
    `m.window(t0, t1)` and `m.summary(t0, t1)` read the samples; `m.subscribe(cb)` streams them live.
    """

    def __init__(self, interval: float = 0.1, device: int = 0, source: str = "auto",
                 max_samples: int | None = None) -> None:
        if not interval > 0:
            raise ConfigError(f"Monitor(interval={interval!r}) must be a positive number of seconds, e.g. 0.1")
        if max_samples is not None and max_samples < 1:
            raise ConfigError(f"Monitor(max_samples={max_samples!r}) must be at least 1, or None to keep all")
        self.interval = float(interval)
        self.device = device
        self._source = _open_source(source, device)
        self.source: str = self._source.name
        self.note: str | None = self._source.note
        self.gpu_name: str | None = self._source.gpu_name
        self.driver_version: str | None = self._source.driver_version
        self.columns: tuple[str, ...] = self._source.columns
        self._samples: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_samples)
        self._lock = threading.Lock()
        self._subscribers: list[Callback] = []
        self._failed_callbacks: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reading_at: float | None = None
        self._t0 = 0.0
        self._cpu_seconds = 0.0
        self._elapsed_s = 0.0

    # --- lifecycle -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the sampler thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "Monitor":
        """Start a new recording (previous samples are cleared); no-op if already running."""
        if self.running:
            return self
        with self._lock:
            self._samples.clear()
        self._stop.clear()
        self._cpu_seconds = 0.0
        self._source.prime()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name=f"trtlab-monitor-{self.source}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling and join the thread; samples stay readable."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __enter__(self) -> "Monitor":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the sampler thread ----------------------------------------------------------------------
    def _run(self) -> None:
        cpu0 = time.thread_time()
        period = self.interval
        deadline = self._t0 + period
        # Sample on a fixed grid of deadlines so the period does not drift by the sampling cost.
        while not self._stop.wait(max(0.0, deadline - time.perf_counter())):
            now = time.perf_counter()
            self._sample(now)
            deadline += period
            if deadline < now:  # fell behind (suspended process): skip missed ticks instead of bursting
                deadline = now + period
            self._cpu_seconds = time.thread_time() - cpu0
            self._elapsed_s = time.perf_counter() - self._t0
        if not self._samples:  # stopped within the first interval: one sample, so short work is still seen
            self._sample(time.perf_counter())
        self._cpu_seconds = time.thread_time() - cpu0
        self._elapsed_s = time.perf_counter() - self._t0

    def _sample(self, now: float) -> None:
        self._reading_at = now  # window() waits for a sample stamped inside it that is still being read
        try:
            sample = self._source.read()
        except Exception:  # never let one bad read end the recording
            self._reading_at = None
            _log.exception("monitor: reading %s failed; sample skipped", self.source)
            return
        sample[F.TIME_S] = now - self._t0
        sample[F.PERF_COUNTER] = now
        sample[F.TIMESTAMP] = time.time()
        with self._lock:
            self._samples.append(sample)
            subscribers = list(self._subscribers)
        self._reading_at = None
        for callback in subscribers:
            try:
                callback(dict(sample))
            except Exception:
                if id(callback) not in self._failed_callbacks:  # log each broken callback once, not at 10 Hz
                    self._failed_callbacks.add(id(callback))
                    _log.exception("monitor subscriber %r raised; sampling continues", callback)

    # --- subscribers -----------------------------------------------------------------------------
    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call `callback(sample)` from the sampler thread for each new sample; returns an unsubscribe function."""
        with self._lock:
            self._subscribers.append(callback)
        return lambda: self.unsubscribe(callback)

    def unsubscribe(self, callback: Callback) -> None:
        """Stop calling `callback`; unknown callbacks are ignored."""
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    # --- reading the samples ---------------------------------------------------------------------
    @property
    def samples(self) -> list[dict[str, Any]]:
        """A copy of the samples recorded so far, oldest first."""
        with self._lock:
            return list(self._samples)

    @property
    def cpu_seconds(self) -> float:
        """CPU time the sampler thread has used (time.thread_time), subscriber callbacks included."""
        return self._cpu_seconds

    @property
    def overhead(self) -> float:
        """The sampler's CPU use as a fraction of one core over the recording (0.01 = 1%)."""
        return self._cpu_seconds / self._elapsed_s if self._elapsed_s > 0 else 0.0

    def window(self, t0: float, t1: float) -> list[dict[str, Any]]:
        """Samples taken between two time.perf_counter() readings, inclusive (complete: a sample stamped
        before t1 that is still being read is waited for, at most half a second)."""
        give_up = time.perf_counter() + 0.5
        while (self._reading_at is not None and self._reading_at <= t1 and self._thread is not None
               and self._thread.is_alive() and time.perf_counter() < give_up):
            time.sleep(0.0002)
        return [s for s in self.samples if t0 <= s[F.PERF_COUNTER] <= t1]

    def to_frame(self, samples: Iterable[dict[str, Any]] | None = None) -> "pd.DataFrame":
        """The samples as a DataFrame: time_s (seconds since start), perf_counter, timestamp, then the fields."""
        return samples_to_frame(list(self.samples if samples is None else samples), self.columns)

    def summary(self, t0: float | None = None, t1: float | None = None) -> dict[str, Any]:
        """summarize() of the samples between perf_counter readings t0 and t1 (all samples by default)."""
        if t0 is None and t1 is None:
            samples = self.samples
        else:
            samples = self.window(-float("inf") if t0 is None else t0, float("inf") if t1 is None else t1)
        return summarize(self.to_frame(samples))

    def to_csv(self, path: str | os.PathLike[str], units: bool = False, event_names: bool = False) -> str:
        """Write the samples as `nvidia-smi --query-gpu=... --format=csv,nounits` would; returns the path.

        Headers are the TensorRT FAQ's query names with units ("power.draw [W]"), unsupported fields "[N/A]";
        units=True also puts units in the cells ("71.02 W", like --format=csv); event_names=True uses the header
        names nvidia-smi R535+ prints for the same queries (clocks_event_reasons.*, gom.current).
        """
        from ..workspace import atomic_write
        atomic_write(path, self.csv_text(units, event_names))
        return os.fspath(path)

    def csv_text(self, units: bool = False, event_names: bool = False) -> str:
        """The text `to_csv` writes (for writing it elsewhere, e.g. through a workspace)."""
        return "".join(line + "\n" for line in F.csv_lines(self.columns, self.samples, units, event_names))

    def __repr__(self) -> str:
        what = self.gpu_name or ("GPU %d" % self.device if self.source == "nvml" else "CPU")
        state = "running" if self.running else "stopped"
        return f"<Monitor {self.source} {what} every {self.interval:g}s, {len(self._samples)} samples, {state}>"
