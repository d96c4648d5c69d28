"""Sweeps: benchmarks over the cartesian product of batch, precision, concurrency and backend options.

Each point is one benchmark (engines come from the caller's build function, i.e. the session cache). Every
finished point is appended to `points.jsonl` in the sweep's folder at once, so an interrupted sweep keeps
its points and a resumed one runs only the rest. The knee (where throughput stops growing with batch) is
found per curve and said in words (TensorRT FAQ 6: batching pays only while the device is not saturated).

Units: `throughput_ips` is inferences (batches) per second over all threads; `samples_per_s` is that times
the batch and is what "throughput" means for sweep objectives and knees.
"""
from __future__ import annotations

from .result import SweepResult, load_sweep, markdown_table
from .runner import EngineReuse, error_record, measure_point, point_record, run_sweep
from .spec import POINT_KEYS, SweepSpec, describe_point, point_key
from .store import SweepStore

__all__ = ["POINT_KEYS", "EngineReuse", "SweepResult", "SweepSpec", "SweepStore", "describe_point", "error_record",
           "load_sweep", "markdown_table", "measure_point", "point_key", "point_record", "run_sweep"]
