"""Find the smallest set of nodes to pin to FP32 so a reduced-precision engine's final outputs meet a tolerance.

1. Score the unpinned candidate; if it fails, take a ranking of nodes (the session ranks by how much relative RMS
   error each node's own output adds over its inputs' in a layer-wise comparison: `error_gain_ranking`).
2. Bisection over that ranking (like Polygraphy's `debug precision`): pin the first k ranked nodes, score; find the
   smallest passing k (assumes more pins never hurt).
3. Try dropping each chosen pin once (most recent first) while the budget of steps lasts, to shrink the set.
Every score is recorded as a step (pins, metric, pass/fail), passed to `on_step` as it is measured (and the
ranking once made), so a search that stops loses nothing; given those records back as `stored`, a search takes
each pin set measured before (and the ranking) from them instead of scoring it again.

The search knows nothing of engines: it takes `score(pins) -> float` and the ranking as plain callables, so the
session decides how a pinned variant is built and measured.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..precision.graph import compared_sources
from .compare import TensorStats, with_sources
from .divergence import sensitivity


@dataclass
class FindResult:
    """The pins found, whether they meet the tolerance, and every step tried."""

    pins: list[str]
    met: bool
    tolerance: float
    metric: str
    baseline: float
    final: float
    steps: Any
    ranking: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how the candidate was computed, e.g. fp16_mode='faithful'
    # share of the float work the candidate still computes in reduced precision with `pins` kept fp32
    # (Variant.converted_fraction), when the caller measured it
    converted_fraction: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON payload."""
        return {"pins": self.pins, "met": self.met, "tolerance": self.tolerance, "metric": self.metric,
                "baseline": self.baseline, "final": self.final, "ranking": self.ranking[:50], "notes": self.notes,
                "converted_fraction": self.converted_fraction}

    def __repr__(self) -> str:
        state = "meets" if self.met else "does NOT meet"
        faithful = any("fp16_mode='faithful'" in n for n in self.notes)
        return (f"<FindResult {len(self.pins)} pin(s) {self.pins[:6]}{' ...' if len(self.pins) > 6 else ''}: "
                f"{self.metric} {self.final:.3g} {state} tolerance {self.tolerance:g} (unpinned {self.baseline:.3g}); "
                + (f"{self.converted_fraction:.0%} of float ops still converted; "
                   if self.converted_fraction is not None else "")
                + f"{len(self.steps)} steps{'; fp16 stored in fp16 (faithful)' if faithful else ''}>")

    def _repr_html_(self) -> str:
        from ..markup import esc
        return (f"<b>{esc(repr(self))}</b>" + "".join(f"<br><i>{esc(n)}</i>" for n in self.notes)
                + self.steps.to_html())


METRICS = ("rel_rms_err", "max_abs_err", "mean_rel_err")


def check_search(tolerance: float, metric: str) -> None:
    """ConfigError unless `metric` is one TensorStats reports and `tolerance` is positive."""
    if metric not in METRICS:
        raise ConfigError(f"metric {metric!r}: use {', '.join(repr(m) for m in METRICS)}")
    if not tolerance > 0:
        raise ConfigError(f"tolerance must be > 0, got {tolerance}")


def error_gain_ranking(frame: Any, nodes: Iterable[Any]) -> list[str]:
    """Names of `nodes` (ONNX NodeProtos, graph order) by the per-layer sensitivity of a comparison frame
    (divergence.sensitivity): nodes where the candidate's inf/NaN start come first, then the rest by how much
    relative RMS error they add over their inputs' (the largest over a node's outputs), largest first. Only
    activation rows count: a weight's or integer tensor's error is not a node's doing. A frame without the
    inputs column gets it from `nodes`."""
    nodes = list(nodes)
    if "inputs" not in frame:
        frame = with_sources(frame, compared_sources(_graph_of(nodes), list(frame["tensor"])))
    sens = sensitivity(frame)
    added = sens["added_error"].astype(float).fillna(-math.inf)
    out = sens["output_error"].astype(float).fillna(-math.inf)
    owner = {o: n.name for n in nodes for o in n.output if o}
    best: dict[str, tuple[float, float]] = {}
    for tensor, a, o, starts in zip(sens["tensor"], added, out, sens["starts_nonfinite"]):
        name = owner.get(tensor)
        if name is not None:
            key = (math.inf, math.inf) if starts else (a, o)
            best[name] = max(best.get(name, key), key)
    order = {n.name: i for i, n in enumerate(nodes)}
    return sorted(best, key=lambda n: (-best[n][0], -best[n][1], order[n]))


def _graph_of(nodes: list[Any]):
    import onnx
    g = onnx.GraphProto()
    g.node.extend(nodes)
    return g


def worst_output_error(reference: Sequence[Mapping[str, np.ndarray]], candidate: Sequence[Mapping[str, np.ndarray]],
                       outputs: Sequence[str], metric: str) -> float:
    """The largest `metric` over `outputs`, each accumulated over the batches of two runs (lists of output dicts)."""
    worst = 0.0
    for name in outputs:
        st = TensorStats(name)
        for r, c in zip(reference, candidate):
            st.update(r[name], c[name])
        if st.introduced_nonfinite:  # the candidate overflowed to inf (or NaN): it cannot meet any tolerance
            return math.inf
        value = st.row()[metric]
        worst = max(worst, math.inf if value is None else float(value))
    return worst


def find_fp32_layers(score: Callable[[list[str]], float], ranking: Callable[[], Sequence[str]] | Sequence[str],
                     tolerance: float, metric: str = "rel_rms_err", max_steps: int = 24,
                     progress: Callable[[int, int, str], None] | None = None,
                     on_step: Callable[[dict[str, Any]], None] | None = None,
                     stored: Iterable[Mapping[str, Any]] = ()) -> FindResult:
    """The smallest prefix of `ranking` (then pruned) whose `score(pins)` is <= `tolerance`; see the module docstring.

    `score(pins)` measures the candidate with `pins` kept in FP32 (lower is better, `metric` names it); `ranking` is
    the nodes to try, best first, or a callable giving it (called only when the unpinned candidate fails and no
    stored ranking exists). `progress(step, max_steps, text)` is told of each step; `on_step(record)` gets each
    newly measured step ({"record": "step", ...}) and a newly made ranking ({"record": "ranking", ...}).
    """
    import pandas as pd

    check_search(tolerance, metric)
    measured: dict[tuple[str, ...], float] = {}
    stored_ranking = None
    for rec in stored:
        if rec.get("record") == "step" and isinstance(rec.get("pinned"), list):
            value = rec.get(metric)
            measured[tuple(rec["pinned"])] = math.inf if value is None else float(value)  # null: not finite
        elif rec.get("record") == "ranking" and isinstance(rec.get("ranking"), list):
            stored_ranking = [str(n) for n in rec["ranking"]]
    steps: list[dict[str, Any]] = []

    def measure(pins: list[str], phase: str) -> float:
        resumed = tuple(pins) in measured
        worst = measured[tuple(pins)] if resumed else float(score(list(pins)))
        row = {"step": len(steps), "phase": phase, "pins": len(pins), "pinned": list(pins), metric: worst,
               "passed": worst <= tolerance, "resumed": resumed}
        steps.append(row)
        if on_step is not None and not resumed:
            on_step({"record": "step", **row})
        if progress is not None:
            progress(len(steps), max_steps, f"{phase}: {len(pins)} pins -> {metric} {worst:.3g}"
                     + (" (stored)" if resumed else ""))
        return worst

    baseline = measure([], "unpinned")
    pins: list[str] = []
    ranked: list[str] = []
    final = baseline
    if baseline > tolerance:
        if stored_ranking is not None:
            ranked = stored_ranking
        else:
            ranked = list(ranking() if callable(ranking) else ranking)
            if on_step is not None:
                on_step({"record": "ranking", "ranking": ranked})
        lo, hi = 0, len(ranked)
        final, pins = measure(ranked, "all ranked pinned"), list(ranked)
        if final <= tolerance:
            while hi - lo > 1 and len(steps) < max_steps:
                mid = (lo + hi) // 2
                s = measure(ranked[:mid], "bisect")
                if s <= tolerance:
                    hi, final, pins = mid, s, ranked[:mid]
                else:
                    lo = mid
            for name in list(reversed(pins)):
                if len(steps) >= max_steps or len(pins) <= 1:
                    break
                trial = [p for p in pins if p != name]
                s = measure(trial, "prune")
                if s <= tolerance:
                    pins, final = trial, s
    frame = pd.DataFrame(steps, columns=["step", "phase", "pins", "pinned", metric, "passed", "resumed"])
    return FindResult(pins=pins, met=final <= tolerance, tolerance=tolerance, metric=metric, baseline=baseline,
                      final=final, steps=frame, ranking=ranked)
