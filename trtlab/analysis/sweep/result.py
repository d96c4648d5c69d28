"""A finished (or partial) sweep: its points as a table, the best point, the knees, a plot."""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ...errors import ConfigError
from ..knee import KNEE_FRACTION, Knee, find_knee, knee_sentence
from .spec import SweepSpec, describe_point, point_key
from .store import SweepStore, latest_records


@dataclass
class SweepResult:
    """The points of a sweep (one record each), with tables, the best point, knees and a plot."""

    records: list[dict[str, Any]]
    spec: SweepSpec
    path: Path | None = None
    ran: int = 0
    stopped: str | None = None
    _frame: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        """The sweep id (folder name in the workspace)."""
        return self.spec.id

    @property
    def complete(self) -> bool:
        """True when every point of the spec has a successful record."""
        ok = {point_key(r) for r in self.records if r.get("status") == "ok"}
        return all(point_key(p) in ok for p in self.spec.points())

    @property
    def missing(self) -> list[dict[str, Any]]:
        """Points of the spec without a record (what resume runs; failed points only with retry_failed=True)."""
        have = {point_key(r) for r in self.records}
        return [p for p in self.spec.points() if point_key(p) not in have]

    @property
    def device_types(self) -> list[str]:
        """The device types (GPU name, or 'CPU: <model>') the successful points ran on, in order of first use."""
        return list(dict.fromkeys(r["device_type"] for r in self.records
                                  if r.get("status") == "ok" and r.get("device_type")))

    def mixed_devices_note(self) -> str | None:
        """A sentence when the points ran on more than one type of device (their timings are not comparable
        as one machine's), else None."""
        types = self.device_types
        if len(types) < 2:
            return None
        return (f"points ran on {len(types)} device types ({'; '.join(types)}): compare within one "
                f"(to_frame()['device_type']) before comparing across them")

    @property
    def option_names(self) -> list[str]:
        """Names of the swept backend options (one column each in to_frame())."""
        return [n for n, _ in self.spec.options]

    def to_frame(self, errors: bool = True) -> pd.DataFrame:
        """One row per point: the axes, throughput, latency percentiles, utilization, status."""
        rows = []
        for r in self.records:
            if not errors and r.get("status") != "ok":
                continue
            row = {k: v for k, v in r.items() if k != "options"}
            for n in self.option_names:
                v = (r.get("options") or {}).get(n)
                row[n] = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
            rows.append(row)
        front = ["precision", "batch", "concurrency", *self.option_names, "status", "throughput_ips",
                 "samples_per_s", "latency_median_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
                 "latency_mean_ms", "latency_min_ms", "latency_max_ms", "util_mean_pct", "util_peak_pct",
                 "util_samples", "util_source", "iterations", "wall_s", "build_s", "device", "engine", "error"]
        f = pd.DataFrame(rows)
        for c in front:
            if c not in f:
                f[c] = np.nan if c not in ("status", "error", "device", "engine", "util_source") else None
        rest = [c for c in f.columns if c not in front]
        f = f[front + rest]
        f.insert(3 + len(self.option_names), "curve", [self._curve_label(r) for r in f.to_dict("records")])
        return f.reset_index(drop=True)

    def _curve_label(self, row: Mapping[str, Any]) -> str:
        parts = [str(row["precision"])]
        if len(self.spec.concurrency) > 1 or int(row["concurrency"]) > 1:
            parts.append(f"x{int(row['concurrency'])}")
        parts += [f"{n}={row[n]}" for n in self.option_names if len(dict(self.spec.options)[n]) > 1]
        return " ".join(parts)

    def best(self, objective: str = "throughput", latency_budget_ms: float | None = None,
             percentile: str = "p99") -> pd.Series:
        """The best point: max samples/s (objective "throughput") or min median latency ("latency"),
        among points whose `percentile` latency is within `latency_budget_ms` when given."""
        if objective not in ("throughput", "latency"):
            raise ConfigError(f"objective must be 'throughput' or 'latency', got {objective!r}")
        note = self.mixed_devices_note()
        if note:
            warnings.warn(f"sweep {self.id}: best() over {note}", stacklevel=2)
        f = self.to_frame(errors=False)
        if f.empty:
            raise ConfigError(f"sweep {self.id} has no successful points: see to_frame()['error']")
        col = f"latency_{percentile}_ms" if percentile != "median" else "latency_median_ms"
        if col not in f:
            raise ConfigError(f"unknown latency percentile {percentile!r}: use median, p90, p95 or p99")
        if latency_budget_ms is not None:
            within = f[f[col] <= latency_budget_ms]
            if within.empty:
                raise ConfigError(f"no sweep point has {percentile} latency within {latency_budget_ms} ms (the "
                                  f"fastest has {f[col].min():.3f} ms): raise the budget or sweep smaller batches")
            f = within
        i = f["samples_per_s"].idxmax() if objective == "throughput" else f["latency_median_ms"].idxmin()
        return f.loc[i]

    def knees(self, fraction: float = KNEE_FRACTION) -> pd.DataFrame:
        """One row per curve (precision, concurrency, options): the knee batch, its throughput, the best,
        whether the device saturated, utilization at the knee, and the sentence."""
        f = self.to_frame(errors=False)
        rows = []
        keys = ["precision", "concurrency", *self.option_names]
        if f.empty:
            return pd.DataFrame(columns=[*keys, "curve", "knee_batch", "sentence"])
        for _, part in f.groupby(keys, sort=False, dropna=False):
            k = find_knee(part["batch"], part["samples_per_s"], fraction)
            at = part[part["batch"] == k.batch]
            util = float(at["util_mean_pct"].iloc[0]) if len(at) else math.nan
            src = at["util_source"].iloc[0] if len(at) else None
            label = part["curve"].iloc[0]
            rows.append({**{c: part[c].iloc[0] for c in keys}, "curve": label, "knee_batch": k.batch,
                         "knee_samples_per_s": k.throughput, "best_batch": k.best_batch,
                         "best_samples_per_s": k.best_throughput, "max_batch": k.max_batch, "saturated": k.saturated,
                         "last_gain": k.last_gain, "knee_util_mean_pct": util,
                         "sentence": knee_sentence(k, label, util, src)})
        return pd.DataFrame(rows)

    def knee(self, precision: str | None = None, concurrency: int | None = None) -> Knee:
        """The knee of one curve (the first curve when there is only one)."""
        f = self.to_frame(errors=False)
        if precision is not None:
            f = f[f["precision"] == precision]
        if concurrency is not None:
            f = f[f["concurrency"] == concurrency]
        curves = f["curve"].unique()
        if len(curves) != 1:
            raise ConfigError(f"{len(curves)} curves match ({list(curves)}): pass precision= and concurrency= "
                              f"(and see knees() for every curve)")
        return find_knee(f["batch"], f["samples_per_s"])

    def precision_notes(self) -> list[str]:
        """One sentence per precision whose engines do not mostly compute in it (measured at build): their timing
        is not that precision's speed."""
        notes = []
        for prec in dict.fromkeys(r["precision"] for r in self.records if r.get("status") == "ok"):
            mixes = [r for r in self.records if r.get("precision") == prec and r.get("named_precision_share") is not None]
            if mixes and min(r["named_precision_share"] for r in mixes) < 0.5:
                notes.append(f"{prec} timings are not {prec} speed: {mixes[0]['effective_precision']}")
        return notes

    def describe(self) -> str:
        """The result in words: one sentence per curve, then what is missing."""
        lines = list(self.knees()["sentence"]) if self.records else []
        errs = [r for r in self.records if r.get("status") != "ok"]
        if errs:
            lines.append(f"{len(errs)} point(s) failed, e.g. {describe_point(errs[0])}: {errs[0].get('error')} "
                         f"(resume skips failed points; retry_failed=True runs them again)")
        lines += self.precision_notes()
        if self.mixed_devices_note():
            lines.append(self.mixed_devices_note())
        notrun = len(self.missing)
        if notrun > 0:
            lines.append(f"{notrun} of {len(self.spec.points())} points not run yet"
                         + (f" ({self.stopped})" if self.stopped else "") + ": call sweep again with resume=True")
        return "\n".join(lines) if lines else "empty sweep"

    def plot(self, y: str = "samples_per_s", latency: str | None = "latency_p99_ms"):
        """Throughput and latency against batch, one line per curve, the knee marked (plotly Figure)."""
        from ...plots import throughput_vs_batch
        f = self.to_frame(errors=False)
        return throughput_vs_batch(f, x="batch", y=y, color="curve", latency=latency,
                                   title=f"Sweep {self.id}: throughput vs batch (knee = {KNEE_FRACTION:.0%} of best)")

    def to_markdown(self, columns: Sequence[str] | None = None) -> str:
        """A compact markdown table of the points (for reports)."""
        cols = list(columns or ["precision", "batch", "concurrency", *self.option_names, "samples_per_s",
                                "latency_median_ms", "latency_p99_ms", "util_mean_pct", "util_peak_pct", "status"])
        f = self.to_frame()[cols]
        return markdown_table(f)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (stored as the workspace result "sweep")."""
        return {"kind": "sweep", "sweep_id": self.id, "spec": self.spec.to_dict(), "points": len(self.records),
                "complete": self.complete, "stopped": self.stopped, "ran": self.ran, "describe": self.describe(),
                "path": str(self.path) if self.path else None}

    def __repr__(self) -> str:
        return (f"<SweepResult {self.id}: {len(self.records)}/{len(self.spec.points())} points"
                f"{'' if self.complete else ' (incomplete)'}>")

    def _repr_html_(self) -> str:
        from ...markup import esc
        return (f"<b>Sweep</b> {esc(self.id)}<pre>{esc(self.describe())}</pre>"
                + self.to_frame(errors=True).head(200).to_html(index=False, float_format=lambda v: f"{v:.4g}"))


def load_sweep(folder: str | Path) -> SweepResult:
    """Read a sweep back from its folder (finished points only; missing shows what resume would run)."""
    store = SweepStore(folder)
    spec = store.spec()
    return SweepResult(latest_records(store.load(), spec.points()), spec, store.folder)


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table without needing `tabulate`."""
    from ...markup import markdown_cell

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.4g}"
        return "" if v is None else markdown_cell(v)
    head = "| " + " | ".join(map(markdown_cell, frame.columns)) + " |"
    sep = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, sep, *body])
