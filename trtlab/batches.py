"""Input batches from what a user passes as `data`: the one way calibration, comparisons and the lab read it."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from .errors import InputError

Batch = Mapping[str, np.ndarray]


def iter_batches(data: Any, make_random: Callable[[int], Batch] | None,
                 default: int | None = 1) -> tuple[Iterable[Batch], int | None]:
    """(batches, their count or None): from None (`default` random batches), an int N (N random batches,
    `make_random(i)` for i in 0..N-1, made one at a time), a dict (one batch) or an iterable of dicts (consumed
    lazily, never copied). With `default=None`, None is refused; with `make_random=None`, so is an int."""
    what = "a dict of inputs or an iterable of dicts" + (", or an int N for N random batches"
                                                          if make_random is not None else "")
    if data is None:
        if default is None:
            raise InputError(f"no data: pass {what}")
        data = default
    if isinstance(data, bool):
        raise InputError(f"data must be {what}, not {data!r}")
    if isinstance(data, (int, np.integer)):
        if make_random is None:
            raise InputError(f"data={data}: pass {what}")
        if data <= 0:
            raise InputError(f"data={data}: pass a positive number of random batches")
        return (make_random(i) for i in range(int(data))), int(data)
    if isinstance(data, Mapping):
        return [data], 1
    if not isinstance(data, Iterable) or isinstance(data, (str, bytes)):
        raise InputError(f"data must be {what}, not {type(data).__name__}")
    try:
        total = len(data)  # type: ignore[arg-type]
    except TypeError:
        total = None
    return data, total
