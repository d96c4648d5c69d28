"""Where the points of a sweep (or the trials of a tune) run: in this process ("inline", the default) or as
Ray tasks ("ray"), one task per point, on a local cluster or an existing one.

An executor only places work: it calls the same per-point function either way and hands each outcome back
to the caller, in the driver process, as soon as it is done (Ray: `ray.wait`), so the caller stores it
through the one workspace writer exactly as in-process. Ray is imported only when a Ray executor is made.

Faults: a TrtlabError raised by the function is passed back and re-raised in the driver (the caller records
the point as failed, as in-process). A worker that dies mid-task (killed, out of memory, node lost) yields
`Lost` for that item: nothing is recorded for it and resume runs it again; Ray itself never re-runs a task
(max_retries=0), so no point is measured twice behind the caller's back.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

from ..errors import ConfigError, TrtlabError

EXECUTORS = ("inline", "ray")
# a local cluster on a busy machine can take longer than Ray's own 15 s for its agents to come up
_LOCAL_START_WAIT_S = "120"


@dataclass(frozen=True)
class Lost:
    """An item whose worker died before returning: nothing was measured that can be kept."""

    error: str


@dataclass(frozen=True)
class _Raised:
    """A TrtlabError raised in a worker, carried back as a value so the driver re-raises the very exception."""

    exc: TrtlabError


Resources = Callable[[Any], Mapping[str, int]]


class InlineExecutor:
    """Runs each item in this process, one after another (the default)."""

    name = "inline"

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], resources: Resources | None = None,
            poll: Callable[[], None] | None = None) -> Iterator[tuple[Any, Any]]:
        """(item, fn(item)) for each item, lazily: the caller may stop pulling (budget, cancel) at any time."""
        for item in items:
            yield item, fn(item)

    def close(self) -> None:
        """Nothing to release."""


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    """The body of every Ray task: the caller's function on one item, a TrtlabError returned as a value."""
    try:
        return fn(item)
    except TrtlabError as exc:
        return _Raised(exc)


class RayExecutor:
    """Runs each item as a Ray task with `max_retries=0`, at most as many at once as the cluster has room for.

    `address=None` does what `ray.init()` does: joins the cluster this machine runs (RAY_ADDRESS, or one started
    with `ray start`), else starts a local one with `num_cpus` CPUs (all by default); "local" always starts a new
    local one; an address ("auto", "ray://host:10001", "host:6379") joins that cluster. The local cluster is
    left running for later sweeps in this process (ray.shutdown() stops it)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("executor='ray' needs Ray: pip install 'trtlab[ray]'") from None
        self._ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False,
                                      "include_dashboard": False}
            local = address in (None, "local")
            if address is not None:
                kwargs["address"] = address
            if local:
                os.environ.setdefault("RAY_raylet_start_wait_time_s", _LOCAL_START_WAIT_S)
                os.environ.setdefault("RAY_agent_register_timeout_ms", _LOCAL_START_WAIT_S + "000")
                if num_cpus is not None:
                    kwargs["num_cpus"] = int(num_cpus)
            # a local start on a loaded machine can time out waiting for Ray's own agents: try it twice
            for attempt in range(2 if local else 1):
                try:
                    ray.init(**kwargs)
                    break
                except Exception as exc:  # Ray raises a bare Exception when its node does not come up
                    if attempt == 0 and local:
                        continue
                    what, fix = ("start a local Ray cluster", "pass address='local' for a new one (a cluster "
                                 "this machine runs is joined otherwise), or retry on a less loaded machine") \
                        if local else (f"join the Ray cluster at {address!r}", "check the address, or pass "
                                       "address='local' for a local cluster")
                    why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    raise ConfigError(f"cannot {what} ({why}): {fix}") from None
        self._remote = ray.remote(max_retries=0)(_call)

    @property
    def gpus(self) -> int:
        """GPUs in the cluster (whole GPUs; a point on a GPU host takes one)."""
        return int(self._ray.cluster_resources().get("GPU", 0))

    def capacity(self, need: Mapping[str, int]) -> int:
        """How many tasks needing `need` fit in the cluster at once (at least 1)."""
        have = self._ray.cluster_resources()
        fits = [int(have.get(_RAY_NAMES[k], 0) // v) for k, v in need.items() if v > 0]
        return max(1, min(fits) if fits else 1)

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], resources: Resources | None = None,
            poll: Callable[[], None] | None = None) -> Iterator[tuple[Any, Any]]:
        """(item, outcome) as each task finishes (not in order); a new task starts when one finishes, so the
        caller's budget and cancel checks between outcomes stop further submissions. The outcome is fn's value,
        or Lost when its worker died; a TrtlabError raised in the worker is raised here. `poll()` is called
        every half second while tasks run (it raises to stop them: a cancel)."""
        ray = self._ray
        fn_ref = ray.put(fn)  # once: the model bytes it carries travel to each node once, not once per task
        source = iter(items)
        pending: dict[Any, Any] = {}
        exhausted = False
        try:
            while True:
                while not exhausted:
                    item = next(source, _END)
                    if item is _END:
                        exhausted = True
                        break
                    need = dict(resources(item)) if resources is not None else {"num_cpus": 1}
                    pending[self._remote.options(**need).remote(fn_ref, item)] = item
                    if len(pending) >= self.capacity(need):
                        break
                if not pending:
                    return
                ready: list[Any] = []
                while not ready:
                    ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                    if not ready and poll is not None:
                        poll()
                ref = ready[0]
                item = pending.pop(ref)
                try:
                    value = ray.get(ref)
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                        ray.exceptions.ObjectLostError, ray.exceptions.OutOfMemoryError,
                        ray.exceptions.LocalRayletDiedError, ray.exceptions.TaskCancelledError) as exc:
                    value = Lost(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                if isinstance(value, _Raised):
                    raise value.exc
                yield item, value
        finally:
            for ref in pending:  # the caller stopped (budget, cancel, an error): stop what still runs
                ray.cancel(ref, force=True)

    def close(self) -> None:
        """The cluster stays up for later work in this process."""


_END = object()
_RAY_NAMES = {"num_cpus": "CPU", "num_gpus": "GPU"}


def make_executor(executor: str | Any = "inline", address: str | None = None,
                  num_cpus: int | None = None) -> Any:
    """The executor named ("inline" or "ray"), or `executor` itself when it is one already."""
    if not isinstance(executor, str):
        return executor
    if executor == "inline":
        if address is not None:
            raise ConfigError("address= joins a Ray cluster: pass executor='ray' with it")
        return InlineExecutor()
    if executor == "ray":
        return RayExecutor(address, num_cpus)
    raise ConfigError(f"unknown executor {executor!r}: use one of {', '.join(EXECUTORS)}")


def point_resources(gpu: bool, threads: int | None, concurrency: int = 1) -> dict[str, int]:
    """What one point reserves: a whole GPU on a GPU host (builds time tactics on it too, so never a fraction),
    else one CPU per thread it runs (its intra-op threads, times its concurrent runners)."""
    if gpu:
        return {"num_gpus": 1}
    return {"num_cpus": max(1, int(threads or 1)) * max(1, int(concurrency))}
