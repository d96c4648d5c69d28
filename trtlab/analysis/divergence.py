"""Where a reduced-precision engine starts to go wrong: the error each node adds to the error of its inputs (a
per-layer sensitivity) and the first node whose added error is more than rounding (the first divergence).

Error here is a tensor's relative RMS error against the reference (rel_rms_err of a comparison frame). A node's
input error is the largest error among the compared activations it reads (weights, integer tensors and graph
inputs count as exact: a weight's rounding is the reading node's own doing, and both engines get the same
inputs); its added error is its output error minus that, its gain the ratio.

Why the thresholds: a node computed in a precision with unit roundoff u (fp16: 2^-11) rounds its output once
(relative error at most u, RMS about u/sqrt(3)) and its weights once, and a well-conditioned node passes its
input error on with a gain near 1. On the corpus models in fp16 with every tensor stored in fp16 (PP-OCR det/rec,
YOLOv8n, ddddocr, SqueezeNet, AlexNet, ResNet-50, magika), healthy nodes that add more than 10 u raise their input
error at most 3.1x (the most any adds is 41 u, at gain 2.3, in PP-OCR rec). A node that amplifies error (a
difference of nearly equal values such as magika's LayerNorm variance E[x^2] - E[x]^2, gain 8.5; exp of a large
argument; the reciprocal of a small variance; a clamped weight, PP-OCR det's BatchNormalization, gain 4.4e3)
raises it far more. So a node diverges when its added error is more than FACTOR times
its input error (gain above FACTOR + 1) and more than FLOOR_UNITS x u, or when it turns finite inputs into inf/NaN.
The floor keeps a node fed exact values (input error 0) from diverging by plain rounding; the factor keeps a node
that only carries error forward from diverging because error has grown along the graph. Rows with zero error
(ConstantOfShape, weights) therefore never lower the bar for a later node, as a median of earlier rows did.
"""
from __future__ import annotations

import math
from typing import Any

from ..errors import ConfigError

# Unit roundoff of each candidate precision: half the spacing of numbers at 1 (2^-p for p significand bits);
# int8 is half a quantization step relative to the calibrated amax (1/254, about 2^-8); fp8 is E4M3.
UNIT_ROUNDOFF = {"fp32": 2.0**-24, "fp16": 2.0**-11, "bf16": 2.0**-8, "fp8": 2.0**-4, "int8": 2.0**-8,
                 "int8+fp16": 2.0**-8}
FACTOR = 4.0
FLOOR_UNITS = 10.0

DIVERGENCE_COLUMNS = ("tensor", "rel_rms_err", "ref_nan", "cand_nan", "ref_inf", "cand_inf")
SENSITIVITY_COLUMNS = ["index", "tensor", "node", "op_type", "inputs", "input_error", "output_error", "added_error",
                       "gain", "added_units", "nonfinite", "starts_nonfinite"]


def activations(frame: Any) -> Any:
    """The activation rows of a comparison frame (weights and integer tensors stay visible in the frame but out
    of the headlines); a frame without a kind column is all activations."""
    return frame[frame["kind"] == "activation"] if "kind" in frame else frame


def nonfinite_text(row: Any, precision: str = "fp16") -> str:
    """'overflowed to inf in fp16 (50 inf, 0 NaN of 8192; reference 0 inf, 0 NaN)' for a comparison row."""
    what = "overflowed to inf" if row["cand_overflow_inf"] else "became NaN"
    return (f"{what} in {precision} ({int(row['cand_inf'])} inf, {int(row['cand_nan'])} NaN of "
            f"{int(row['total_elements'])} elements; reference {int(row['ref_inf'])} inf, {int(row['ref_nan'])} NaN)")


def unit_roundoff(precision: str) -> float:
    """The unit roundoff of a precision name (UNIT_ROUNDOFF); ConfigError naming the known ones otherwise."""
    if precision not in UNIT_ROUNDOFF:
        raise ConfigError(f"precision {precision!r} has no unit roundoff here; use one of {', '.join(UNIT_ROUNDOFF)}")
    return UNIT_ROUNDOFF[precision]


def _value(v: Any) -> float | None:
    """A finite float, or None for null / NaN / inf."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _check(frame: Any, what: str) -> None:
    missing = [c for c in DIVERGENCE_COLUMNS if c not in frame]
    if missing:
        raise ConfigError(f"{what} needs a comparison frame (Session.compare(...).frame); this one lacks {missing}")


def sensitivity(frame: Any, precision: str = "fp16"):
    """Per activation row of a comparison frame (graph order): the node that produced it, the tensors it reads, their
    error (input_error), its own (output_error), added_error = output - input, gain = output / input (None when the
    input error is 0), added_units = added_error / the unit roundoff of `precision`, whether the candidate has
    inf/NaN there (nonfinite) and whether this node is where they start (its inputs had none).

    The inputs come from the frame's `inputs` column (Session.compare fills it from the graph); a frame without one
    takes as input error the largest error of the activations before the row, which can only understate what a
    row adds."""
    import pandas as pd
    _check(frame, "sensitivity")
    u = unit_roundoff(precision)
    acts = activations(frame)
    known = "inputs" in acts
    err: dict[str, float | None] = {}
    bad: set[str] = set()
    worst, any_bad = 0.0, False
    rows = []
    for pos, r in enumerate(acts.to_dict("records")):
        tensor = r["tensor"]
        out = _value(r["rel_rms_err"])
        nonfinite = bool(r["cand_nan"] > r["ref_nan"] or r["cand_inf"] > r["ref_inf"])
        ins = r.get("inputs") if known else None
        if isinstance(ins, (list, tuple)):
            ins = [t for t in ins if t in err]  # activations only: weights, integers and graph inputs are exact
            in_bad = any(t in bad for t in ins)
            values = [err[t] for t in ins]  # a non-finite input's error is over its finite elements
            inp = None if any(v is None for v in values) else max(values, default=0.0)
        else:
            ins, in_bad, inp = None, any_bad, worst
        added = out - inp if out is not None and inp is not None else None
        gain = (out / inp if inp > 0 else None) if added is not None else None
        rows.append({"index": int(r["index"]) if _value(r.get("index")) is not None else pos, "tensor": tensor,
                     "node": r.get("node"), "op_type": r.get("op_type"), "inputs": ins, "input_error": inp,
                     "output_error": out, "added_error": added, "gain": gain,
                     "added_units": added / u if added is not None else None,
                     "nonfinite": nonfinite, "starts_nonfinite": nonfinite and not in_bad})
        err[tensor] = out
        if nonfinite:
            bad.add(tensor)
            any_bad = True
        if out is not None:
            worst = max(worst, out)
    return pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS)


def divergence_rule(precision: str = "fp16", factor: float = FACTOR, floor: float | None = None,
                    inputs_known: bool = True) -> str:
    """The rule first_divergence applies, in words, with its numbers."""
    floor = FLOOR_UNITS * unit_roundoff(precision) if floor is None else floor
    inputs = ("the largest error among the activations it reads" if inputs_known else
              "the largest error of the activations before it (the frame does not say what each node reads)")
    return (f"first activation (graph order) whose node turns finite inputs into inf/NaN, or whose relative RMS "
            f"error exceeds its input error ({inputs}) by more than {factor:g} x that input error and by more than "
            f"{floor:.3g} ({floor / unit_roundoff(precision):g} x the {precision} unit roundoff "
            f"{unit_roundoff(precision):.3g}); weights and integer tensors are skipped")


def first_divergence(frame: Any, factor: float = FACTOR, floor: float | None = None,
                     precision: str = "fp16") -> dict[str, Any] | None:
    """The first activation of a comparison frame where the candidate's error starts (see the module docstring):
    its node turns finite inputs into inf/NaN, or its added error exceeds `factor` x its input error and `floor`
    (default FLOOR_UNITS x the unit roundoff of `precision`). None when no node diverges.

    Returns {"index", "position", "tensor", "node", "op_type", "inputs", "input_error", "output_error",
    "rel_rms_err", "added_error", "gain", "reason", "rule"} (JSON-ready: floats finite or None)."""
    _check(frame, "first_divergence")
    sens = sensitivity(frame, precision)
    u = unit_roundoff(precision)
    limit = FLOOR_UNITS * u if floor is None else float(floor)
    rule = divergence_rule(precision, factor, limit, "inputs" in activations(frame))
    acts = activations(frame).reset_index(drop=True)
    for pos, r in enumerate(sens.to_dict("records")):
        inp, added = _value(r["input_error"]), _value(r["added_error"])
        where = f"{r['node']} ({r['op_type']})" if isinstance(r["node"], str) else r["tensor"]
        if r["starts_nonfinite"]:
            row = acts.iloc[pos]
            reason = (f"candidate {nonfinite_text(row, precision)}" if "cand_overflow_inf" in row and
                      "total_elements" in row else "candidate has NaN/Inf where the reference has none")
            reason += f" at {where}, from inputs without any"
        elif added is not None and inp is not None and added > factor * inp and added > limit:
            gain = f"{added / inp:.3g} x its input error" if inp > 0 else "from exact inputs"
            reason = (f"{where} raised the relative RMS error from {inp:.3g} (its inputs) to {r['output_error']:.3g}: "
                      f"it adds {added:.3g}, {gain} and {added / u:.3g} x the {precision} unit roundoff")
        else:
            continue
        out = _value(r["output_error"])
        return {"index": int(r["index"]), "position": pos, "tensor": r["tensor"],
                "node": r["node"] if isinstance(r["node"], str) else None,
                "op_type": r["op_type"] if isinstance(r["op_type"], str) else None,
                "inputs": list(r["inputs"]) if isinstance(r["inputs"], (list, tuple)) else None,
                "input_error": inp, "output_error": out, "rel_rms_err": out, "added_error": added,
                "gain": _value(r["gain"]), "reason": reason, "rule": rule}
    return None
