"""Write resnet50-rtx-fp16/: a trtexec-style export of a real TensorRT-RTX build with DETAILED layer information.

    .venv/bin/python tests/data/trtexec/make_rtx_sample.py      # needs tensorrt-rtx and the corpus cache

The layer records are the ones TensorRT-RTX 1.7 logs for the plan it built (`Layers:` dump at
ProfilingVerbosity.DETAILED) of the corpus model zoo_resnet50 (`light_resnet50.onnx` from onnx 1.23.2, fp16 by
trtlab, compute capability 8.9, opt_level 0, batch 1). They are written in the layout of the engine
inspector's JSON that `trtexec --exportLayerInfo --profilingVerbosity=detailed` saves in TensorRT 10
(`{"Layers": [{"Name", "LayerType", "Inputs": [{"Name", "Location", "Dimensions", "Format/Datatype"}],
"Outputs", "TacticName", "StreamId", "Metadata"}], "Bindings": [...]}`, Metadata entries
`[ONNX Layer: <node>]` separated by the unit separator \\x1f). The build log is parsed here with this script's own
regular expressions, not trtlab's.

No GPU here runs TensorRT-RTX engines, so engine.profile.json's times are NOT measurements: each layer gets
0.01 ms per ONNX node its metadata names plus 0.002 ms, in trtexec --exportProfile's layout, so tests can check
the arithmetic of folding times onto ONNX nodes. Nothing in the sample should be read as a speed.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

LINE = re.compile(r"^Name: (?P<name>.*?), LayerType: (?P<type>.*?), Inputs: \[(?P<ins>.*?)\], "
                  r"(?:Constants: \[.*?\], )?Outputs: \[(?P<outs>.*?)\], TacticName: (?P<tactic>.*?), "
                  r"StreamId: (?P<stream>-?\d+),.*?Metadata: ?(?P<meta>.*)$")
TENSOR = re.compile(r"\{ Name: (?P<name>.*?), Dimensions: \[(?P<dims>.*?)\],.*?Datatype: (?P<dtype>\w+), "
                    r"Format: (?P<format>.*?) \}")


def tensors(text: str) -> list[dict]:
    return [{"Name": m["name"], "Location": "Device",
             "Dimensions": [int(d) for d in m["dims"].split(",") if d.strip()],
             "Format/Datatype": f"{m['format']} {m['dtype']}"} for m in TENSOR.finditer(text)]


def main() -> None:
    import trtlab
    from corpus import get
    m = get("zoo_resnet50")
    m.fetch()
    s = trtlab.Session(str(m.path), backend="tensorrt-rtx", workspace=HERE / ".rtx-sample-ws")
    eng = s.build(precision="fp16", batch=1, compute_capability="8.9", opt_level=0)
    layers = []
    for line in eng.metadata["build_layers"]:
        g = LINE.match(line)
        if g is None:
            raise SystemExit(f"unexpected layer line: {line[:120]}")
        meta = "\x1f".join(re.findall(r"\[ONNX Layer: .*?\]", g["meta"]))
        layers.append({"Name": g["name"], "LayerType": g["type"], "Inputs": tensors(g["ins"]),
                       "Outputs": tensors(g["outs"]), "TacticName": g["tactic"], "StreamId": int(g["stream"]),
                       "Metadata": meta})
    bindings = [i.name for i in eng.inputs] + [o.name for o in eng.outputs]
    out = HERE / "resnet50-rtx-fp16"
    out.mkdir(exist_ok=True)
    (out / "engine.graph.json").write_text(json.dumps({"Layers": layers, "Bindings": bindings}, indent=1) + "\n")
    prof = [{"count": 10}]
    for layer in layers:
        t = round(0.01 * layer["Metadata"].count("[ONNX Layer: ") + 0.002, 6)
        prof.append({"name": layer["Name"], "timeMs": round(10 * t, 6), "averageMs": t, "medianMs": t,
                     "percentage": 0.0})
    total = sum(p["averageMs"] for p in prof[1:])
    for p in prof[1:]:
        p["percentage"] = round(100 * p["averageMs"] / total, 4)
    (out / "engine.profile.json").write_text(json.dumps(prof, indent=1) + "\n")
    (out / "engine.build.metadata.json").write_text(json.dumps(
        {"model_options": {"Format": "ONNX", "Model": "light_resnet50.onnx"},
         "build_options": {"Precision": "FP16 (strongly typed, trtlab fp16 variant)",
                           "Builder": f"TensorRT-RTX {eng.metadata.get('library_version', '')}".strip()}}) + "\n")
    print(f"wrote {out}: {len(layers)} layers")


if __name__ == "__main__":
    main()
