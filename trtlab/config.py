"""BuildConfig: the frozen, hashable description of one engine build, the key of the engine cache."""
from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

from .errors import ConfigError

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8", "int8+fp16")
# options of the precision transform, accepted whatever the backend (they change the variant every backend builds)
PRECISION_OPTIONS: dict[str, Any] = {"keep_io_types": [True, False], "per_channel": [True, False]}

_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 1000**2,
               "mib": 1 << 20, "g": 1 << 30, "gb": 1000**3, "gib": 1 << 30}


def parse_size(value: int | str) -> int:
    """Parse a memory size such as 1073741824, "1GiB", "512MiB" or "2g" into bytes."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ConfigError(f"cannot read memory size {value!r}: write bytes or a unit, e.g. '1GiB' or '512MiB'")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


@dataclass(frozen=True)
class ShapeRange:
    """min/opt/max shapes of one input: one optimization profile entry."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @classmethod
    def of(cls, value: Any) -> "ShapeRange":
        """Make a range from a shape (fixed) or a (min, opt, max) triple of shapes."""
        if isinstance(value, ShapeRange):
            return value
        value = tuple(value)
        if value and all(isinstance(v, (tuple, list)) for v in value):
            if len(value) != 3:
                raise ConfigError(f"a shape range needs (min, opt, max) shapes, got {len(value)} shapes")
            lo, opt, hi = (tuple(int(d) for d in v) for v in value)
        else:
            lo = opt = hi = tuple(int(d) for d in value)
        if any(d <= 0 for d in lo + opt + hi):
            raise ConfigError(f"shape sizes must be positive, got {lo if lo == hi else (lo, opt, hi)}")
        if not (len(lo) == len(opt) == len(hi)):
            raise ConfigError(f"min/opt/max shapes differ in rank: {lo}, {opt}, {hi}")
        if any(a > b or b > c for a, b, c in zip(lo, opt, hi)):
            raise ConfigError(f"shape range must satisfy min <= opt <= max in every dim: {lo}, {opt}, {hi}")
        return cls(lo, opt, hi)


def _freeze(value: Any) -> Any:
    """Turn dicts and lists into sorted tuples so the config stays hashable."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_freeze(v) for v in value]
        return tuple(sorted(items)) if isinstance(value, (set, frozenset)) else tuple(items)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides what an engine is; equal configs give the same engine."""

    backend: str = "onnxruntime"
    precision: str = "fp32"
    batch: tuple[int, int, int] | None = None
    shapes: tuple[tuple[str, ShapeRange], ...] = ()
    dims: tuple[tuple[str, int], ...] = ()
    outputs: tuple[str, ...] = ()
    fp32_layers: tuple[str, ...] = ()
    calibration: str | None = None
    providers: tuple[str, ...] = ()
    threads: int | None = None
    inter_op_threads: int | None = None
    options: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")

    @classmethod
    def make(cls, backend: str = "onnxruntime", precision: str = "fp32", batch: int | Iterable[int] | None = None,
             shapes: Mapping[str, Any] | None = None, dims: Mapping[str, int] | None = None,
             outputs: Iterable[str] | str | None = None, fp32_layers: Iterable[str] = (),
             calibration: str | None = None, providers: Iterable[str] | str | None = None,
             threads: int | None = None, inter_op_threads: int | None = None, **options: Any) -> "BuildConfig":
        """Normalise user arguments (ints, lists, dicts) into a hashable BuildConfig."""
        if batch is not None:
            b = (int(batch),) * 3 if isinstance(batch, int) else tuple(int(x) for x in batch)
            if len(b) != 3 or not (0 < b[0] <= b[1] <= b[2]):
                raise ConfigError(f"batch must be an int or (min, opt, max) with 0 < min <= opt <= max, got {batch!r}")
            batch = b
        for label, n in (("threads", threads), ("inter_op_threads", inter_op_threads)):
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
                raise ConfigError(f"{label} must be a positive number of threads (or None for the default), got {n!r}")
        if isinstance(outputs, str):
            outputs = ("*",) if outputs == "all" else (outputs,)
        if isinstance(providers, str):
            providers = (providers,)
        shape_items = tuple(sorted((k, ShapeRange.of(v)) for k, v in (shapes or {}).items()))
        return cls(backend=backend, precision=precision, batch=batch, shapes=shape_items,
                   dims=tuple(sorted((str(k), int(v)) for k, v in (dims or {}).items())),
                   outputs=tuple(outputs or ()), fp32_layers=tuple(sorted(set(fp32_layers))),
                   calibration=calibration, providers=tuple(providers or ()), threads=threads,
                   inter_op_threads=inter_op_threads,
                   options=tuple(sorted((k, _freeze(v)) for k, v in options.items() if v is not None)))

    def option(self, name: str, default: Any = None) -> Any:
        """One backend-specific option (workspace, opt_level, timing_cache, ...) or the default."""
        return dict(self.options).get(name, default)

    def replace(self, **changes: Any) -> "BuildConfig":
        """A copy with some fields changed; backend options go through `options=`."""
        data = self.to_dict()
        opts = data.pop("options")
        opts.update(changes.pop("options", {}))
        data.update(changes)
        return BuildConfig.make(**{k: v for k, v in data.items()}, **opts)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (the form stored in the workspace)."""
        d = asdict(self)
        d["batch"] = list(self.batch) if self.batch else None
        d["shapes"] = {k: [list(r.min), list(r.opt), list(r.max)] for k, r in self.shapes}
        d["dims"] = dict(self.dims)
        d["options"] = {k: _jsonable(v) for k, v in self.options}
        d["outputs"] = ["all"] if self.outputs == ("*",) else list(self.outputs)
        for k in ("fp32_layers", "providers"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BuildConfig":
        """Inverse of to_dict()."""
        data = dict(data)
        opts = data.pop("options", {}) or {}
        outputs = data.pop("outputs", None)
        if outputs == ["all"]:
            outputs = "all"
        return cls.make(outputs=outputs, **data, **opts)

    @property
    def key(self) -> str:
        """Short stable hash naming this config in the workspace."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """One readable line, e.g. 'onnxruntime fp16 batch=8 pins=2'."""
        parts = [self.backend, self.precision]
        if self.batch:
            parts.append(f"batch={self.batch[1]}" if len(set(self.batch)) == 1 else f"batch={self.batch}")
        if self.fp32_layers:
            parts.append(f"fp32_layers={len(self.fp32_layers)}")
        if self.outputs:
            parts.append("outputs=all" if self.outputs == ("*",) else f"outputs={len(self.outputs)}")
        parts += [f"{k}={v}" for k, v in self.options]
        return " ".join(parts)


def build_arguments() -> tuple[str, ...]:
    """Names Session.build takes besides backend options (the BuildConfig fields, and background)."""
    params = inspect.signature(BuildConfig.make).parameters
    return tuple(n for n, p in params.items() if p.kind is not p.VAR_KEYWORD and n != "backend") + ("background",)


def _same_choice(value: Any, choice: Any) -> bool:
    if isinstance(value, bool) != isinstance(choice, bool):
        return False
    return value == choice or str(value).lower() == str(choice).lower()


def check_options(backend: Any, options: Mapping[str, Any]) -> None:
    """Refuse keyword arguments that `backend` does not declare in `Backend.options()` (or the precision options),
    naming close matches, and values outside an option's declared choices.

    `backend` is a Backend: `.name`, `.options()` (name -> list of choices, dict of nested options, or a
    free value's default) and `.option_value(name, value)` (the value, or list of values, to check)."""
    declared = {**PRECISION_OPTIONS, **backend.options()}
    arguments = build_arguments()
    for name, value in options.items():
        if name in arguments:
            continue
        if name not in declared:
            close = difflib.get_close_matches(name, list(declared) + list(arguments), n=3, cutoff=0.6)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            from .errors import UnknownOptionError
            raise UnknownOptionError(
                f"unknown build option {name!r} for backend {backend.name}{hint}. Its options are "
                f"{', '.join(sorted(set(declared) - set(arguments))) or 'none'}; build() also takes "
                f"{', '.join(arguments)}")
        if value is None:
            continue
        spec = declared[name]
        if isinstance(spec, Mapping):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{backend.name} option {name} takes a dict (of {', '.join(spec)}), got {value!r}")
            for sub, v in value.items():
                if isinstance(spec.get(sub), (list, tuple)) and not any(_same_choice(v, c) for c in spec[sub]):
                    raise ConfigError(f"{backend.name} option {name}[{sub!r}]={v!r} is not valid: choose from "
                                      f"{', '.join(map(repr, spec[sub]))}")
        elif isinstance(spec, (list, tuple)):
            canon = backend.option_value(name, value)
            for v in canon if isinstance(canon, list) else [canon]:
                if not any(_same_choice(v, c) for c in spec):
                    raise ConfigError(f"{backend.name} option {name}={v!r} is not valid: choose from "
                                      f"{', '.join(map(repr, spec))}")
