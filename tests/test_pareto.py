"""s.pareto: accuracy against speed over precision x fp32 pins x batch; the non-dominated filter against a
brute-force check, the accuracy figures against compare(), the figure's reference and axes."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from trtlab import zoo
from trtlab.analysis.pareto import non_dominated
from trtlab.session import Session


def brute_force_front(values, goals):
    """O(n^2): a point is on the front when no other point is <= in every objective and < in one."""
    sign = np.array([1.0 if g == "min" else -1.0 for g in goals])
    v = np.asarray(values, float) * sign
    out = []
    for i in range(len(v)):
        if np.isnan(v[i]).any():
            out.append(False)
            continue
        out.append(not any(np.all(v[j] <= v[i]) and np.any(v[j] < v[i]) for j in range(len(v))
                           if j != i and not np.isnan(v[j]).any()))
    return np.array(out)


@pytest.mark.parametrize("seed", range(20))
def test_non_dominated_equals_the_brute_force_check(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    values = rng.integers(0, 6, size=(n, 2)).astype(float)  # small integers: many ties and duplicates
    if seed % 4 == 0:
        values[rng.integers(0, n)] = np.nan
    for goals in itertools.product(("min", "max"), repeat=2):
        assert non_dominated(values, goals).tolist() == brute_force_front(values, goals).tolist()


def check_result(s, res, batches, **build_args):
    f = res.to_frame()
    # independent check of the front: no point dominates a flagged one; every unflagged one is dominated
    assert f["pareto"].tolist() == brute_force_front(f[["accuracy", "latency_median_ms"]].to_numpy(),
                                                     ["min", "min"]).tolist()
    assert f["pareto"].any()
    fig = res.figure()
    ref = [t for t in fig.data if t.name == "fp32 reference"]
    assert ref and list(ref[0].x) == f.loc[f["precision"] == "fp32", "latency_median_ms"].tolist()
    assert "ms" in fig.layout.xaxis.title.text and "rel_rms_err" in fig.layout.yaxis.title.text
    # the accuracy of a pinned fp16 candidate is compare()'s for the same candidate
    row = f[(f["precision"] == "fp16") & (f["pins"] > 0)].iloc[0]
    comp = s.compare({"precision": "fp32", **build_args},
                     {"precision": "fp16", "fp32_layers": list(row["fp32_layers"]), **build_args}, outputs=None,
                     data=batches)
    outs = [o.name for o in s.model.outputs]
    assert row["accuracy"] == comp.frame.set_index("tensor").loc[outs, "rel_rms_err"].max()
    assert f.loc[f["precision"] == "fp32", "accuracy"].eq(0).all()
    return f


def test_pareto_on_the_zoo_mlp(tmp_path):
    s = Session(zoo.mlp(), workspace=tmp_path / "ws")
    rng = np.random.default_rng(0)
    batches = [{i.name: rng.standard_normal([4, *i.shape[1:]]).astype(np.float32) for i in s.model.inputs}]
    res = s.pareto(candidates=["fp16"], pins=[0, 1], batch=[1, 4], data=batches, trial_s=0.05, warmup=1)
    f = check_result(s, res, batches)
    assert len(f) == 2 + 2 * 2 and set(f["batch"]) == {1, 4}
    stored = next((tmp_path / "ws").rglob("pareto-*/trials.jsonl")).read_text().splitlines()
    assert len(stored) == len(f)  # each point stored as measured
    assert not s.results("pareto").empty
    html = s.report(tmp_path / "report.html").read_text()
    assert "Accuracy against speed (Pareto front)" in html and "fp32 reference" in html
    assert html.count("fp16 +1 fp32 pins b4") >= 1


def test_pareto_samples_a_large_space_with_nsga2(tmp_path):
    s = Session(zoo.mlp(), workspace=tmp_path / "ws")
    rng = np.random.default_rng(0)
    batches = [{i.name: rng.standard_normal([2, *i.shape[1:]]).astype(np.float32) for i in s.model.inputs}]
    res = s.pareto(candidates=["fp16"], pins=[0, 1, 2], batch=[1, 2], data=batches, trial_s=0.03, warmup=1,
                   max_points=4)
    f = res.to_frame()
    assert len(f) == 4 and "NSGA-II" in res.notes[0]
    assert (f["precision"] == "fp32").sum() == 2  # the references first
    assert f["pareto"].tolist() == brute_force_front(f[["accuracy", "latency_median_ms"]].to_numpy(),
                                                     ["min", "min"]).tolist()


@pytest.mark.corpus
def test_pareto_on_ppocr_cls(tmp_path):
    from corpus import get
    m = get("ppocr_cls")
    s = Session(m.path, workspace=tmp_path / "ws")
    batches = m.feeds()
    res = s.pareto(candidates=["fp16"], pins=[0, 2], data=batches, trial_s=0.05, warmup=1, shapes=m.shapes())
    f = check_result(s, res, batches, shapes=m.shapes())
    assert len(f) == 1 + 2
