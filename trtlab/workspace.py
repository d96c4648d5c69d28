"""The on-disk workspace: engines and results of one model, written as they are produced, readable without trtlab."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .config import BuildConfig
from .errors import WorkspaceError

DEFAULT_ROOT = Path(".trtlab")


def _atomic_write(path: Path, data: bytes | str) -> None:
    """Write via a temp file and rename, so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, payload: Any) -> None:
    """Atomically write JSON (NaN written as null-safe strings by default=str)."""
    _atomic_write(path, json.dumps(payload, indent=1, default=_default))


def _default(value: Any) -> Any:
    import numpy as np
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


class Workspace:
    """Folder `<root>/<model-hash>/` with `engines/<config-key>/` and `results/`."""

    def __init__(self, root: str | Path | None, model_hash: str, model_name: str = "model") -> None:
        self.root = Path(root) if root is not None else DEFAULT_ROOT
        self.path = self.root / model_hash
        try:
            (self.path / "engines").mkdir(parents=True, exist_ok=True)
            (self.path / "results").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(f"cannot create workspace folder {self.path} ({exc}): pass workspace= a writable "
                                 f"folder") from None
        info = self.path / "model.json"
        if not info.exists():
            write_json(info, {"name": model_name, "hash": model_hash, "created": time.time()})
        self._counter = 0

    # ---- engines ---------------------------------------------------------------------------
    def engine_dir(self, config: BuildConfig) -> Path:
        """Folder of the engine built from `config`."""
        return self.path / "engines" / config.key

    def save_engine(self, config: BuildConfig, metadata: dict[str, Any], files: dict[str, bytes]) -> Path:
        """Store an engine's files (variant model, plan, ...) and config/metadata JSON, all or nothing."""
        final = self.engine_dir(config)
        staging = Path(tempfile.mkdtemp(dir=self.path / "engines", prefix=".staging-"))
        try:
            for name, data in files.items():
                (staging / name).write_bytes(data)
            write_json(staging / "config.json", config.to_dict())
            write_json(staging / "metadata.json", metadata)
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return final

    def find_engine(self, config: BuildConfig) -> Path | None:
        """The stored engine folder for `config`, if complete."""
        d = self.engine_dir(config)
        return d if (d / "metadata.json").exists() and (d / "config.json").exists() else None

    def list_engines(self) -> list[dict[str, Any]]:
        """Every stored engine: key, config, metadata."""
        out = []
        for d in sorted((self.path / "engines").iterdir()):
            if d.name.startswith(".") or not (d / "metadata.json").exists():
                continue
            try:
                out.append({"key": d.name, "config": json.loads((d / "config.json").read_text()),
                            "metadata": json.loads((d / "metadata.json").read_text()), "path": str(d)})
            except (OSError, json.JSONDecodeError):
                continue  # a damaged record is skipped, not fatal
        return out

    # ---- results ---------------------------------------------------------------------------
    def save_result(self, kind: str, payload: dict[str, Any], frame: Any = None) -> Path:
        """Write a result as JSON (and its table as CSV beside it) the moment it exists."""
        self._counter += 1
        stamp = time.strftime("%Y%m%d-%H%M%S")
        rid = f"{stamp}-{os.getpid()}-{self._counter:03d}-{kind}"
        path = self.path / "results" / f"{rid}.json"
        write_json(path, {"id": rid, "kind": kind, "created": time.time(), **payload})
        if frame is not None:
            _atomic_write(path.with_suffix(".csv"), frame.to_csv(index=False))
        return path

    def results(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Stored results (newest last), each the parsed JSON."""
        out = []
        for p in sorted((self.path / "results").glob("*.json")):
            try:
                rec = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if kind is None or rec.get("kind") == kind:
                rec["path"] = str(p)
                out.append(rec)
        return out

    def __repr__(self) -> str:
        return f"<Workspace {self.path}>"
