"""search="optuna": Optuna's sampler (TPE by default, seeded) proposes tune's configurations over the same space
as the greedy search; run_tune runs, scores and stores each trial as before (the TrialStore stays the record).

The study lives in the workspace as one Optuna journal file (JournalStorage on a JournalFileBackend) next to
the tune's trials.jsonl, named by the tune's settings id, so an interrupted tune resumes the same study (trial
numbers go on) and workers of one tune on other processes or hosts (Ray) can share it through the journal's
file lock. Optuna writes that one file (and its lock file) itself: the journal's append-and-lock protocol is
what makes it shareable, and trtlab's writer writes whole files atomically, which a shared append log cannot
be. So the path is checked with Workspace.library_file (under the root, no link on the way or at the file)
before it is handed to Optuna, and the lock is Optuna's open-file lock, never its symlink lock (trtlab does
not create links in a workspace). Optuna is imported only here, when search="optuna" runs.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError
from .tune import SearchContext, _label, choices, params_key

# a sampler that keeps proposing what was measured is done: stop after this many repeats in a row
MAX_REPEATS = 50


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("search='optuna' needs Optuna: pip install 'trtlab[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_study(journal: Path | None, name: str, seed: int = 0, sampler: Any = None,
               directions: tuple[str, ...] = ("maximize",)) -> Any:
    """The study `name` in the journal file `journal` (created or loaded; None: in memory). `journal` must be a
    path already checked by Workspace.library_file."""
    optuna = _optuna()
    storage = None
    if journal is not None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
        storage = JournalStorage(JournalFileBackend(str(journal), lock_obj=JournalFileOpenLock(f"{journal}.lock")))
    if sampler is None:
        sampler = optuna.samplers.TPESampler(seed=seed) if len(directions) == 1 else \
            optuna.samplers.NSGAIISampler(seed=seed)
    kw = {"direction": directions[0]} if len(directions) == 1 else {"directions": list(directions)}
    return optuna.create_study(storage=storage, study_name=name, sampler=sampler, load_if_exists=True, **kw)


class OptunaSearch:
    """A tune Strategy: each trial is proposed by the study's sampler (ask), run by run_tune, and told its score
    (-inf for a failed build or run, so the sampler learns to avoid it). A proposal already measured in this
    study is told the measured score again without running (marked `repeat_of`) and is not a tune trial. The
    search ends at the budget, at max_trials, when every configuration was measured, or after MAX_REPEATS
    proposals in a row that were all measured before."""

    def __init__(self, journal: Path | None = None, study_name: str = "tune", seed: int = 0,
                 sampler: Any = None) -> None:
        self.journal, self.study_name, self.seed, self.sampler = journal, study_name, seed, sampler
        self.study: Any = None

    def __call__(self, ctx: SearchContext) -> str | None:
        optuna = _optuna()
        from optuna.distributions import CategoricalDistribution
        from optuna.trial import TrialState
        study = self.study = open_study(self.journal, self.study_name, self.seed, self.sampler)
        dims = list(ctx.space)
        values = choices(ctx.space, ctx.default)
        dists = {d: CategoricalDistribution(c) for d, c in values.items()}
        total = math.prod(len(c) for c in values.values())

        def full(params: Mapping[str, Any]) -> dict[str, Any]:
            return {d: params.get(d) for d in dims}
        # trials an interrupted run asked for but never told were never measured: close them as failed
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(t.number, state=TrialState.FAIL)
        measured: dict[str, float] = {}
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if "repeat_of" not in t.user_attrs:
                measured[params_key(full(t.params))] = t.value
                if params_key(full(t.params)) != params_key(full(ctx.default)):
                    ctx.run(full(t.params), "search")  # replays the stored trial (its row, marked resumed)
        if params_key(full(ctx.default)) not in measured:
            score = ctx.base["score"]
            study.add_trial(optuna.trial.create_trial(params=full(ctx.default), distributions=dists,
                                                      value=score, user_attrs={"status": ctx.base["status"]}))
            measured[params_key(full(ctx.default))] = score
        repeats = 0
        while len(measured) < total:
            t = study.ask(dists)
            params = full(t.params)
            key = params_key(params)
            if key in measured:
                t.set_user_attr("repeat_of", key)
                study.tell(t, measured[key])
                repeats += 1
                if repeats >= MAX_REPEATS:
                    return f"the sampler proposed only measured configurations {MAX_REPEATS} times in a row"
                continue
            repeats = 0
            if not ctx.fits(params):
                study.tell(t, state=TrialState.FAIL)
                return ctx.limit()
            try:
                ctx.reporter.update(len(measured), total, f"trial {t.number}: {_label(params)}")
                row = ctx.run(params, "search")
            except BaseException:  # a cancel or a crash: the proposal was not measured
                study.tell(t, state=TrialState.FAIL)
                raise
            t.set_user_attr("status", row["status"])
            t.set_user_attr("trial", row["trial"])
            study.tell(t, row["score"])
            measured[key] = row["score"]
            if row["status"] == "ok" and row["score"] >= max(measured.values()):
                ctx.reporter.write("info", f"tune: {_label(params)} is the best so far", "tune")
        return None
