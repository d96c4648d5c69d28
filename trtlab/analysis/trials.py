"""TrialStore: a search's settings and its finished trials in the workspace, one JSON line per trial, so a
search that stops (cancel, crash, budget) loses nothing and a resumed one skips what it already measured."""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..workspace import Workspace


def settings_id(kind: str, settings: Mapping[str, Any]) -> str:
    """'<kind>-' and 12 hex digits of the canonical JSON of `settings` (same settings, same id)."""
    from ..workspace import strict
    text = json.dumps(strict(dict(settings)), sort_keys=True)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


class TrialStore:
    """`<workspace>/<folder>/<id>/`: settings.json and trials.jsonl (appended and fsynced as each trial ends)."""

    def __init__(self, workspace: "Workspace", folder: str, kind: str, settings: Mapping[str, Any]) -> None:
        self.workspace = workspace
        self.settings = dict(settings)
        self.id = settings_id(kind, self.settings)
        self.folder = workspace.path / folder / self.id
        self.unsaved = 0  # trials that could not be stored

    @property
    def trials_path(self) -> Path:
        """The JSONL file of finished trials."""
        return self.folder / "trials.jsonl"

    def start(self, resume: bool) -> list[dict[str, Any]]:
        """Write settings.json and return the trials stored before (resume) or none; without resume, earlier
        trials are moved aside (kept, never deleted) so this run's file holds this run only."""
        stored = self.load() if resume else []
        if not resume and self.trials_path.exists():
            self.workspace.rename(self.trials_path,
                                  self.folder / f"trials-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns()}.jsonl")
        self.workspace.write_json(self.folder / "settings.json", self.settings)
        return stored

    def load(self) -> list[dict[str, Any]]:
        """Stored trial records in order. A torn last line (a crash while writing) is dropped quietly; any other
        line that is not a JSON object is skipped with a warning naming the file."""
        from ..workspace import read_lines
        try:
            lines = read_lines(self.trials_path, "trials")
        except OSError as exc:
            raise ConfigError(f"cannot read stored trials {self.trials_path} ({exc}): run without resume") from None
        out = []
        for n, rec in lines:
            if isinstance(rec, dict):
                out.append(rec)
            else:
                warnings.warn(f"skipping damaged line {n} of {self.trials_path}", stacklevel=2)
        return out

    def append(self, record: Mapping[str, Any]) -> None:
        """Store one finished trial durably, as strict JSON (NaN and infinities as null). A trial that cannot be
        stored (a full disk, a link planted in the workspace) is kept in memory: the search goes on, warned once."""
        from ..errors import WorkspaceError
        from ..workspace import dumps
        try:
            self.workspace.append_line(self.trials_path, dumps(dict(record), indent=None))
        except (OSError, WorkspaceError) as exc:
            if not self.unsaved:
                warnings.warn(f"trials cannot be stored in {self.trials_path} ({exc}); this search keeps them in "
                              f"memory only and cannot be resumed", stacklevel=2)
            self.unsaved += 1
