"""The calibration driver: run a model over batches of data and collect each activation's amax."""
from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from ...batches import iter_batches
from ...errors import CalibrationError, CancelledError, ConfigError, InputError, ModelError, TrtlabError
from ...feeds import check_feeds
from ...model import Model, TensorInfo
from ..bodies import expose
from ..graph import (FLOAT_TYPES, QMAX, all_tensor_names, as_proto, elem_types, infer_types, model_elem_types,
                     quantizable_tensors)
from .cache import CalibrationTable
from .calibrators import HistogramCalibrator
from .clipping import CalibrationStatistics, calibration_warnings
from .thresholds import ALGORITHMS, METHODS

# The method calibrate() uses unless told otherwise: on six real corpus models entropy (TensorRT's default) gave
# 3.9x to 6.4x the int8 output error of the best method; auto (minmax or percentile per tensor, by histogram MSE)
# stayed within 1.43x of the best on every model, minmax within 1.76x (docs/calibration.md has the figures).
DEFAULT_METHOD = "auto"


@dataclass(frozen=True)
class _InputSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...] | None  # None: rank unknown; str/None entries: dynamic

    def describe(self) -> str:
        if self.shape is None:
            return f"{self.dtype}"
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype} [{dims}]"


def _input_specs(model: onnx.ModelProto) -> list[_InputSpec]:
    constants = {init.name for init in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in constants:
            continue
        tensor_type = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            raise ModelError(f"model input {vi.name!r} is not a tensor; calibration feeds tensors only")
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        except Exception as exc:
            raise ModelError(
                f"model input {vi.name!r} has ONNX element type {tensor_type.elem_type}, which has "
                "no numpy equivalent for calibration data"
            ) from exc
        shape = None
        if tensor_type.HasField("shape"):
            shape = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in tensor_type.shape.dim
            )
        specs.append(_InputSpec(vi.name, dtype, shape))
    return specs


# --- data ---------------------------------------------------------------------------------


def synthetic_batches(
    model: onnx.ModelProto,
    n: int,
    *,
    batch: int = 1,
    seed: int = 0,
    dynamic_dim: int = 16,
) -> Iterator[dict[str, np.ndarray]]:
    """`n` seeded random batches for `model`'s inputs, made one at a time.

    Float inputs are standard normal, integer inputs uniform in the model's declared range (default
    [0, 100): token or class ids), bool inputs random. A dynamic first dimension becomes `batch`,
    other dynamic dimensions `dynamic_dim`. The same seed gives the same batches.
    """
    proto = as_proto(model)
    specs = _input_specs(proto)
    shapes = {}
    for spec in specs:
        if spec.shape is None:
            raise InputError(
                f"model input {spec.name!r} has no shape in the model, so synthetic data cannot be "
                "made; pass your own batches (an iterable of dicts name -> array)"
            )
        if spec.dtype.kind not in "fiub":
            raise InputError(
                f"model input {spec.name!r} has dtype {spec.dtype}, for which trtlab makes no "
                "synthetic data; pass your own batches"
            )
        shapes[spec.name] = tuple(
            d if isinstance(d, int) and d > 0 else (batch if axis == 0 else dynamic_dim)
            for axis, d in enumerate(spec.shape)
        )
    source = Model(proto)  # the one random-feed generator, continued over the n batches
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield source.random_inputs(shapes, seed=rng)


def _check_batch(batch: Any, index: int, specs: list[_InputSpec]) -> dict[str, np.ndarray]:
    """The batch as {name: array of the model's dtype}, or InputError naming what is wrong (trtlab.feeds)."""
    return check_feeds([TensorInfo(s.name, s.shape, s.dtype.name) for s in specs], batch,
                       f"calibration batch {index}")


# --- the driver ---------------------------------------------------------------------------


def _select_tensors(inferred: onnx.ModelProto, tensors: Iterable[str] | None) -> list[str]:
    if tensors is None:
        return quantizable_tensors(inferred)
    types = model_elem_types(inferred)
    known = all_tensor_names(inferred)
    chosen = []
    for name in tensors:
        if name not in known:
            raise ConfigError(f"tensor {name!r} is not in the model; check the name (names are exact)")
        if types.get(name) not in FLOAT_TYPES:
            raise ConfigError(
                f"tensor {name!r} is not a float tensor (ONNX type {types.get(name)}); only float "
                "activations are calibrated"
            )
        if name not in chosen:
            chosen.append(name)
    return chosen


Run = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]
# names of the model's tensors to return -> a context holding run(feed) -> {name: array}
RunnerFactory = Callable[[list[str]], AbstractContextManager[Run]]


def onnxruntime_runner(model: onnx.ModelProto, providers: list[str] | None = None) -> RunnerFactory:
    """The runner calibrate() uses on its own: an ONNX Runtime session of a copy of `model` whose outputs include
    the tensors asked for. A Session passes its own runner instead (its backend, its providers)."""

    @contextmanager
    def open_runner(outputs: list[str]) -> Iterator[Run]:
        import onnxruntime as ort

        augmented, _ = expose(model, outputs)  # tensors inside If/Loop/Scan bodies become outputs of their own
        existing = {o.name for o in augmented.graph.output}
        types = elem_types(augmented.graph)
        for name in outputs:
            if name not in existing:
                augmented.graph.output.append(onnx.helper.make_tensor_value_info(name, types[name], None))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                augmented.SerializeToString(), options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelError(f"ONNX Runtime cannot load the model for calibration: {exc}") from exc
        yield lambda feed: dict(zip(outputs, session.run(outputs, dict(feed))))

    return open_runner


def _batches(model: onnx.ModelProto, data: Any) -> tuple[Iterable[Any], int | None]:
    if isinstance(data, bool) or data is None:
        raise CalibrationError(
            f"calibration data must be an iterable of dicts name -> array or an int (synthetic "
            f"batches), got {data!r}"
        )
    if isinstance(data, (int, np.integer)) and data <= 0:
        raise CalibrationError(
            f"no calibration batches: asked for {data} synthetic batches; pass a positive int"
        )
    synthetic = synthetic_batches(model, int(data)) if isinstance(data, (int, np.integer)) else None
    return iter_batches(data, lambda _i: next(synthetic))


def _check_cancel(cancel: threading.Event | None, done: int) -> None:
    if cancel is not None and cancel.is_set():
        raise CancelledError(f"calibration cancelled after {done} batch(es); no table was produced")


def calibrate(
    model: onnx.ModelProto | str | os.PathLike,
    data: Iterable[Mapping[str, np.ndarray]] | int,
    method: str = DEFAULT_METHOD,
    tensors: Iterable[str] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    cancel: threading.Event | None = None,
    num_batches: int | None = None,
    percentile: float = 99.99,
    providers: list[str] | None = None,
    *,
    dtype: str = "int8",
    version: str | None = None,
    runner: RunnerFactory | None = None,
) -> CalibrationTable:
    """Run `model` over `data` and return each activation's amax.

    `data` is an iterable of {input name: array} dicts (consumed one batch at a time) or an
    int N for N seeded synthetic batches. `tensors` defaults to quantizable_tensors(model).
    `progress(done, total)` is called after each batch (total None when unknown); setting
    `cancel` stops before the next batch with CancelledError. `runner(tensor names)` opens what
    runs the model (a context holding run(feed) -> {name: array}); by default ONNX Runtime with
    `providers` (onnxruntime_runner). A Session passes one that runs on its own backend.
    """
    if method not in ALGORITHMS:
        raise ConfigError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
    if dtype not in QMAX:
        raise ConfigError(f"calibration dtype {dtype!r} is not supported; use 'int8' or 'fp8'")
    model = as_proto(model)
    inferred = infer_types(model)
    names = _select_tensors(inferred, tensors)
    if not names:
        raise CalibrationError(
            "the model has no float activations feeding Conv, ConvTranspose, Gemm, MatMul or "
            "Add, so there is nothing to calibrate; pass tensors=[...] to choose some"
        )
    specs = _input_specs(inferred)
    input_names = {s.name for s in specs}
    run_outputs = [n for n in names if n not in input_names]
    open_runner = runner if runner is not None else onnxruntime_runner(inferred, providers)
    calibrator = HistogramCalibrator(method=method, percentile=percentile)
    batches, total = _batches(model, data)
    if num_batches is not None:
        if num_batches <= 0:
            raise ConfigError(f"num_batches must be a positive int or None, got {num_batches}")
        batches = itertools.islice(batches, num_batches)
        total = num_batches if total is None else min(total, num_batches)

    done = samples = 0
    observed: set[str] = set()
    with open_runner(run_outputs) if run_outputs else nullcontext(None) as run:
        if progress is not None:
            progress(0, total)
        for batch in batches:
            _check_cancel(cancel, done)
            feed = _check_batch(batch, done, specs)
            samples += _batch_samples(feed)
            values = dict.fromkeys(names)
            if run is not None:
                try:
                    outputs = run(feed)
                except TrtlabError as exc:
                    raise CalibrationError(f"calibration batch {done}: {exc}") from exc
                except Exception as exc:
                    raise CalibrationError(f"the model failed on calibration batch {done}: {exc}") from exc
                values.update((n, outputs[n]) for n in run_outputs)
                del outputs
            values.update((n, feed[n]) for n in names if n in feed)
            try:
                for name in names:
                    if np.size(values[name]) == 0:  # a body tensor of an If branch this batch did not take
                        continue
                    calibrator.collect(name, values[name])
                    observed.add(name)
            except CalibrationError as exc:
                raise CalibrationError(f"calibration batch {done}: {exc}") from exc
            del values, feed
            done += 1
            if progress is not None:
                progress(done, total)
    _check_cancel(cancel, done)
    if done == 0:
        raise CalibrationError(
            "no calibration batches: the data iterable yielded nothing; pass a non-empty "
            "iterable of dicts name -> array, or an int N for N synthetic batches"
        )
    # a tensor no batch computed (inside an If branch the data never takes) gets no range: quantize() leaves it
    # float and says so, rather than quantizing it with a made-up scale
    stats = CalibrationStatistics({name: calibrator.snapshot(name) for name in names if name in observed},
                                  batches=done,
                                  samples=samples, percentile=percentile, qmax=QMAX[dtype])
    amax, _ = stats.choose(method)
    found = calibration_warnings(stats, method, amax)
    return CalibrationTable(amax, algorithm=ALGORITHMS[method], version=version, dtype=dtype, method=method,
                            statistics=stats, warnings=found)


def _batch_samples(feed: Mapping[str, np.ndarray]) -> int:
    """How many samples a batch holds: axis 0 of its first input that has one (1 when every input is 0-d)."""
    for array in feed.values():
        if np.ndim(array) >= 1:
            return int(np.shape(array)[0])
    return 1
