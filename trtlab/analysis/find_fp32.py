"""Find the smallest set of nodes to pin to FP32 so a reduced-precision engine's final outputs meet a tolerance.

1. Compare candidate and FP32 tensor by tensor; rank nodes by how much relative RMS error their own output
   adds over their inputs' (error gain), largest first.
2. Bisection over that ranking (like Polygraphy's `debug precision`): pin the first k ranked nodes, build,
   check the final outputs; find the smallest passing k (assumes more pins never hurt).
3. Try dropping each chosen pin once (most recent first) while the budget of steps lasts, to shrink the set.
Every engine built is recorded as a step (pins, metric, pass/fail), passed to `on_step` as it is measured
(and the ranking once made), so a search that stops loses nothing; given those records back as `stored`, a
search takes each pin set measured before (and the ranking) from them instead of building it again.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..errors import ConfigError
from .compare import TensorStats


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

    def to_dict(self) -> dict[str, Any]:
        """JSON payload."""
        return {"pins": self.pins, "met": self.met, "tolerance": self.tolerance, "metric": self.metric,
                "baseline": self.baseline, "final": self.final, "ranking": self.ranking[:50]}

    def __repr__(self) -> str:
        state = "meets" if self.met else "does NOT meet"
        return (f"<FindResult {len(self.pins)} pin(s) {self.pins[:6]}{' ...' if len(self.pins) > 6 else ''}: "
                f"{self.metric} {self.final:.3g} {state} tolerance {self.tolerance:g} (unpinned {self.baseline:.3g}); "
                f"{len(self.steps)} steps>")

    def _repr_html_(self) -> str:
        from ..markup import esc
        return f"<b>{esc(repr(self))}</b>" + self.steps.to_html()


def error_gain_ranking(frame: Any, model: Any) -> list[str]:
    """Node names ordered by how much relative RMS error each adds over its inputs (largest first)."""
    err = dict(zip(frame["tensor"], frame["rel_rms_err"]))
    scored = []
    for n in model.proto.graph.node:
        outs = [err[o] for o in n.output if o in err and math.isfinite(err[o])]
        if not outs:
            continue
        ins = [err[i] for i in n.input if i in err and math.isfinite(err[i])]
        gain = max(outs) - (max(ins) if ins else 0.0)
        scored.append((gain, max(outs), n.name))
    scored.sort(key=lambda s: (-s[0], -s[1]))
    return [name for _, _, name in scored]


def find_fp32_layers(session: Any, candidate: str, tolerance: float, data: Any, batch: int | None, metric: str,
                     max_steps: int, seed: int, calibration: Any, reporter: Any, dims: Any = None,
                     on_step: Callable[[dict[str, Any]], None] | None = None,
                     stored: Iterable[Mapping[str, Any]] = ()) -> FindResult:
    """See the module docstring; `session` is a trtlab Session."""
    import pandas as pd

    if metric not in ("rel_rms_err", "max_abs_err", "mean_rel_err"):
        raise ConfigError(f"metric {metric!r}: use 'rel_rms_err', 'max_abs_err' or 'mean_rel_err'")
    if not tolerance > 0:
        raise ConfigError(f"tolerance must be > 0, got {tolerance}")
    batches, _ = session._lab_batches(data, batch, seed, dims)
    batches = list(batches)
    b = batch or session._batch_of(batches[0])
    outputs = [o.name for o in session.model.outputs]
    base = {"batch": b, "calibration": calibration, "dims": dims}
    quiet = reporter.child("find", events=False)
    measured: dict[tuple[str, ...], float] = {}
    stored_ranking = None
    for rec in stored:
        if rec.get("record") == "step" and isinstance(rec.get("pinned"), list):
            value = rec.get(metric)
            measured[tuple(rec["pinned"])] = math.inf if value is None else float(value)  # null: not finite
        elif rec.get("record") == "ranking" and isinstance(rec.get("ranking"), list):
            stored_ranking = [str(n) for n in rec["ranking"]]

    def run(spec: dict[str, Any]) -> list[dict[str, np.ndarray]]:
        config, variant = session._lab_variant(spec, reporter)
        engine = session.backend.build(session.model, variant, config, quiet)
        try:
            return [engine.run(f, outputs) for f in batches]
        finally:
            engine.close()

    reference: list[dict[str, np.ndarray]] = []  # FP32 outputs, run once the first step needs them
    steps: list[dict[str, Any]] = []

    def score(pins: list[str], phase: str) -> float:
        resumed = tuple(pins) in measured
        if resumed:
            worst = measured[tuple(pins)]
        else:
            if not reference:
                reference.extend(run({"precision": "fp32", "batch": b, "dims": dims}))
            got = run({**base, "precision": candidate, "fp32_layers": pins})
            worst = 0.0
            for name in outputs:
                st = TensorStats(name)
                for r, c in zip(reference, got):
                    st.update(r[name], c[name])
                worst = max(worst, float(st.row()[metric]))
        row = {"step": len(steps), "phase": phase, "pins": len(pins), "pinned": list(pins), metric: worst,
               "passed": worst <= tolerance, "resumed": resumed}
        steps.append(row)
        if on_step is not None and not resumed:
            on_step({"record": "step", **row})
        reporter.update(len(steps), max_steps, f"{phase}: {len(pins)} pins -> {metric} {worst:.3g}"
                        + (" (stored)" if resumed else ""))
        return worst

    baseline = score([], "unpinned")
    pins: list[str] = []
    ranking: list[str] = []
    final = baseline
    if baseline > tolerance:
        if stored_ranking is not None:
            ranking = stored_ranking
        else:
            comp = session.compare("fp32", {**base, "precision": candidate}, outputs="all", data=batches, batch=b,
                                   dims=dims)
            ranking = error_gain_ranking(comp.frame, session.model)
            if on_step is not None:
                on_step({"record": "ranking", "ranking": ranking})
        lo, hi = 0, len(ranking)
        hi_score = score(ranking, "all ranked pinned")
        if hi_score > tolerance:
            final, pins = hi_score, list(ranking)
        else:
            final, pins = hi_score, list(ranking)
            while hi - lo > 1 and len(steps) < max_steps:
                mid = (lo + hi) // 2
                s = score(ranking[:mid], "bisect")
                if s <= tolerance:
                    hi, final, pins = mid, s, ranking[:mid]
                else:
                    lo = mid
            for name in list(reversed(pins)):
                if len(steps) >= max_steps or len(pins) <= 1:
                    break
                trial = [p for p in pins if p != name]
                s = score(trial, "prune")
                if s <= tolerance:
                    pins, final = trial, s
    frame = pd.DataFrame(steps, columns=["step", "phase", "pins", "pinned", metric, "passed", "resumed"])
    return FindResult(pins=pins, met=final <= tolerance, tolerance=tolerance, metric=metric, baseline=baseline,
                      final=final, steps=frame, ranking=ranking)
