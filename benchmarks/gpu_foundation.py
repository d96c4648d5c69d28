"""Verify the CUDA provider path on a GPU machine: benchmark and profile zoo resnet50 in FP32 at batch 1 and 32.

Run on the device machine with onnxruntime-gpu on PYTHONPATH:  python benchmarks/gpu_foundation.py --out DIR
Writes summary.json, one profile CSV per batch and the NVML monitor trace; prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trtlab  # noqa: E402
from trtlab.monitor import Monitor  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="gpu-foundation")
    ap.add_argument("--providers", nargs="*", default=["cuda"])
    ap.add_argument("--batches", nargs="*", type=int, default=[1, 32])
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--model", default="resnet50")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        import onnxruntime
        onnxruntime.preload_dlls()
    except Exception as exc:
        print("preload_dlls:", exc)
    env = trtlab.environment()
    print(env)
    s = trtlab.Session(trtlab.zoo.get(args.model), workspace=str(out / "ws"))
    rows = []
    with Monitor(interval=0.05) as mon:
        for b in args.batches:
            eng = s.build(precision="fp32", batch=b, providers=args.providers)
            r = s.benchmark(eng, iterations=args.iterations, monitor=mon)
            p = s.profile_layers(eng, runs=20)
            p.to_frame().to_csv(out / f"profile-b{b}.csv", index=False)
            print(r)
            print(p)
            rows.append({"batch": b, "providers": eng.providers, "device": eng.device, **r.summary(),
                         "profile_layers": len(p.frame), "profile_total_ms": p.total_ms,
                         "profile_providers": sorted(set(p.frame["provider"].dropna())),
                         "top_op_types": p.by_op_type().head(5).to_dict(orient="records")})
    mon.to_csv(out / "monitor.csv")
    summary = {"environment": env, "results": rows, "monitor_source": mon.source,
               "monitor_samples": len(mon.samples), "monitor_cpu_seconds": getattr(mon, "cpu_seconds", None),
               "monitor_note": getattr(mon, "note", None), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(json.dumps([{k: v for k, v in r.items() if k != "top_op_types"} for r in rows], indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
