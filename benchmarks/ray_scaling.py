"""Ray scaling: the same 16-point CPU sweep with 1, 2, 4, 8 Ray workers, speed-up printed per worker count.

Each worker is a Ray actor pinned to its own cores (os.sched_setaffinity) with ONNX Runtime's intra-op threads set
to match (`threads=` in the sweep), and runs points with the very per-point function a sweep on Ray runs
(trtlab.tuning.PointTask -> analysis.sweep.measure_point). The 16 points are 16 batch sizes of one model at fixed
iterations, so every worker count does the same work; the wall time of all 16 is compared with one worker's, run
side by side in this one process. Target: at least 0.8 x N up to 8 workers (16 cores, 2 per worker).

    python benchmarks/ray_scaling.py --workers 1 2 4 8 --cores-per-worker 2      # the 16-core GPU machine
    python benchmarks/ray_scaling.py --workers 1 2 --cores-per-worker 1          # a 2-core machine
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--cores-per-worker", type=int, default=2)
    ap.add_argument("--model", default="resnet18", help="a trtlab.zoo model name")
    ap.add_argument("--points", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=20, help="timed iterations per point")
    ap.add_argument("--repeats", type=int, default=1, help="runs per worker count (the median is printed)")
    args = ap.parse_args(argv)

    import ray
    import trtlab
    import trtlab.zoo as zoo
    from trtlab.analysis.executors import RayExecutor
    from trtlab.analysis.sweep import SweepSpec
    from trtlab.tuning import PointTask, WorkerModel

    k, top = args.cores_per_worker, max(args.workers)
    cores = sorted(os.sched_getaffinity(0))
    if top * k > len(cores):
        print(f"[W] {top} workers x {k} cores need {top * k} cores; this machine has {len(cores)}: the larger counts "
              f"share cores and cannot scale", file=sys.stderr)
    RayExecutor(num_cpus=max(top * k, 1))
    s = trtlab.Session(zoo.get(args.model), workspace=tempfile.mkdtemp(prefix="ray-scaling-"))
    batches = list(range(1, args.points + 1))
    spec = SweepSpec.make(batches, ["fp32"], [1], None, args.iterations, None, 2, 0, {"threads": k})
    task = PointTask(WorkerModel.of(s), spec.to_dict(), {"threads": k})

    @ray.remote(num_cpus=k, max_restarts=0, max_task_retries=0)
    class Worker:
        def __init__(self, slot: int, point_task: PointTask) -> None:
            self.task = point_task  # passed by reference to the object store: the model travels once
            mine = [cores[(slot * k + j) % len(cores)] for j in range(k)]
            os.sched_setaffinity(0, mine)  # this worker's cores; ORT's k intra-op threads stay on them
            self.cores = mine

        def run(self, point):
            return self.task(point)

        def warm(self):  # opens the worker's session and builds every engine once, outside the timing
            session = self.task.model.session()
            return [session.build(precision=p["precision"], batch=p["batch"], threads=k).config.key
                    for p in spec.points()]

    task_ref = ray.put(task)
    rows = []
    for n in args.workers:
        actors = [Worker.remote(i, task_ref) for i in range(n)]
        ray.get([a.warm.remote() for a in actors])
        walls = []
        for _ in range(args.repeats):
            pool = ray.util.ActorPool(actors)
            t0 = time.perf_counter()
            recs = list(pool.map_unordered(lambda a, p: a.run.remote(p), spec.points()))
            walls.append(time.perf_counter() - t0)
            bad = [r for r in recs if r["status"] != "ok"]
            if bad:
                print(f"[E] {len(bad)} point(s) failed: {bad[0]['error']}", file=sys.stderr)
                return 1
        rows.append((n, statistics.median(walls)))
        for a in actors:
            ray.kill(a)
    base = rows[0][1] * rows[0][0]  # one worker's time (scaled when the first count is not 1)
    print(f"{args.points}-point sweep of zoo {args.model}, {args.iterations} iterations a point, {k} core(s) and "
          f"{k} ORT thread(s) per worker, {len(cores)} cores here")
    print(f"{'workers':>8} {'wall_s':>9} {'speed-up':>9} {'per worker':>11} {'target 0.8 x N':>15}")
    for n, wall in rows:
        up = base / wall
        print(f"{n:8d} {wall:9.3f} {up:9.2f} {up / n:11.2f} {'met' if up >= 0.8 * n else 'NOT met':>15}")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
