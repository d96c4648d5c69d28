"""How a benchmark launches a TensorRT engine: trtexec's defaults for the installed major, and what overrides them.

trtexec changed its benchmarking defaults in TensorRT 11: CUDA graphs on (``--noCudaGraph`` turns them off),
host/device copies out of the timed run (``--includeDataTransfers`` puts them back), spin-wait on, and the
per-layer profile always in a separate run (``--useCudaGraph``, ``--noDataTransfers``, ``--useSpinWait`` and
``--separateProfileRun`` are accepted as no-ops). TensorRT 10's trtexec (and TensorRT-RTX's ``tensorrt_rtx``
tool, whose best-practices guide passes ``--noDataTransfers --useCudaGraph --useSpinWait`` explicitly) has the
opposite defaults with those flags as opt-ins. A trtlab benchmark follows the rules of the library the engine
was built with, so its figures mean what a trtexec user of that version expects; the summary says which rules
applied and how to get the other behaviour. Per-layer profiling never runs inside trtlab's timed loop.

Pure functions only: the runtime is told the resolved settings, it does not decide them.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from ..errors import ConfigError

SETTINGS = ("cuda_graph", "transfers", "spin_wait")

# trtexec's flag per setting value, by rule set: what a user passes to get that value
_FLAGS = {
    "trtexec 10": {("cuda_graph", True): "--useCudaGraph", ("cuda_graph", False): "the default (no flag)",
                   ("transfers", True): "the default (no flag)", ("transfers", False): "--noDataTransfers",
                   ("spin_wait", True): "--useSpinWait", ("spin_wait", False): "the default (no flag)"},
    "trtexec 11": {("cuda_graph", True): "the default (--useCudaGraph is a no-op)",
                   ("cuda_graph", False): "--noCudaGraph",
                   ("transfers", True): "--includeDataTransfers",
                   ("transfers", False): "the default (--noDataTransfers is a no-op)",
                   ("spin_wait", True): "the default (--useSpinWait is a no-op)",
                   ("spin_wait", False): "no trtexec 11 flag (blocking synchronisation is trtexec 10's default)"},
}
_WORDS = {("cuda_graph", True): "CUDA graph", ("cuda_graph", False): "no CUDA graph",
          ("transfers", True): "host/device copies timed", ("transfers", False): "copies outside the timed run",
          ("spin_wait", True): "spin-wait", ("spin_wait", False): "blocking synchronise"}


@dataclass(frozen=True)
class LaunchDefaults:
    """trtexec's benchmark defaults for one library: the rule set's name and its setting values."""

    library: str  # e.g. "tensorrt 11.0.0.114"
    rules: str  # "trtexec 10" or "trtexec 11"
    cuda_graph: bool
    transfers: bool
    spin_wait: bool
    separate_profile_always: bool  # trtexec 11 always profiles in a run of its own; 10 only with the flag


def major_of(version: str) -> int:
    """The major number of a version string ('10.9.0.34' -> 10); ConfigError when it has none."""
    m = re.match(r"\s*(\d+)", str(version))
    if m is None:
        raise ConfigError(f"cannot read a major version from {version!r}")
    return int(m.group(1))


def launch_defaults(family: str, version: str) -> LaunchDefaults:
    """The benchmark defaults of `family` ('tensorrt' or 'tensorrt-rtx') at `version`.

    TensorRT 11 and later follow trtexec 11; TensorRT 10 (and 8.x/9.x) and TensorRT-RTX follow trtexec 10."""
    if family not in ("tensorrt", "tensorrt-rtx"):
        raise ConfigError(f"launch defaults are TensorRT's; {family!r} has one way to run")
    library = f"{family} {version}"
    if family == "tensorrt" and major_of(version) >= 11:
        return LaunchDefaults(library, "trtexec 11", cuda_graph=True, transfers=False, spin_wait=True,
                              separate_profile_always=True)
    return LaunchDefaults(library, "trtexec 10", cuda_graph=False, transfers=True, spin_wait=False,
                          separate_profile_always=False)


@dataclass(frozen=True)
class Launch:
    """The settings a benchmark ran with, which of them the caller chose, and the rules the rest came from."""

    mode: str  # "enqueue" or "execute"
    cuda_graph: bool
    transfers: bool
    spin_wait: bool
    rules: str
    library: str
    chosen: tuple[str, ...] = ()  # settings given by the caller or the build options, not by the rules
    profile: bool = False  # a per-layer profile was taken in a run of its own after the timed one

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored with the benchmark)."""
        d = asdict(self)
        d["chosen"] = list(self.chosen)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Launch":
        """Inverse of to_dict()."""
        return cls(str(d["mode"]), bool(d["cuda_graph"]), bool(d["transfers"]), bool(d["spin_wait"]),
                   str(d["rules"]), str(d["library"]), tuple(d.get("chosen", ())), bool(d.get("profile", False)))

    def lines(self) -> list[str]:
        """Summary lines: what applied and why, and how to get the other behaviour (trtlab option, trtexec flag)."""
        applied = ", ".join(_WORDS[(s, getattr(self, s))] for s in SETTINGS)
        given = f"; set by you: {', '.join(self.chosen)}" if self.chosen else ""
        out = [f"[I] Launch: {self.mode}, {applied} ({self.rules} defaults for {self.library}{given})"]
        other = []
        for s in SETTINGS:
            value = not getattr(self, s)
            if s == "cuda_graph" and value and self.mode != "enqueue":
                continue  # a graph is captured from a stream: execute mode has none
            other.append(f"{s}={value} ({_FLAGS[self.rules][(s, value)]})")
        out.append("[I] Other behaviour: " + ", ".join(other))
        if self.profile:
            out.append("[I] Per-layer profile: taken in a separate run after the timed one (result.profile)")
        else:
            out.append("[I] Per-layer profile: not taken; profile=True adds one, in a separate run")
        if self.rules == "trtexec 10":
            out.append("[I] trtexec 10 profiles inside the timed run unless --separateProfileRun; trtlab never does")
        if self.transfers:
            out.append("[I] GPU Compute Time here spans the copies too (they are on the timed stream)")
        return out


def resolve_launch(defaults: LaunchDefaults, mode: str, mode_chosen: bool = False, cuda_graph: bool | None = None,
                   transfers: bool | None = None, spin_wait: bool | None = None,
                   build_options: Mapping[str, Any] | None = None) -> Launch:
    """The launch a benchmark makes: the caller's values, else the engine's build options (mode=, cuda_graph=),
    else `defaults`. execute mode (synchronous execute_v2) has no stream to capture, so no CUDA graph."""
    build = dict(build_options or {})
    chosen = []
    if mode_chosen:
        chosen.append("mode")
    if cuda_graph is None and "cuda_graph" in build:
        cuda_graph = bool(build["cuda_graph"])
    if cuda_graph is not None:
        chosen.append("cuda_graph")
        graph = bool(cuda_graph)
    else:
        graph = defaults.cuda_graph and mode == "enqueue"
    if graph and mode != "enqueue":
        raise ConfigError("cuda_graph=True needs mode='enqueue': a CUDA graph is captured from a stream")
    values = {}
    for name, given in (("transfers", transfers), ("spin_wait", spin_wait)):
        if given is not None:
            chosen.append(name)
            values[name] = bool(given)
        else:
            values[name] = getattr(defaults, name)
    return Launch(mode, graph, values["transfers"], values["spin_wait"], defaults.rules, defaults.library,
                  tuple(chosen))


__all__ = ["Launch", "LaunchDefaults", "launch_defaults", "major_of", "resolve_launch"]
