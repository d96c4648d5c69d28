"""tune(search="optuna"): Optuna's TPE sampler proposes the trials, the study is a journal file in the workspace,
and an interrupted tune resumes the same study (trial numbers go on, nothing measured twice)."""
from __future__ import annotations

import itertools
import json
import math

import pytest

from trtlab import zoo
from trtlab.analysis.tune import params_key, run_tune
from trtlab.errors import CancelledError, WorkspaceError
from trtlab.events import Reporter
from trtlab.session import Session

from conftest import installed
from test_tune import scored

optuna = installed("optuna", "Optuna", 'pip install -e ".[optuna]"', module_level=True)

SPACE = {"precision": ["fp16", "bf16"], "graph_optimization": ["basic", "disable", "extended"],
         "threads": [1, 2, 4]}
TABLE = {("precision", "fp16"): 2.0, ("graph_optimization", "basic"): 0.5, ("graph_optimization", "disable"): 1.1,
         ("graph_optimization", "extended"): 1.3, ("threads", 2): 1.2, ("threads", 4): 1.5, ("threads", 1): 0.7}


def brute_force_best(space, table):
    """The landscape's optimum by enumerating every configuration (bf16 fails, as in `scored`)."""
    best = -math.inf
    for combo in itertools.product(*[[None, *v] for v in space.values()]):
        params = dict(zip(space, combo))
        if params["precision"] == "bf16":
            continue
        best = max(best, 100.0 * math.prod(table.get((k, v), 1.0) for k, v in params.items()))
    return best


def test_optuna_search_beats_a_fixed_reference_in_a_third_of_the_grid():
    from trtlab.analysis.tune_optuna import OptunaSearch
    grid = math.prod(len(v) + 1 for v in SPACE.values())  # 48 configurations
    best = brute_force_best(SPACE, TABLE)
    assert best == pytest.approx(100 * 2 * 1.3 * 1.5)
    reference = 100 * 2.0 * 1.3  # fp16 with graph_optimization=extended, threads at the default
    for seed in range(5):
        trial, calls = scored(TABLE)
        res = run_tune(SPACE, trial, Reporter("tune"), budget_s=1e6, confirm=False,
                       search=OptunaSearch(seed=seed), max_trials=grid // 3)
        assert len(res.trials) == len(calls) == grid // 3  # every trial a distinct, measured configuration
        assert len({params_key(c) for c in calls}) == len(calls)
        assert calls[0] == {d: None for d in SPACE}  # the default first
        assert res.best["score"] >= reference and res.best["score"] >= 0.8 * best, seed
    # seeded: the same search proposes the same trials
    trial0, calls0 = scored(TABLE)
    run_tune(SPACE, trial0, Reporter("tune"), budget_s=1e6, confirm=False, search=OptunaSearch(seed=0),
             max_trials=grid // 3)
    trial1, calls1 = scored(TABLE)
    run_tune(SPACE, trial1, Reporter("tune"), budget_s=1e6, confirm=False, search=OptunaSearch(seed=0),
             max_trials=grid // 3)
    assert calls0 == calls1


def test_optuna_search_stops_when_every_configuration_was_measured():
    space = {"threads": [1, 2]}
    from trtlab.analysis.tune_optuna import OptunaSearch
    trial, calls = scored({("threads", 2): 3.0})
    res = run_tune(space, trial, Reporter("tune"), budget_s=1e6, confirm=False, search=OptunaSearch())
    assert sorted(params_key(c) for c in calls) == sorted(params_key({"threads": t}) for t in (None, 1, 2))
    assert res.best_params == {"threads": 2} and res.stopped is None


def journal_trials(path, name):
    """The study read back from its journal file by plain Optuna (not trtlab's code)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
    storage = JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(f"{path}.lock")))
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def test_session_optuna_tune_cancelled_after_k_trials_resumes_the_same_study(tmp_path):
    args = dict(budget_s=120, trial_s=0.05, warmup=1, confirm=False, batch=[4, 64],
                include=["precision", "batch", "graph_optimization"], precisions=["fp32", "fp16"],
                search="optuna", max_trials=7)
    s = Session(zoo.mlp(), workspace=tmp_path / "ws")
    finished = []

    def watch(kind, p):
        if kind == "progress" and p.message == "warming up":
            finished.append(p.task)
        if kind == "progress" and p.message.startswith("trial ") and len(finished) >= 3:
            job["job"].cancel()  # trials 0, 1, 2 have run; the proposal being started is not measured
    job = {}
    s.events.subscribe(watch)
    job["job"] = s.tune(background=True, **args)
    with pytest.raises(CancelledError):
        job["job"].result(timeout=120)
    folder = next((tmp_path / "ws").rglob("trials.jsonl")).parent
    journal = folder / "optuna.journal"
    first = [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines()]
    assert [t["trial"] for t in first] == [0, 1, 2]
    before = journal_trials(journal, folder.name)
    assert [t.number for t in before] == list(range(len(before))) and len(before) >= 3
    assert sum(t.state.name == "COMPLETE" and "repeat_of" not in t.user_attrs for t in before) == 3

    s2 = Session(zoo.mlp(), workspace=tmp_path / "ws")
    res = s2.tune(resume=True, **args)
    f = res.to_frame()
    assert f["resumed"].tolist() == [True] * 3 + [False] * 4
    rows = [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines()]
    after = journal_trials(journal, folder.name)
    # trial numbers go on from the stopped study: the earlier trials are kept as they were
    assert [t.number for t in after] == list(range(len(after))) and len(after) > len(before)
    assert [(t.number, t.params, t.state) for t in after[:len(before)] if t.state.name == "COMPLETE"] == \
        [(t.number, t.params, t.state) for t in before if t.state.name == "COMPLETE"]
    measured = [t for t in after if t.state.name == "COMPLETE" and "repeat_of" not in t.user_attrs]
    keys = lambda ps: sorted(params_key(p) for p in ps)
    dims = ["precision", "batch", "graph_optimization"]
    # the journal and the TrialStore hold the same 7 distinct configurations, each measured once
    assert len(rows) == len(measured) == 7 and len({params_key({d: r[d] for d in dims}) for r in rows}) == 7
    assert keys(t.params for t in measured) == keys({d: r[d] for d in dims} for r in rows)
    by_key = {params_key({d: r[d] for d in dims}): r["score"] for r in rows}
    assert all(t.value == pytest.approx(by_key[params_key(t.params)]) for t in measured)
    # the tiny MLP runs far more samples/s at batch 64 than at 4: the search found that
    assert res.best_params["batch"] == 64


def test_a_link_planted_as_the_study_journal_is_refused(tmp_path):
    s = Session(zoo.mlp(), workspace=tmp_path / "ws")
    args = dict(budget_s=30, trial_s=0.05, warmup=1, confirm=False, include=["graph_optimization"],
                search="optuna", max_trials=2)
    s.tune(**args)
    journal = next((tmp_path / "ws").rglob("optuna.journal"))
    outside = tmp_path / "outside.journal"
    journal.rename(outside)
    journal.symlink_to(outside)
    size = outside.stat().st_size
    with pytest.raises(WorkspaceError, match="symbolic link"):
        s.tune(resume=True, **args)
    assert outside.stat().st_size == size


def test_optuna_is_imported_only_by_an_optuna_search():
    import subprocess
    import sys
    code = ("import sys, trtlab, trtlab.tuning, trtlab.analysis.tune; from trtlab.analysis.tune import run_tune; "
            "from trtlab.events import Reporter; from test_tune import scored; "
            "run_tune({'threads': [1, 2]}, scored({})[0], Reporter('t'), budget_s=10, confirm=False); "
            "print('optuna' in sys.modules, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=__import__("pathlib").Path(__file__).parent).stdout
    assert out.strip() == "False False"
