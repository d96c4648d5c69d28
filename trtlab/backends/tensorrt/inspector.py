"""Engine layer information from the build log (the ONELINE dump TensorRT logs at detailed verbosity), so a plan built
without a GPU can still show its fused layers, tactics, formats and precisions (the same table as the inspector's)."""
from __future__ import annotations

import re
from typing import Any

import pandas as pd

_LINE = re.compile(r"^Name: (?P<name>.*?), LayerType: (?P<type>.*?), Inputs: \[(?P<inputs>.*?)\], "
                   r"(?:Constants: \[(?P<constants>.*?)\], )?Outputs: \[(?P<outputs>.*?)\], "
                   r"TacticName: (?P<tactic>.*?), StreamId: (?P<stream>-?\d+),(?P<extra>.*?) ?Metadata: ?(?P<meta>.*)$")
_TENSOR = re.compile(r"\{ Name: (?P<name>.*?), Dimensions: \[(?P<dims>.*?)\],.*?Datatype: (?P<dtype>\w+), "
                     r"Format: (?P<format>.*?) \}")


def layer_lines(log_text: str) -> list[str]:
    """The lines of the last 'Layers:' dump in a TensorRT build log (one per engine layer)."""
    start = log_text.rfind("Layers:\n")
    if start < 0:
        return []
    out = []
    for line in log_text[start + len("Layers:\n"):].splitlines():
        if not line.startswith("Name: "):
            break
        out.append(line)
    return out


def _tensors(text: str | None) -> list[dict[str, Any]]:
    out = []
    for m in _TENSOR.finditer(text or ""):
        dims = [int(d) for d in m.group("dims").split(",") if d.strip().lstrip("-").isdigit()]
        out.append({"Name": m.group("name"), "Dimensions": dims,
                    "Format/Datatype": f"{m.group('format')} {m.group('dtype')}"})
    return out


def oneline_to_layers(lines: list[str]) -> list[dict[str, Any]]:
    """ONELINE layer descriptions -> the inspector's JSON layer dicts (Name, LayerType, Inputs, Outputs, ...)."""
    layers = []
    for line in lines:
        m = _LINE.match(line)
        if m is None:
            layers.append(line.split(",", 1)[0][len("Name: "):])  # keep the name at least
            continue
        layers.append({"Name": m.group("name"), "LayerType": m.group("type"), "Inputs": _tensors(m.group("inputs")),
                       "Outputs": _tensors(m.group("outputs")), "TacticName": m.group("tactic") or None,
                       "StreamId": int(m.group("stream")),
                       "Metadata": m.group("meta")})
    return layers


def layers_from_log(log_text: str, where: str = "build log") -> pd.DataFrame:
    """The engine's layer table from a build log (empty when the log has no layer dump)."""
    from ...tables import parse_layer_info
    return parse_layer_info({"Layers": oneline_to_layers(layer_lines(log_text))}, where)
