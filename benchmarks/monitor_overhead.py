"""Measure the CPU cost of trtlab.monitor's sampler thread at 10 Hz (target: under 1% of one core).

    python benchmarks/monitor_overhead.py [--seconds 10] [--interval 0.1] [--source auto|nvml|psutil]

Primary figure: the sampler thread's own CPU time (time.thread_time inside the thread, `Monitor.cpu_seconds`)
over the wall time. Cross-check: the whole process's CPU time while monitoring against an idle baseline of
the same length measured in the same run (the main thread only sleeps in both).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trtlab.monitor import Monitor  # noqa: E402

TARGET = 0.01


def idle_process_cpu(seconds: float) -> float:
    """Process CPU seconds used while the main thread sleeps for `seconds` (no monitor)."""
    c0 = time.process_time()
    time.sleep(seconds)
    return time.process_time() - c0


def monitored_process_cpu(monitor: Monitor, seconds: float) -> tuple[float, float]:
    """Process CPU seconds and wall seconds while `monitor` samples and the main thread sleeps."""
    c0, w0 = time.process_time(), time.perf_counter()
    with monitor:
        time.sleep(seconds)
    return time.process_time() - c0, time.perf_counter() - w0


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print the sampler's share of one core."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to sample (default 10)")
    ap.add_argument("--interval", type=float, default=0.1, help="sampling interval in seconds (default 0.1 = 10 Hz)")
    ap.add_argument("--source", default="auto", choices=["auto", "nvml", "psutil"])
    ap.add_argument("--device", type=int, default=0, help="GPU index for NVML")
    ap.add_argument("--csv", help="also write the samples to this CSV (nvidia-smi columns)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = ap.parse_args(argv)

    m = Monitor(interval=args.interval, device=args.device, source=args.source)
    what = f"{m.gpu_name} (driver {m.driver_version})" if m.source == "nvml" else f"CPU, {os.cpu_count()} logical CPUs"
    print(f"source: {m.source}: {what}")
    if m.note:
        print(f"note: {m.note}")

    baseline = idle_process_cpu(args.seconds)
    process_cpu, wall = monitored_process_cpu(m, args.seconds)
    n = len(m.samples)
    rate = 1.0 / args.interval
    share = m.cpu_seconds / wall
    print(f"samples: {n} in {wall:.2f} s (expected about {int(args.seconds * rate)})")
    print(f"sampler thread CPU: {m.cpu_seconds * 1e3:.1f} ms, {m.cpu_seconds / max(n, 1) * 1e6:.0f} us per sample")
    print(f"process CPU over {args.seconds:g} s: {process_cpu * 1e3:.1f} ms monitored vs {baseline * 1e3:.1f} ms idle "
          f"baseline -> {(process_cpu - baseline) / wall:.2%} of one core")
    if args.csv:
        print(f"samples written to {m.to_csv(args.csv)}")
    print(f"sampler CPU: {share:.2%} of one core at {rate:g} Hz (target < {TARGET:.0%})")
    return 1 if args.strict and share >= TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
