"""Tune's search strategies against an exhaustive grid on the same space, side by side in one run.

Space (CPU, ONNX Runtime, a zoo model): precision x batch x graph_optimization x threads, every configuration
of it measured once (the grid). Timing noise would otherwise decide which strategy "wins": so each
configuration's score (samples/s) is measured once, cached, and the greedy and Optuna searches are run on
those cached measurements, so all three see the same landscape and differ only in which configurations they
choose to look at. Printed per strategy: the best score reached, its ratio to the grid's best, the trials it
ran and the trials it needed to come within 5 % of the grid's best.
Target: Optuna within 5 % of the grid's best in at most a third of the grid's trials.
    python benchmarks/tune_search.py [--model mlp] [--trial-s 0.15] [--seeds 5]
"""
from __future__ import annotations

import argparse
import itertools
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trtlab  # noqa: E402
from trtlab.analysis.tune import choices, make_trial, params_key, run_tune, search_space  # noqa: E402
from trtlab.analysis.tune_optuna import OptunaSearch  # noqa: E402
from trtlab.errors import TrtlabError  # noqa: E402
from trtlab.events import Reporter  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--trial-s", type=float, default=0.15)
    ap.add_argument("--seeds", type=int, default=5)
    a = ap.parse_args()
    logging.getLogger("trtlab").setLevel(logging.ERROR)  # fp16-on-CPU notes, once per build: the grid builds many
    s = trtlab.Session(trtlab.zoo.get(a.model), workspace=tempfile.mkdtemp(prefix="tune-search-"))
    batches = [1, 8, 32, 128]
    space = search_space(s.backend.options(), ["fp32", "fp16"], False, batches, cpu_count=4,
                         include=["precision", "batch", "graph_optimization", "threads"])
    default = {"batch": batches[0]}
    values = choices(space, default)
    grid = [dict(zip(values, combo)) for combo in itertools.product(*values.values())]
    trial = make_trial(lambda args: s.build(**args), {"batch": batches[0]}, None, a.trial_s, 2,
                       release=s._engine_cache.release)  # as tune does: engines are not kept
    print(f"space: {', '.join(f'{k} {v}' for k, v in values.items())}: {len(grid)} configurations")

    cache: dict[str, object] = {}
    t0 = time.perf_counter()
    for params in grid:  # the grid: every configuration measured once
        try:
            cache[params_key(params)] = trial(params, Reporter("grid"))
        except TrtlabError as exc:
            cache[params_key(params)] = exc
    print(f"grid measured in {time.perf_counter() - t0:.0f} s")
    scores = {k: r.samples_per_s for k, r in cache.items() if not isinstance(r, Exception)}
    best = max(scores.values())
    top = sorted(scores.items(), key=lambda kv: -kv[1])[:4]
    print("grid's top configurations: " + "; ".join(f"{k} {v:,.0f}" for k, v in top))

    def cached(params, reporter):
        r = cache[params_key(params)]
        if isinstance(r, Exception):
            raise r
        return r

    def row(name: str, res) -> tuple:
        seq = [t["score"] for t in res.trials if t["phase"] == "search"]
        reach = next((i + 1 for i, v in enumerate(seq) if v >= 0.95 * best), None)
        return name, max(seq), max(seq) / best, len(seq), reach

    rows = [("grid", best, 1.0, len(grid), len(grid))]
    rows.append(row("greedy", run_tune(space, cached, Reporter("greedy"), budget_s=1e9, default=default,
                                       confirm=False)))
    for seed in range(a.seeds):
        rows.append(row(f"optuna seed {seed}", run_tune(space, cached, Reporter("optuna"), budget_s=1e9,
                                                       default=default, confirm=False,
                                                       search=OptunaSearch(seed=seed),
                                                       max_trials=len(grid) // 3)))
    print(f"{'strategy':<16}{'best samples/s':>16}{'/ grid best':>13}{'trials':>8}{'trials to 95%':>15}")
    for name, b, r, n, reach in rows:
        print(f"{name:<16}{b:>16,.1f}{r:>13.3f}{n:>8}{reach if reach else '-':>15}")
    opt = [r for r in rows if r[0].startswith("optuna")]
    hit = sum(1 for r in opt if r[4] is not None and r[4] <= len(grid) / 3)
    print(f"target (optuna within 5 % of the grid's best in <= {len(grid) // 3} trials, a third of the grid): "
          f"{hit} of {len(opt)} seeds")


if __name__ == "__main__":
    main()
