"""A sweep's folder: spec.json and points.jsonl, appended one finished point at a time."""
from __future__ import annotations

import itertools
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from ...errors import ConfigError
from .spec import POINT_KEYS, SweepSpec, point_key


class SweepStore:
    """A sweep's folder: spec.json and points.jsonl (one JSON line per finished point, appended and fsynced).

    Every write goes through the workspace writer, confined to `root` (the workspace root; the folder itself
    when not given): no write follows a symbolic link or leaves the root."""

    def __init__(self, folder: str | Path, root: str | Path | None = None) -> None:
        self.folder = Path(folder)
        self.root = Path(root) if root is not None else self.folder

    @property
    def points_path(self) -> Path:
        """The JSONL file of finished points."""
        return self.folder / "points.jsonl"

    def start(self, spec: SweepSpec, resume: bool) -> None:
        """Write spec.json; without resume, move earlier points aside (kept, never deleted)."""
        from ...workspace import make_dirs, rename, write_json
        make_dirs(self.folder, self.root)
        if not resume and (self.points_path.exists() or self.points_path.is_symlink()):
            rename(self.points_path, self.folder / f"points-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-"
                                                   f"{next(_ASIDE):03d}.jsonl", self.root)
        write_json(self.folder / "spec.json", spec.to_dict(), root=self.root)

    def spec(self) -> SweepSpec:
        """The stored spec."""
        try:
            return SweepSpec.from_dict(json.loads((self.folder / "spec.json").read_bytes().decode("utf-8")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"no readable sweep spec in {self.folder} ({exc}): start the sweep again") from None

    def load(self) -> list[dict[str, Any]]:
        """Finished point records in order; a torn last line (crash while writing) is ignored, any other
        damaged line is skipped with a warning naming the file and line."""
        from ...workspace import read_lines
        out = []
        for n, rec in read_lines(self.points_path, "a file"):
            if not isinstance(rec, dict) or not all(k in rec for k in POINT_KEYS):
                warnings.warn(f"skipping line {n} of {self.points_path}: not a sweep point (a JSON object "
                              f"with {', '.join(POINT_KEYS)})", stacklevel=2)
                continue
            out.append(_nan_for_null(rec))
        return out

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one point record durably (strict JSON: NaN stored as null, read back as NaN)."""
        from ...workspace import append_line, dumps
        append_line(self.points_path, dumps(record, indent=None), root=self.root)


_ASIDE = itertools.count()
_NUMERIC = ("_ms", "_pct", "_mib", "_ips", "_per_s")


def _nan_for_null(rec: dict[str, Any]) -> dict[str, Any]:
    """Strict JSON stores NaN as null: numeric figures read back as NaN, as they were measured."""
    for k, v in rec.items():
        if v is None and (k.endswith(_NUMERIC) or k in ("wall_s", "build_s", "t_start", "t_end")):
            rec[k] = math.nan
    return rec


def latest_records(records: Sequence[dict[str, Any]], points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per point of the spec (the last written, preferring ok), in the spec's order."""
    by_key: dict[str, dict[str, Any]] = {}
    for r in records:
        k = point_key(r)
        if r.get("status") == "ok" or by_key.get(k, {}).get("status") != "ok":
            by_key[k] = r
    return [by_key[point_key(p)] for p in points if point_key(p) in by_key]
