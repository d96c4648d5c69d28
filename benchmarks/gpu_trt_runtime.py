"""Figures for the TensorRT runtime's CUDA side on a real GPU, TensorRT stood in for (tests/test_tensorrt_cuda_device.py).

Run on the GPU machine from the repository root:  PYTHONPATH=.:tests python benchmarks/gpu_trt_runtime.py --out DIR
Prints one line per check (pass/fail, bytes, timings) and writes DIR/trt_runtime.json. Everything is measured in
this one run; the timings are host wall-clock medians of the runtime's own calls (run(), a runner's call).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import ml_dtypes  # noqa: E402

import test_tensorrt_cuda_device as dev  # noqa: E402
from trtlab.backends.tensorrt import cuda as trt_cuda  # noqa: E402


BIG = [{"x": [(1, 4), (1 << 22, 4), (1 << 22, 4)]}]  # up to 64 MiB of float32


def median_us(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e6)


def setter_calls(eng) -> int:
    return sum(1 for c in eng._engine().contexts for k in c.calls if k[0] in ("set_input_shape", "set_tensor_address"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="gpu-trt-runtime")
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import cuda.bindings
    figures: dict = {"device": vars(dev.DEVICE) if dev.DEVICE else None,
                     "cuda_bindings": cuda.bindings.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                                                        time.gmtime())}
    print(figures)
    if dev.DEVICE is None:
        print("no GPU visible to cuda-python")
        return 1
    rng = np.random.default_rng(0)

    # 1. buffers and ordering: a 64 MiB identity through run() in each launch mode
    x = rng.standard_normal((1 << 22, 4)).astype(np.float32)  # 64 MiB
    rows = []
    for options in ({"mode": "execute"}, {"mode": "enqueue"}, {"cuda_graph": True}):
        eng = dev.cuda_engine("identity", profiles=BIG, **options)
        ok = bool(np.array_equal(eng.run({"x": x})["y"], x))
        before = setter_calls(eng)
        ms = median_us(lambda: eng.run({"x": x}), 20) / 1e3
        rows.append({"launch": eng.run_mode, "bytes_in_out": 2 * x.nbytes, "correct": ok, "run_ms": round(ms, 3),
                     "GB_per_s_h2d_d2h": round(2 * x.nbytes / ms / 1e6, 2),
                     "setter_calls_in_20_repeat_runs": setter_calls(eng) - before})
        small = {"x": np.ones((8, 4), np.float32)}
        run = eng.runner(small)
        rows[-1]["runner_us_batch8"] = round(median_us(run, args.runs), 2)
        eng.close()
    figures["identity_64MiB"] = rows
    for r in rows:
        print("identity 64 MiB", r)

    # 2. the same run with the stream never synchronised (what the fake turns into stale outputs)
    eng = dev.cuda_engine("identity", profiles=BIG)
    real_sync = trt_cuda.Stream.synchronize
    trt_cuda.Stream.synchronize = lambda self: None
    try:
        y = eng.run({"x": x})["y"]
        pending = dev.cudart.cudaStreamQuery(eng._contexts[0].stream.handle)[0]
        unsynced = {"correct_without_synchronize": bool(np.array_equal(y, x)),
                    "stream_state_at_return": getattr(pending, "name", str(pending))}
    finally:
        trt_cuda.Stream.synchronize = real_sync
    eng.close()
    figures["no_synchronize_pageable"] = unsynced
    print("without synchronize (pageable host memory)", unsynced)

    # 3. profile selection and switch: alternate batch 8 (profile 0) and 16 (profile 1)
    eng = dev.cuda_engine("profiles")
    net = eng._engine().net
    feeds = [{"input": rng.standard_normal((b, 4)).astype(np.float32)} for b in (8, 16)]
    ok = all(np.allclose(eng.run(f)["logits"], np.maximum(f["input"] @ net.w0, 0) @ net.w1, rtol=1e-5)
             for f in feeds * 3)
    k = iter(range(10 ** 9))
    alt = median_us(lambda: eng.run(feeds[next(k) % 2]), args.runs)
    same = median_us(lambda: eng.run(feeds[0]), args.runs)
    switches = sum(1 for c in eng._engine().contexts for s in c.calls if s[0] == "set_optimization_profile_async")
    figures["profiles"] = {"correct": bool(ok), "contexts": len(eng._contexts),
                           "profiles_of_contexts": sorted(c.ctx.active_optimization_profile for c in eng._contexts),
                           "set_optimization_profile_async_calls": switches,
                           "run_us_alternating_profiles": round(alt, 1), "run_us_one_profile": round(same, 1)}
    print("profiles", figures["profiles"])
    eng.close()

    # 4. the output allocator growing a real device buffer (NonZero-like output)
    eng = dev.cuda_engine("nonzero")
    growth, ok = [], True
    for batch in (1, 2, 3, 8, 8, 16, 5, 64, 33, 64):
        xb = np.ones((batch, 4), np.float32)
        xb[::2, 1] = -1
        got = eng.run({"x": xb})["idx"]
        ok &= bool(np.array_equal(got, np.stack(np.nonzero(xb > 0))))
        a = eng._contexts[0].allocator
        growth.append({"count": int(got.shape[1]), "requested": a.requests["idx"], "capacity": a.buffers["idx"].nbytes})
    mallocs = len({g["capacity"] for g in growth})
    kept = a.buffers["idx"].ptr
    refused = a.reallocate_output_async("idx", kept, 1 << 50, 256, None)
    figures["output_allocator"] = {"correct": ok, "growth": growth, "distinct_buffers": mallocs,
                                   "runs": len(growth), "1PiB_request_returns": refused,
                                   "failure": a.failure, "buffer_kept": a.buffers["idx"].ptr == kept,
                                   "run_us_batch64": round(median_us(lambda: eng.run({"x": xb}), args.runs), 1)}
    print("output allocator", figures["output_allocator"])
    eng.close()

    # 5. bf16 I/O: 2-byte values up and down, bit-exact against ml_dtypes
    eng = dev.cuda_engine("bf16", profiles=[{"x": [(1, 4), (1 << 18, 4), (1 << 18, 4)]}])
    xb = rng.standard_normal((1 << 18, 4)).astype(np.float32)
    y = eng.run({"x": xb})["y"]
    want = (xb.astype(ml_dtypes.bfloat16).astype(np.float32) * 2).astype(ml_dtypes.bfloat16)
    figures["bf16"] = {"elements": xb.size, "device_bytes_in": eng._contexts[0].buffers["x"].nbytes,
                       "device_bytes_out": eng._contexts[0].buffers["y"].nbytes, "dtype_out": str(y.dtype),
                       "bit_exact": bool(np.array_equal(y.view(np.uint16), want.view(np.uint16)))}
    print("bf16", figures["bf16"])
    eng.close()

    # 6. a shape tensor in host memory
    eng = dev.cuda_engine("reshape")
    data = np.arange(24, dtype=np.float32)
    res = [bool(np.array_equal(eng.run({"data": data, "shape": np.array(s, np.int32)})["y"], data.reshape(s)))
           for s in ((4, 6), (12, 2), (4, 6))]
    c = eng._contexts[0]
    figures["shape_tensor"] = {"correct": all(res), "host_address": c.addresses["shape"] == c.host["shape"].ctypes.data,
                               "device_buffer": "shape" in c.buffers}
    print("shape tensor", figures["shape_tensor"])
    eng.close()

    (out / "trt_runtime.json").write_text(json.dumps(figures, indent=1, default=str))
    checks = [r["correct"] for r in rows] + [figures["profiles"]["correct"], figures["output_allocator"]["correct"],
                                             figures["bf16"]["bit_exact"], figures["shape_tensor"]["correct"]]
    print(f"{sum(checks)} passed, {len(checks) - sum(checks)} failed")
    return 0 if all(checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
