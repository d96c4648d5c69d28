"""300 malformed trtexec exports made from the real ones in tests/data/trtexec: each either loads into a report whose
every table and figure works (finite numbers), or fails with TrtexecFormatError naming the file and the key path of
the bad field; never a raw KeyError/TypeError/ValueError from inside the loader."""
from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from trtlab.errors import TrtexecFormatError, TrtlabError
from trtlab.trtexec import load_trtexec

DATA = Path(__file__).resolve().parent / "data" / "trtexec"
FOLDERS = ["resnet18-a100-fp32", "resnet18-a100-fp16", "resnet18-a100-qat", "mobilenet-qat-titanrtx"]
FILES = ["engine.graph.json", "engine.profile.json", "engine.timing.json", "engine.profile.metadata.json",
         "engine.build.metadata.json", "engine.metadata.json"]
KEEP_MS = 300.0  # the first records of each real timing file: the 200 ms warm-up and 100 ms after (test_trtexec.py
# reads the full files)
# the keys trtlab reads from each file: mutations go there (a broken field nobody reads is no error)
READ = {"engine.graph.json": {"Layers", "Name", "LayerType", "Inputs", "Outputs", "Dimensions", "Format/Datatype",
                              "TacticName", "TacticValue", "Origin", "ParameterType", "Metadata", "Bindings"},
        "engine.profile.json": {"count", "name", "timeMs", "averageMs", "medianMs", "percentage"},
        "engine.timing.json": {"startEnqMs", "endEnqMs", "startH2dMs", "endH2dMs", "startComputeMs",
                               "endComputeMs", "startD2hMs", "endD2hMs", "h2dMs", "computeMs", "d2hMs", "latencyMs"},
        "engine.profile.metadata.json": {"performance_summary", "Throughput", "Total Host Walltime",
                                         "inference_options", "Duration", "Batch", "CUDA Graph",
                                         "device_information", "Selected Device"},
        "engine.build.metadata.json": {"model_options", "Model"},
        "engine.metadata.json": {"Name"}}
WEIGHTS = {"engine.graph.json": 3, "engine.profile.json": 2, "engine.timing.json": 2,
           "engine.profile.metadata.json": 2, "engine.build.metadata.json": 1, "engine.metadata.json": 1}
HOSTILE = ["fast", None, True, False, [], {}, [1, "a"], {"k": 1}, -1, 0, 1e308, 10 ** 40, -(10 ** 30),
           float("nan"), float("inf"), float("-inf"), "1.5", "", "<img src=x onerror=alert(1)>", "../../etc/passwd",
           "\u0000\u202e", "x" * 5000, 3.5]
N_CASES = 300


def key_path(path: tuple[Any, ...]) -> str:
    """The notation errors use: Layers[3].Outputs[0]['Format/Datatype'], [5].latencyMs for a top-level list."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p):
            out += f".{p}" if out else p
        else:
            out += f"[{p!r}]"
    return out


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, path + (i,))


def _set(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = root
    for p in path[:-1]:
        parent = parent[p]
    parent[path[-1]] = value
    return root


def _delete(root: Any, path: tuple[Any, ...]) -> Any:
    parent = root
    for p in path[:-1]:
        parent = parent[p]
    del parent[path[-1]]
    return root


def originals() -> dict[str, dict[str, Any]]:
    out = {}
    for folder in FOLDERS:
        files = {}
        for name in FILES:
            p = DATA / folder / name
            if p.exists():
                data = json.loads(p.read_text())
                if name == "engine.timing.json":  # the warm-up and 100 ms after it
                    data = [r for r in data if r["startH2dMs"] < data[0]["startH2dMs"] + KEEP_MS]
                files[name] = data
        out[folder] = files
    return out


def malformed(n: int = N_CASES, seed: int = 13) -> Iterator[dict[str, Any]]:
    """Seeded cases: {folder, file, op, path, files: {name: text}} with one file of one real export broken."""
    rng = random.Random(seed)
    base = originals()
    texts0 = {folder: {name: json.dumps(v) for name, v in files.items()} for folder, files in base.items()}
    for k in range(n):
        folder = FOLDERS[k % len(FOLDERS)]
        names = sorted(base[folder])
        name = rng.choices(names, [WEIGHTS[f] for f in names])[0]
        data = json.loads(texts0[folder][name])
        op = rng.choice(["set", "set", "set", "delete", "delete", "truncate", "swap", "root"])
        paths = [p for p, _ in _paths(data) if all(isinstance(q, int) or q in READ[name] for q in p)]
        path: tuple[Any, ...] = ()
        text = None
        if op == "truncate":
            full = json.dumps(data, indent=1)
            text = full[:rng.randrange(1, len(full) - 1)]
        elif op == "delete":
            keyed = [p for p in paths if p and isinstance(p[-1], str)]
            path = rng.choice(keyed)
            data = _delete(data, path)
        elif op == "swap":  # a list where a dict is expected and the other way round
            inner = [p for p in paths if p and isinstance(_get(data, p), (list, dict))]
            path = rng.choice(inner)
            node = _get(data, path)
            data = _set(data, path, list(node.values()) if isinstance(node, dict) else {"0": node})
        elif op == "root":
            data = [data] if isinstance(data, dict) else {"records": data}
        else:
            path = rng.choice([p for p in paths if p])
            data = _set(data, path, rng.choice(HOSTILE))
        texts = dict(texts0[folder])
        texts[name] = text if text is not None else json.dumps(data)  # json writes NaN/Infinity as Python does
        yield {"case": k, "folder": folder, "file": name, "op": op, "path": path, "files": texts}


def _get(root: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        root = root[p]
    return root


def exercise(folder: Path) -> None:
    """Load and use everything a report offers; numbers must come out finite."""
    rep = load_trtexec(folder)
    repr(rep)
    _ = rep.device, rep.batch, rep.tensorrt
    if rep.layer_info is not None:
        rep.layers()
        rep.precision_breakdown()
        rep.format_breakdown()
        rep.reformat_layers()
    if rep.profile_data is not None:
        p = rep.profile()
        assert math.isfinite(p.total_ms)
    if rep.times_data is not None:
        rep.timing()
        b = rep.benchmark()
        assert all(math.isfinite(v) for v in b.stats.values()), b.stats
        str(b)
    rep.summary()


def outcome(case: dict[str, Any], root: Path) -> tuple[str, BaseException | None]:
    d = root / f"case{case['case']:03d}"
    d.mkdir()
    for name, text in case["files"].items():
        (d / name).write_text(text)
    try:
        exercise(d)
    except TrtexecFormatError as exc:
        return "named", exc
    except TrtlabError as exc:
        return "other trtlab error", exc
    except Exception as exc:  # noqa: BLE001 - what the loader must never let through
        return "raw", exc
    return "loaded", None


def test_every_malformed_export_is_refused_by_name_or_works(tmp_path):
    results = [(c, *outcome(c, tmp_path)) for c in malformed()]
    assert len(results) == N_CASES
    raw = [(c["case"], c["file"], c["op"], key_path(c["path"]), f"{type(e).__name__}: {e}"[:160])
           for c, kind, e in results if kind != "named" and kind != "loaded"]
    assert not raw, f"{len(raw)} of {N_CASES} malformed exports gave a raw or unnamed error: {raw[:10]}"
    named = [(c, e) for c, kind, e in results if kind == "named"]
    assert len(named) > N_CASES // 2  # the mutations hit what the loader reads
    for c, e in named:
        msg = str(e)
        assert c["file"] in msg, (c["case"], msg)
        if c["op"] in ("set", "delete", "swap") and c["path"]:
            # the error names the field, or the record/layer holding it
            prefixes = [key_path(c["path"][:i]) for i in range(len(c["path"]), 0, -1)]
            assert any(p in msg for p in prefixes), (c["case"], key_path(c["path"]), msg)


def count_outcomes(root: Path) -> dict[str, int]:
    """{outcome: number of cases} (what the report of this change quotes for old and new code)."""
    counts: dict[str, int] = {}
    for c in malformed():
        kind, _ = outcome(c, root)
        counts[kind] = counts.get(kind, 0) + 1
    return counts


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_unbroken_shortened_exports_load(tmp_path, folder):
    for name, data in originals()[folder].items():
        (tmp_path / name).write_text(json.dumps(data))
    exercise(tmp_path)
