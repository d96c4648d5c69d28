"""The engine cache of a session: engines by BuildConfig in memory, then in the workspace on disk, then built."""
from __future__ import annotations

import hashlib
import json
import threading
import weakref
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .backends.base import Backend, Engine
from .config import BuildConfig
from .errors import CancelledError, ConfigError, PlanError, WorkspaceError
from .events import Reporter
from .model import Model
from .precision import VARIANT_OPTIONS, make_variant
from .precision.variant import Variant
from .workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd


DEFAULT_MAX_ENGINES = 8


class DamagedCacheWarning(UserWarning):
    """A cached engine entry in the workspace was damaged, incomplete or unverifiable and is being rebuilt."""


class _Flight:
    """One build of one config under way; callers asking for the same config wait for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.engine: Engine | None = None
        self.error: BaseException | None = None


class EngineCache:
    """Engines of one model keyed by BuildConfig, the variants they were built from and the calibration tables
    their configs name (by key).

    - Each config is built by the backend it names (`backends(config.backend)`), not by whichever backend the
      session uses at the moment.
    - Single-flight: concurrent requests for one config share one build (the others wait for it); different
      configs build concurrently.
    - Bounded: the cache holds at most `max_engines` engines, least recently used first out. An evicted engine
      is dropped from the cache, not closed: an Engine the caller (a notebook variable, the dashboard) still
      holds keeps working and is handed out again for its config; one nobody holds is freed by Python, and
      asking for its config again reloads it from the workspace, which costs no build. Sweeps and tune close
      what they built with `release`.
    - Verified: every file of a stored entry has its sha256 in the entry's metadata; an entry whose files are
      missing, changed or unrecorded is rebuilt with a DamagedCacheWarning naming its folder."""

    def __init__(self, model: Model, workspace: Workspace, backends: Callable[[str], Backend],
                 max_engines: int = DEFAULT_MAX_ENGINES) -> None:
        if not isinstance(max_engines, int) or isinstance(max_engines, bool) or max_engines < 1:
            raise ConfigError(f"max_engines must be a whole number >= 1, got {max_engines!r}")
        self.model = model
        self.workspace = workspace
        self.backends = backends
        self.max_engines = max_engines
        self.calibrations: dict[str, Any] = {}
        self.engines: OrderedDict[BuildConfig, Engine] = OrderedDict()
        self._evicted: "weakref.WeakValueDictionary[BuildConfig, Engine]" = weakref.WeakValueDictionary()
        self._variants: dict[tuple, Variant] = {}
        self._variant_locks: dict[tuple, threading.Lock] = {}
        self._flights: dict[BuildConfig, _Flight] = {}
        self._lock = threading.Lock()

    # ---- calibration tables ------------------------------------------------------------------
    def register_calibration(self, calibration: Any) -> str | None:
        """The key of a calibration (a CalibrationTable, a cache file, or a key already registered)."""
        if calibration is None:
            return None
        if isinstance(calibration, (str, Path)) and calibration in self.calibrations:
            return str(calibration)
        if isinstance(calibration, (str, Path)):
            from .precision.calibration import CalibrationTable
            calibration = CalibrationTable.load(calibration)
        key = hashlib.sha256(calibration.to_text().encode()).hexdigest()[:16]
        self.calibrations[key] = calibration
        return key

    def calibration(self, config: BuildConfig) -> Any:
        """The calibration table a config names, or None."""
        return self.calibrations.get(config.calibration) if config.calibration else None

    # ---- variants ----------------------------------------------------------------------------
    def make_variant(self, config: BuildConfig) -> Variant:
        """A fresh variant for `config` (not cached)."""
        return make_variant(self.model, config, self.calibration(config))

    def variant(self, config: BuildConfig, reporter: Reporter) -> Variant:
        """The variant for `config`, shared by configs that differ only in what does not change the model (batch,
        backend options), so sweeps over those reuse it."""
        vkey = (config.precision, config.fp32_layers, config.outputs, config.calibration,
                tuple(config.option(k) for k in VARIANT_OPTIONS))
        with self._lock:
            lock = self._variant_locks.setdefault(vkey, threading.Lock())
        with lock:
            variant = self._variants.get(vkey)
            if variant is None:
                reporter.update(0, None, "preparing model variant")
                variant = self.make_variant(config)
                self._variants[vkey] = variant
                for note in variant.notes:
                    reporter.write("info", note, "precision")
        return variant

    # ---- engines -----------------------------------------------------------------------------
    def get(self, config: BuildConfig, reporter: Reporter) -> Engine:
        """The engine for `config`: memory cache, then the workspace, then a real build (stored at once)."""
        while True:
            with self._lock:
                cached = self.engines.get(config)
                if cached is None or cached._closed:
                    cached = self._evicted.pop(config, None)  # evicted but still held by someone
                    if cached is not None and not cached._closed:
                        self._insert_locked(config, cached)
                if cached is not None and not cached._closed:
                    self.engines.move_to_end(config)
                    cached.metadata["cache"] = "memory"
                    reporter.write("info", f"cache hit (memory): {config.describe()}", "build")
                    return cached
                flight = self._flights.get(config)
                if flight is None:
                    flight = self._flights[config] = _Flight()
                    break
            reporter.write("info", f"waiting for the build of {config.describe()} already under way", "build")
            while not flight.done.wait(0.05):
                reporter.cancel.check(reporter.task)
            if flight.error is not None and not isinstance(flight.error, CancelledError):
                raise flight.error  # the shared build failed: every waiter hears why
            # built (now in the cache, unless already evicted) or the builder was cancelled: ask again
        try:
            engine = self._produce(config, reporter)
            flight.engine = engine
            with self._lock:
                evicted = self._insert_locked(config, engine)
            for old in evicted:
                reporter.write("info", f"engine cache full ({self.max_engines}): dropped {old.config.describe()} "
                                       f"(freed once nothing holds it; building it again reloads it from the "
                                       f"workspace)", "build")
            return engine
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flights.pop(config, None)
            flight.done.set()

    def _insert_locked(self, config: BuildConfig, engine: Engine) -> list[Engine]:
        """Add (the caller holds the lock); the least recently used engines beyond capacity leave the cache and are
        only weakly remembered, so they live exactly as long as someone else holds them."""
        for c in [c for c, e in self.engines.items() if e._closed]:
            del self.engines[c]
        self.engines[config] = engine
        self.engines.move_to_end(config)
        evicted = []
        while len(self.engines) > self.max_engines:
            old_config, old = self.engines.popitem(last=False)
            self._evicted[old_config] = old
            evicted.append(old)
        return evicted

    def release(self, engine: Engine) -> None:
        """Drop `engine` from the cache and close it (sweeps and tune, once done with an engine)."""
        with self._lock:
            if self.engines.get(engine.config) is engine:
                del self.engines[engine.config]
            if self._evicted.get(engine.config) is engine:
                del self._evicted[engine.config]
        engine.close()

    def _produce(self, config: BuildConfig, reporter: Reporter) -> Engine:
        backend = self.backends(config.backend)
        backend.check_config(config)
        t0 = time.perf_counter()
        record = self.workspace.find_engine(config)
        folder = self.workspace.engine_dir(config)
        if record is not None:
            engine = self._load(backend, config, record, reporter)
            if engine is not None:
                return engine
        elif folder.exists():
            self._damaged(folder, "it lacks metadata.json or config.json", reporter)
        variant = self.variant(config, reporter)
        engine = backend.build(self.model, variant, config, reporter)
        engine.input_shapes = self.input_shapes(config)
        backend.report_precision(engine, reporter)
        engine.metadata.update({"cache": "built", "total_build_seconds": time.perf_counter() - t0,
                                "model": self.model.name, "model_hash": self.model.hash})
        files = {"model.onnx": variant.model.SerializeToString(), **engine.workspace_files()}
        try:
            self.workspace.save_engine(config, {**engine.metadata, "marked_outputs": variant.marked_outputs,
                                                "notes": variant.notes, "conversion": variant.conversion,
                                                "sha256": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}},
                                       files)
        except (OSError, WorkspaceError) as exc:
            # the build itself succeeded: keep the engine (in memory only) rather than lose minutes of work
            message = (f"engine {config.describe()} is built but could not be stored in {self.workspace.path} "
                       f"({exc}); it is kept in memory only and a new session will build it again")
            engine.metadata["save_error"] = message
            reporter.write("warning", message, "build")
            warnings.warn(message, stacklevel=2)
        return engine

    def _damaged(self, folder: Path, why: str, reporter: Reporter) -> None:
        message = f"cached engine entry {folder} is damaged ({why}); building it again"
        reporter.write("warning", message, "build")
        warnings.warn(message, DamagedCacheWarning, stacklevel=2)
        self.workspace.discard_engine(folder)

    def _load(self, backend: Backend, config: BuildConfig, record: Path, reporter: Reporter) -> Engine | None:
        import onnx
        try:
            meta = json.loads((record / "metadata.json").read_text())
            model_bytes = _verified(record, meta)
        except (OSError, ValueError, _Unverified) as exc:
            self._damaged(record, str(exc), reporter)
            return None
        try:
            proto = onnx.load_from_string(model_bytes)
        except Exception as exc:  # protobuf's DecodeError: hashed as stored, so written damaged
            self._damaged(record, f"model.onnx does not parse: {exc}", reporter)
            return None
        variant = Variant(model=proto, precision=config.precision, marked_outputs=meta.get("marked_outputs", []),
                          notes=meta.get("notes", []), conversion=meta.get("conversion") or {})
        try:
            engine = backend.load(self.model, variant, config, record, meta, reporter)
        except PlanError as exc:  # e.g. a library upgrade: rebuild and overwrite instead of failing
            reporter.write("warning", f"cached engine {record.name} cannot be used ({exc}); building again", "build")
            self.workspace.discard_engine(record)
            return None
        engine.input_shapes = self.input_shapes(config)
        backend.report_precision(engine, reporter)
        engine.metadata["cache"] = "disk"
        reporter.write("info", f"cache hit (disk, {record.name}): {config.describe()}", "build")
        return engine

    def input_shapes(self, config: BuildConfig) -> dict[str, tuple[int, ...]]:
        """The input shapes an engine of `config` runs by default (the opt shapes)."""
        shapes = {k: r.opt for k, r in config.shapes}
        return self.model.resolve_input_shapes(batch=config.batch[1] if config.batch else None, shapes=shapes,
                                               dims=dict(config.dims))

    def loaded(self) -> set[BuildConfig]:
        """Configs whose engines are loaded (open) now."""
        return {c for c, e in self.engines.items() if not e._closed}

    def table(self) -> "pd.DataFrame":
        """Engines stored in the workspace (this and earlier sessions): key, backend, precision, build time."""
        import pandas as pd
        loaded = {c.key for c in self.loaded()}
        rows = []
        for rec in self.workspace.list_engines():
            c, m = rec["config"], rec["metadata"]
            rows.append({"key": rec["key"], "backend": c.get("backend"), "precision": c.get("precision"),
                         "batch": c.get("batch"), "outputs": len(c.get("outputs") or []),
                         "fp32_layers": len(c.get("fp32_layers") or []), "device": m.get("device"),
                         "build_seconds": m.get("build_seconds"), "size_bytes": m.get("size_bytes"),
                         "loaded": rec["key"] in loaded})
        return pd.DataFrame(rows, columns=["key", "backend", "precision", "batch", "outputs", "fp32_layers",
                                           "device", "build_seconds", "size_bytes", "loaded"])

    def __len__(self) -> int:
        return len(self.engines)


class _Unverified(Exception):
    """A stored entry's files do not match the sha256 recorded for them."""


def _verified(record: Path, meta: Any) -> bytes:
    """Check every file of an entry against the sha256 in its metadata; return model.onnx's bytes."""
    hashes = meta.get("sha256") if isinstance(meta, dict) else None
    if not isinstance(hashes, dict) or "model.onnx" not in hashes:
        raise _Unverified("its metadata records no sha256 of its files")
    model_bytes = b""
    for name, want in hashes.items():
        if not isinstance(name, str) or Path(name).name != name or name in (".", ".."):
            raise _Unverified(f"its metadata names a file outside the entry: {name!r}")
        path = record / name
        if path.is_symlink() or not path.is_file():
            raise _Unverified(f"{name} is missing")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != want:
            raise _Unverified(f"{name} does not match the sha256 recorded when it was stored")
        if name == "model.onnx":
            model_bytes = data
    return model_bytes
