"""A sweep's folder: spec.json and points.jsonl, appended one finished point at a time."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from ...errors import ConfigError
from .spec import POINT_KEYS, SweepSpec, point_key


class SweepStore:
    """A sweep's folder: spec.json and points.jsonl (one JSON line per finished point, appended and fsynced)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @property
    def points_path(self) -> Path:
        """The JSONL file of finished points."""
        return self.folder / "points.jsonl"

    def start(self, spec: SweepSpec, resume: bool) -> None:
        """Write spec.json; without resume, move earlier points aside (kept, never deleted)."""
        from ...workspace import write_json
        self.folder.mkdir(parents=True, exist_ok=True)
        if not resume and self.points_path.exists():
            self.points_path.rename(self.folder / f"points-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.jsonl")
        write_json(self.folder / "spec.json", spec.to_dict())

    def spec(self) -> SweepSpec:
        """The stored spec."""
        try:
            return SweepSpec.from_dict(json.loads((self.folder / "spec.json").read_text()))
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise ConfigError(f"no readable sweep spec in {self.folder} ({exc}): start the sweep again") from None

    def load(self) -> list[dict[str, Any]]:
        """Finished point records in order; a torn last line (crash while writing) is ignored."""
        if not self.points_path.exists():
            return []
        out = []
        for line in self.points_path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and all(k in rec for k in POINT_KEYS):
                out.append(rec)
        return out

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one point record durably."""
        from ...workspace import _default
        line = json.dumps(record, default=_default, allow_nan=True)
        torn = False
        if self.points_path.exists() and self.points_path.stat().st_size:
            with open(self.points_path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                torn = fh.read(1) != b"\n"  # a crash mid-line: start a fresh line so this one stays whole
        with open(self.points_path, "a", encoding="utf-8") as fh:
            fh.write(("\n" if torn else "") + line + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def latest_records(records: Sequence[dict[str, Any]], points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per point of the spec (the last written, preferring ok), in the spec's order."""
    by_key: dict[str, dict[str, Any]] = {}
    for r in records:
        k = point_key(r)
        if r.get("status") == "ok" or by_key.get(k, {}).get("status") != "ok":
            by_key[k] = r
    return [by_key[point_key(p)] for p in points if point_key(p) in by_key]
