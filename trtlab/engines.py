"""The engine cache of a session: engines by BuildConfig in memory, then in the workspace on disk, then built."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backends.base import Backend, Engine
from .config import BuildConfig
from .errors import PlanError
from .events import Reporter
from .model import Model
from .precision import VARIANT_OPTIONS, make_variant
from .precision.variant import Variant
from .workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd


class EngineCache:
    """Engines of one model keyed by BuildConfig, the variants they were built from and the calibration tables
    their configs name (by key)."""

    def __init__(self, model: Model, workspace: Workspace) -> None:
        self.model = model
        self.workspace = workspace
        self.calibrations: dict[str, Any] = {}
        self.engines: dict[BuildConfig, Engine] = {}
        self._variants: dict[tuple, Variant] = {}

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
        variant = self._variants.get(vkey)
        if variant is None:
            reporter.update(0, None, "preparing model variant")
            variant = self.make_variant(config)
            self._variants[vkey] = variant
            for note in variant.notes:
                reporter.write("info", note, "precision")
        return variant

    # ---- engines -----------------------------------------------------------------------------
    def get(self, backend: Backend, config: BuildConfig, reporter: Reporter) -> Engine:
        """The engine for `config`: memory cache, then disk cache, then a real build (stored in the workspace)."""
        cached = self.engines.get(config)
        if cached is not None and not cached._closed:
            cached.metadata["cache"] = "memory"
            reporter.write("info", f"cache hit (memory): {config.describe()}", "build")
            return cached
        backend.check_config(config)
        t0 = time.perf_counter()
        record = self.workspace.find_engine(config)
        if record is not None:
            engine = self._load(backend, config, record, reporter)
            if engine is not None:
                return engine
        variant = self.variant(config, reporter)
        engine = backend.build(self.model, variant, config, reporter)
        engine.input_shapes = self.input_shapes(config)
        engine.metadata.update({"cache": "built", "total_build_seconds": time.perf_counter() - t0,
                                "model": self.model.name, "model_hash": self.model.hash})
        files = {"model.onnx": variant.model.SerializeToString(), **engine.workspace_files()}
        self.workspace.save_engine(config, {**engine.metadata, "marked_outputs": variant.marked_outputs,
                                            "notes": variant.notes}, files)
        self.engines[config] = engine
        return engine

    def _load(self, backend: Backend, config: BuildConfig, record: Path, reporter: Reporter) -> Engine | None:
        import onnx
        try:
            meta = json.loads((record / "metadata.json").read_text())
            proto = onnx.load(str(record / "model.onnx"))
        except Exception as exc:
            reporter.write("warning", f"ignoring damaged cache entry {record} ({exc}); building again", "build")
            return None
        variant = Variant(model=proto, precision=config.precision, marked_outputs=meta.get("marked_outputs", []),
                          notes=meta.get("notes", []))
        try:
            engine = backend.load(self.model, variant, config, record, meta, reporter)
        except PlanError as exc:  # e.g. a library upgrade: rebuild and overwrite instead of failing
            reporter.write("warning", f"cached engine {record.name} cannot be used ({exc}); building again", "build")
            return None
        engine.input_shapes = self.input_shapes(config)
        engine.metadata["cache"] = "disk"
        reporter.write("info", f"cache hit (disk, {record.name}): {config.describe()}", "build")
        self.engines[config] = engine
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
        loaded = {c.key for c in self.engines}
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
