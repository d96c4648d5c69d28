"""Task accuracy of several engines on the same labelled batches (top-1, top-5 or a user metric).

TensorRT FAQ 14's rule of thumb: INT8 classifiers lose at most about 1% (one point) against FP32;
a precision more than one point below FP32 is flagged.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..batches import iter_batches
from ..feeds import check_feeds

FAQ_MAX_DROP = 1.0  # percentage points


def _batches(data: Any, labels: Any, inputs: Any) -> list[tuple[Mapping[str, np.ndarray], np.ndarray]]:
    if isinstance(data, Mapping):
        labels = [labels]
    batches, _ = iter_batches(data, None, default=None)  # labelled data cannot be random
    data, labels = list(batches), list(labels)
    if not data:
        raise InputError("evaluate: no batches in data; pass an iterable of input dicts (or one dict)")
    if len(data) != len(labels):
        raise InputError(f"evaluate: {len(data)} batches of data but {len(labels)} batches of labels; "
                         f"pass one label array per batch")
    out = []
    for i, (d, lab) in enumerate(zip(data, labels)):
        lab = np.asarray(lab)
        d = check_feeds(inputs, d, f"evaluate: batch {i}")
        n = next((a.shape[0] for a in d.values() if a.ndim), None)
        if lab.ndim != 1 or (n is not None and lab.shape[0] != n):
            raise InputError(f"evaluate: labels of batch {i} have shape {list(lab.shape)}; expected "
                             f"[{n}] (one class index per sample)")
        out.append((d, lab))
    return out


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    """Number of samples whose label is among the k largest logits."""
    logits = np.asarray(logits, dtype=np.float32).reshape(logits.shape[0], -1)
    top = np.argpartition(-logits, kth=min(k, logits.shape[1]) - 1, axis=1)[:, :k]
    return int(np.count_nonzero((top == labels[:, None]).any(axis=1)))


def evaluate(engines: Mapping[str, Any], data: Any, labels: Any, metric: str | Callable[[np.ndarray, np.ndarray], float]
             = "top1", output: str | None = None, reporter: Any = None):
    """DataFrame: one row per engine with the metric (in %, for top-k), samples and the drop against fp32."""
    import pandas as pd
    if isinstance(metric, str) and metric not in ("top1", "top5"):
        raise ConfigError(f"metric {metric!r}: use 'top1', 'top5' or a callable(outputs, labels) -> float")
    if not engines:
        raise ConfigError("evaluate: no engines to evaluate; pass at least one precision")
    batches = _batches(data, labels, next(iter(engines.values())).model.inputs)
    rows = []
    for ei, (name, engine) in enumerate(engines.items()):
        out_name = output or engine.model.outputs[0].name
        correct, samples, collected, labs = 0, 0, [], []
        for bi, (feeds, lab) in enumerate(batches):
            y = engine.run(feeds, [out_name])[out_name]
            samples += lab.shape[0]
            if callable(metric):
                collected.append(np.asarray(y, np.float32))
                labs.append(lab)
            else:
                correct += topk_correct(y, lab, 1 if metric == "top1" else 5)
            if reporter is not None:
                reporter.update(ei * len(batches) + bi + 1, len(engines) * len(batches), f"evaluating {name}")
        value = (float(metric(np.concatenate(collected), np.concatenate(labs))) if callable(metric)
                 else 100.0 * correct / samples)
        rows.append({"precision": name, "metric": metric if isinstance(metric, str) else getattr(metric, "__name__", "metric"),
                     "value": value, "samples": samples})
    frame = pd.DataFrame(rows, columns=["precision", "metric", "value", "samples"])
    base = frame.loc[frame["precision"] == "fp32", "value"]
    ref = float(base.iloc[0]) if len(base) else None
    frame["drop_vs_fp32"] = [ref - v if ref is not None else np.nan for v in frame["value"]]
    frame["flag"] = [bool(ref is not None and isinstance(metric, str) and d > FAQ_MAX_DROP) for d in frame["drop_vs_fp32"]]
    frame["note"] = [f"{d:.2f} points below fp32: more than the ~1% INT8 loss TensorRT FAQ 14 expects on classifiers; "
                     f"check calibration data and preprocessing" if f else "" for d, f in
                     zip(frame["drop_vs_fp32"], frame["flag"])]
    return frame
