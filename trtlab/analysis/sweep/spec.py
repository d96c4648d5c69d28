"""What a sweep runs: its axes and settings (SweepSpec), and the identity of one point."""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from ...errors import ConfigError

POINT_KEYS = ("precision", "batch", "concurrency", "options")


def canonical(value: Any) -> Any:
    """JSON-stable form of an option value (dicts sorted, tuples as lists)."""
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, (list, tuple)) and len(v) == 2 and isinstance(v[0], str) for v in value):
            return {k: canonical(v) for k, v in value}  # a frozen dict from BuildConfig
        return [canonical(v) for v in value]
    return value


def point_key(point: Mapping[str, Any]) -> str:
    """The identity of a sweep point: precision, batch, concurrency and options as canonical JSON."""
    return json.dumps({k: canonical(point[k]) for k in POINT_KEYS}, sort_keys=True)


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep runs: the axes, the per-point benchmark settings and the fixed build arguments."""

    batch: tuple[int, ...] = (1,)
    precision: tuple[str, ...] = ("fp32",)
    concurrency: tuple[int, ...] = (1,)
    options: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    iterations: int | None = None
    duration: float | None = None
    warmup: int = 10
    seed: int = 0
    build: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def make(cls, batch: Iterable[int] | int = (1,), precision: Iterable[str] | str = ("fp32",),
             concurrency: Iterable[int] | int = (1,), options: Mapping[str, Iterable[Any]] | None = None,
             iterations: int | None = None, duration: float | None = None, warmup: int = 10, seed: int = 0,
             build: Mapping[str, Any] | None = None) -> "SweepSpec":
        """Normalise user arguments (scalars become one-element axes) and check them."""
        def axis(v: Any) -> tuple:
            return (v,) if isinstance(v, (int, str)) else tuple(v)
        b, p, c = axis(batch), axis(precision), axis(concurrency)
        if not b or not p or not c:
            raise ConfigError("sweep axes batch, precision and concurrency need at least one value each")
        if any((not isinstance(x, (int, np.integer))) or x < 1 for x in b + c):
            raise ConfigError(f"sweep batch {list(b)} and concurrency {list(c)} must be positive integers")
        opts = []
        for name, values in (options or {}).items():
            vals = tuple(canonical(v) for v in (values if isinstance(values, (list, tuple)) else [values]))
            if not vals:
                raise ConfigError(f"sweep option {name!r} has no values: give a list, e.g. {name}=[...]")
            opts.append((str(name), tuple(_freeze(v) for v in vals)))
        if iterations is None and duration is None:
            iterations = 50
        return cls(tuple(int(x) for x in b), p, tuple(int(x) for x in c), tuple(sorted(opts)), iterations,
                   duration, int(warmup), int(seed), tuple(sorted((k, _freeze(canonical(v))) for k, v in
                                                                  (build or {}).items() if v is not None)))

    def points(self) -> list[dict[str, Any]]:
        """Every point, grouped so points sharing an engine (options, precision, batch) run back to back."""
        names = [n for n, _ in self.options]
        out = []
        for combo in itertools.product(*[v for _, v in self.options]):
            opts = {n: _thaw(v) for n, v in zip(names, combo)}
            for p, b, c in itertools.product(self.precision, self.batch, self.concurrency):
                out.append({"precision": p, "batch": b, "concurrency": c, "options": opts})
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored as spec.json)."""
        return {"batch": list(self.batch), "precision": list(self.precision), "concurrency": list(self.concurrency),
                "options": {n: [_thaw(v) for v in vals] for n, vals in self.options},
                "iterations": self.iterations, "duration": self.duration, "warmup": self.warmup, "seed": self.seed,
                "build": {k: _thaw(v) for k, v in self.build}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SweepSpec":
        """Inverse of to_dict()."""
        return cls.make(d["batch"], d["precision"], d["concurrency"], d.get("options") or {}, d.get("iterations"),
                        d.get("duration"), d.get("warmup", 10), d.get("seed", 0), d.get("build") or {})

    @property
    def id(self) -> str:
        """Stable id: the same spec on the same model resumes into the same folder."""
        return "sweep-" + hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def _freeze(v: Any) -> Any:
    if isinstance(v, Mapping):
        return ("__dict__", tuple(sorted((k, _freeze(x)) for k, x in v.items())))
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def _thaw(v: Any) -> Any:
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "__dict__":
        return {k: _thaw(x) for k, x in v[1]}
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


def describe_point(point: Mapping[str, Any]) -> str:
    """'fp16 batch 8 x2 threads graph_optimization=basic'."""
    opts = " ".join(f"{k}={v}" for k, v in (point.get("options") or {}).items())
    c = int(point["concurrency"])
    return f"{point['precision']} batch {point['batch']}" + (f" x{c} threads" if c > 1 else "") + (
        f" {opts}" if opts else "")
