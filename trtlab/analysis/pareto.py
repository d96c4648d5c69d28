"""The accuracy-versus-speed Pareto front: which (precision, fp32 pins, batch) points no other point beats on both
the output error (or a task metric) and the speed. Pure functions over DataFrames; the session part measuring
the points is trtlab.lab.pareto."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError

SPEED = {"latency": ("latency_median_ms", "min", "ms"), "throughput": ("samples_per_s", "max", "samples/s")}


def non_dominated(values: Any, goals: Sequence[str]) -> np.ndarray:
    """Mask of the rows of `values` (n points x k objectives) that no other row dominates: at least as good in
    every objective and better in one ("min" or "max" per column in `goals`). NaN rows are never on the front.
    A sort then a sweep over the kept points (each point is checked against the front so far only)."""
    v = np.asarray(values, dtype=float).reshape(len(values), -1)
    if v.shape[1] != len(goals) or any(g not in ("min", "max") for g in goals):
        raise ConfigError(f"goals must be 'min' or 'max' for each of the {v.shape[1]} objectives, got {goals}")
    v = v * np.array([1.0 if g == "min" else -1.0 for g in goals])  # all minimised
    mask = np.zeros(len(v), dtype=bool)
    ok = ~np.isnan(v).any(axis=1)
    order = [i for i in np.lexsort(v.T[::-1]) if ok[i]]  # by the first objective, ties by the next
    front: list[int] = []
    for i in order:
        if not any(np.all(v[j] <= v[i]) and np.any(v[j] < v[i]) for j in front):
            front.append(i)
            mask[i] = True
    return mask


@dataclass
class ParetoResult:
    """Every measured point (one row each, `pareto` flags the non-dominated ones) and how they were scored."""

    frame: pd.DataFrame
    accuracy: str  # the accuracy column's meaning: the compare metric name, or the evaluate metric
    accuracy_goal: str  # "min" (an error) or "max" (a task metric)
    objective: str  # "latency" or "throughput"
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, rows: list[dict[str, Any]], accuracy: str, accuracy_goal: str, objective: str,
           notes: list[str] | None = None) -> "ParetoResult":
        frame = pd.DataFrame(rows)
        col, goal, _ = SPEED[objective]
        frame["pareto"] = non_dominated(frame[["accuracy", col]].to_numpy(float), [accuracy_goal, goal]) \
            if len(frame) else []
        return cls(frame, accuracy, accuracy_goal, objective, list(notes or []))

    @property
    def front(self) -> pd.DataFrame:
        """The non-dominated points, fastest first."""
        col, goal, _ = SPEED[self.objective]
        return self.frame[self.frame["pareto"]].sort_values(col, ascending=goal == "min")

    def to_frame(self) -> pd.DataFrame:
        """All points, with the `pareto` flag."""
        return self.frame

    def figure(self) -> Any:
        """Accuracy against speed, the front joined, the fp32 reference marked (trtlab.plots.pareto_front)."""
        from ..plots import pareto_front
        return pareto_front(self.frame, self.accuracy, self.objective)

    def describe(self) -> str:
        col, _, unit = SPEED[self.objective]
        f = self.front
        pts = "; ".join(f"{r.label} {r.accuracy:.3g} at {getattr(r, col):,.4g} {unit}" for r in f.itertuples())
        return f"{len(f)} of {len(self.frame)} points on the {self.accuracy} / {self.objective} front: {pts}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "pareto", "accuracy": self.accuracy, "accuracy_goal": self.accuracy_goal,
                "objective": self.objective, "points": self.frame.to_dict("records"), "notes": self.notes,
                "describe": self.describe()}

    def __repr__(self) -> str:
        return f"<ParetoResult {self.describe()}>"

    def _repr_html_(self) -> str:
        from ..markup import esc
        return f"<b>Pareto front</b> <p>{esc(self.describe())}</p>" + self.frame.to_html(
            index=False, float_format=lambda v: f"{v:.4g}")
