"""find_fp32_layers as a search over plain callables: hand-made error models whose answer is known."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from onnx import helper

from trtlab.analysis.find_fp32 import error_gain_ranking, find_fp32_layers, worst_output_error
from trtlab.errors import ConfigError

# each node adds this much error while it runs in reduced precision; pinning it to FP32 removes its share
ERRORS = {"a": 0.001, "b": 0.002, "c": 0.30, "d": 0.004, "e": 0.003, "f": 0.20, "g": 0.001, "h": 0.002}


def additive(pins):
    return sum(v for k, v in ERRORS.items() if k not in pins)


def smallest_passing_set(tolerance):
    """Brute force over every subset: the smallest pin sets meeting the tolerance (the independent answer)."""
    for size in range(len(ERRORS) + 1):
        found = [set(c) for c in itertools.combinations(ERRORS, size) if additive(c) <= tolerance]
        if found:
            return found
    return []


def test_bisection_then_pruning_finds_the_smallest_set():
    asked = []

    def score(pins):
        asked.append(list(pins))
        return additive(pins)

    # a ranking that puts two harmless nodes in front of the culprits: bisection overshoots, pruning drops them
    ranking = ["a", "c", "b", "f", "d", "e", "g", "h"]
    r = find_fp32_layers(score, ranking, tolerance=0.05, max_steps=24)
    assert set(r.pins) in smallest_passing_set(0.05) and set(r.pins) == {"c", "f"}
    assert r.met and r.final == pytest.approx(additive(["c", "f"])) and r.baseline == pytest.approx(additive([]))
    assert r.ranking == ranking
    # every step is one call of score with exactly those pins, recorded with its value
    assert [list(p) for p in r.steps["pinned"]] == asked
    assert list(r.steps["rel_rms_err"]) == pytest.approx([additive(p) for p in asked])
    assert list(r.steps["passed"]) == [additive(p) <= 0.05 for p in asked]
    assert r.steps["phase"].iloc[0] == "unpinned" and set(r.steps["phase"]) <= {"unpinned", "all ranked pinned",
                                                                                 "bisect", "prune"}


def test_a_passing_candidate_asks_for_no_ranking():
    def ranking():
        raise AssertionError("the ranking must not be computed when nothing needs pinning")

    r = find_fp32_layers(additive, ranking, tolerance=1.0)
    assert r.pins == [] and r.met and len(r.steps) == 1 and r.ranking == []


def test_unreachable_tolerance_reports_all_ranked_pins_and_not_met():
    r = find_fp32_layers(lambda pins: 1.0 + additive(pins), list(ERRORS), tolerance=0.5)
    assert not r.met and r.pins == list(ERRORS) and r.final == pytest.approx(1.0)
    assert list(r.steps["phase"]) == ["unpinned", "all ranked pinned"]


def test_step_budget_progress_and_on_step():
    seen, progress = [], []
    r = find_fp32_layers(additive, lambda: ["a", "c", "b", "f", "d", "e", "g", "h"], tolerance=0.05, max_steps=3,
                         progress=lambda i, n, text: progress.append((i, n)), on_step=seen.append)
    assert len(r.steps) == 3 and [s["step"] for s in seen if s["record"] == "step"] == [0, 1, 2]
    assert [s["ranking"] for s in seen if s["record"] == "ranking"] == [["a", "c", "b", "f", "d", "e", "g", "h"]]
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert r.met  # all pinned passed, the budget only stopped the shrinking


def test_stored_steps_and_ranking_are_not_scored_again():
    first: list[dict] = []
    full = find_fp32_layers(additive, ["a", "c", "b", "f", "d", "e", "g", "h"], tolerance=0.05, on_step=first.append)
    asked = []

    def score(pins):
        asked.append(list(pins))
        return additive(pins)

    def ranking():
        raise AssertionError("the stored ranking must be used")

    # the first search stopped after three records (unpinned, ranking, all pinned): resume from them
    again = find_fp32_layers(score, ranking, tolerance=0.05, stored=first[:3])
    assert again.pins == full.pins and list(again.steps["resumed"][:2]) == [True, True]
    assert [] not in asked and list(ERRORS) not in asked and len(asked) == len(full.steps) - 2


@pytest.mark.parametrize("kwargs, match", [({"tolerance": 0.0}, "tolerance"),
                                            ({"tolerance": 1e-3, "metric": "accuracy"}, "metric")])
def test_bad_arguments_are_refused_before_any_score(kwargs, match):
    def score(pins):
        raise AssertionError("no score may run with bad arguments")

    with pytest.raises(ConfigError, match=match):
        find_fp32_layers(score, [], **kwargs)


def test_error_gain_ranking_orders_nodes_by_the_error_they_add():
    nodes = [helper.make_node("Relu", ["x"], ["t1"], name="n1"),
             helper.make_node("Exp", ["t1"], ["t2"], name="n2"),
             helper.make_node("Relu", ["t2"], ["t3"], name="n3"),
             helper.make_node("Relu", ["w"], ["u"], name="unrelated")]
    frame = pd.DataFrame({"tensor": ["x", "t1", "t2", "t3"], "rel_rms_err": [0.0, 0.01, 0.5, 0.52],
                          "ref_nan": 0, "cand_nan": 0, "ref_inf": 0, "cand_inf": 0})
    # gains: n1 0.01, n2 0.49, n3 0.02; 'unrelated' has no compared output and is left out
    assert error_gain_ranking(frame, nodes) == ["n2", "n3", "n1"]


def test_worst_output_error_against_numpy():
    rng = np.random.default_rng(0)
    ref = [{"y": rng.standard_normal(100), "z": rng.standard_normal(10)} for _ in range(2)]
    cand = [{"y": r["y"] + 0.01, "z": r["z"] * 1.5} for r in ref]
    worst = worst_output_error(ref, cand, ["y", "z"], "max_abs_err")
    expected = max(np.abs(np.concatenate([r["z"] for r in ref]) * 0.5).max(), 0.01)
    assert worst == pytest.approx(expected)


def test_sensitivity_ranking_finds_the_brute_force_smallest_set_on_a_real_model(tmp_path):
    """On a small real model (ORT, fp16 variants), find_fp32_layers with the sensitivity ranking ends on a set as
    small as the smallest of every subset of the float nodes, measured the same way one subset at a time."""
    import trtlab
    from test_divergence import N, _cancel_model

    s = trtlab.Session(_cancel_model(), workspace=tmp_path)
    x = np.random.default_rng(0).uniform(2, 3, (1, N)).astype(np.float32)
    ref = s.build("fp32").run({"x": x})["y"].astype(np.float64)

    def error(pins):
        y = s.build("fp16", fp32_layers=list(pins)).run({"x": x})["y"].astype(np.float64)
        return float(np.sqrt(np.sum((y - ref) ** 2) / np.sum(ref ** 2)))

    tolerance = 5e-4
    floats = ["zeros2", "pow", "shift", "cancel", "addz", "out"]
    smallest = next(size for size in range(len(floats) + 1)
                    if any(error(c) <= tolerance for c in itertools.combinations(floats, size)))
    r = s.find_fp32_layers("fp16", data=[{"x": x}], tolerance=tolerance)
    assert r.met and len(r.pins) == smallest and error(r.pins) <= tolerance
    assert r.ranking[0] == "cancel"  # the node that adds the most error ranks first; pruning drops it again
