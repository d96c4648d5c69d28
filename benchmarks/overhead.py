"""Harness overhead: Session.benchmark median latency vs a plain InferenceSession.run loop, side by side.

Target: ratio <= 1.03 on zoo resnet50 at batch 8 and on a tiny model at batch 1. The two loops are interleaved
in rounds (A B, B A, ...) so that machine noise hits both alike; the median of the per-round ratios is printed.
    python benchmarks/overhead.py [--rounds 5] [--iterations 40]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import onnxruntime as ort  # noqa: E402

import trtlab  # noqa: E402


def plain_loop(sess: "ort.InferenceSession", feeds: dict, iterations: int) -> np.ndarray:
    """What a user writes by hand: time sess.run(None, feeds) with perf_counter."""
    out = np.empty(iterations)
    for i in range(iterations):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        out[i] = time.perf_counter() - t0
    return out * 1e3


def measure(name: str, model, batch: int, rounds: int, iterations: int, workspace: str) -> float:
    s = trtlab.Session(model, workspace=workspace)
    eng = s.build(batch=batch, providers=["cpu"])
    feeds = eng.random_feeds(seed=0)
    # the plain loop gets its own session with the same options, as a user would create it
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(eng.variant.model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    for _ in range(5):
        sess.run(None, feeds)
    plain, harness = [], []
    for k in range(rounds):
        # alternate which loop goes first, so neither always runs on a warmer (or busier) machine
        order = ("plain", "harness") if k % 2 == 0 else ("harness", "plain")
        for which in order:
            if which == "plain":
                plain.append(np.median(plain_loop(sess, feeds, iterations)))
            else:
                harness.append(np.median(s.benchmark(eng, iterations=iterations, warmup=2, data=feeds).latencies_ms))
    p, h = float(np.median(plain)), float(np.median(harness))
    ratio = float(np.median(np.asarray(harness) / np.asarray(plain)))  # paired per round: robust to drift
    print(f"{name:28s} batch {batch:3d}: plain run() median {p:9.4f} ms | Session.benchmark median {h:9.4f} ms | "
          f"paired ratio {ratio:.3f} over {rounds} rounds ({'ok' if ratio <= 1.03 else 'OVER'} target 1.03)")
    return ratio


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--tiny-rounds", type=int, default=30)
    ap.add_argument("--tiny-iterations", type=int, default=500)
    ap.add_argument("--workspace", default=".trtlab-bench")
    args = ap.parse_args()
    r1 = measure("zoo resnet50", trtlab.zoo.resnet50(), 8, args.rounds, args.iterations, args.workspace)
    r2 = measure("tiny (zoo mlp)", trtlab.zoo.mlp(), 1, args.tiny_rounds, args.tiny_iterations, args.workspace)
    print(f"worst ratio {max(r1, r2):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
