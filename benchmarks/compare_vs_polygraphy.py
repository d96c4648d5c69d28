"""Same question, two tools: how does FP16 resnet50 (batch 8) deviate from FP32, tensor by tensor?

Polygraphy: `polygraphy run fp32.onnx --onnxrt --onnx-outputs mark all --save-outputs ref.json`, then the
fp16 model with `--load-outputs ref.json`. trtlab: `Session.compare("fp32", "fp16", outputs="all")`.
Both get the same input batch (a Polygraphy data-loader script reading the .npy trtlab reads) and the
same fp16 model (trtlab's transform, saved to disk). Each tool runs in its own child process; wall time
and peak resident memory of the child's process tree (psutil, 20 ms polling) are measured, plus the
size of the files each writes. Usage: python benchmarks/compare_vs_polygraphy.py [--batch 8] [--image 224]
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
POLYGRAPHY = Path(sys.executable).with_name("polygraphy")

TRTLAB_CHILD = """
import json, sys, numpy as np, trtlab
s = trtlab.Session(sys.argv[1], workspace=sys.argv[3])
x = np.load(sys.argv[2])
c = s.compare("fp32", "fp16", outputs="all", data=[{"input": x}], batch=x.shape[0])
f = c.to_frame()
print(json.dumps({"tensors": list(f["tensor"]), "first_divergence": (c.first_divergence() or {}).get("tensor")}))
"""


def measure(cmd: list[str], cwd: Path) -> dict:
    """Run `cmd`, polling the RSS of its process tree; wall seconds, peak RSS bytes, stdout+stderr."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    chunks: list[str] = []
    import threading
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.02)
    reader.join()
    return {"seconds": time.perf_counter() - t0, "peak_rss": peak, "rc": proc.returncode, "output": "".join(chunks)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--image", type=int, default=224)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import onnx

    import trtlab.zoo as zoo
    from trtlab.config import BuildConfig
    from trtlab.model import Model
    from trtlab.precision import make_variant

    tmp = Path(tempfile.mkdtemp(prefix="trtlab-vs-polygraphy-"))
    model = Model.load(zoo.resnet50(image_size=args.image))
    onnx.save(model.proto, str(tmp / "fp32.onnx"))
    fp16 = make_variant(model, BuildConfig.make(precision="fp16"))
    onnx.save(fp16.model, str(tmp / "fp16.onnx"))
    x = np.random.default_rng(0).standard_normal((args.batch, 3, args.image, args.image)).astype(np.float32)
    np.save(tmp / "input.npy", x)
    (tmp / "data_loader.py").write_text(
        "import numpy as np\n\ndef load_data():\n"
        f"    yield {{'input': np.load({str(tmp / 'input.npy')!r})}}\n")
    del model, fp16

    common = ["--onnxrt", "--onnx-outputs", "mark", "all", "--data-loader-script", str(tmp / "data_loader.py")]
    p1 = measure([str(POLYGRAPHY), "run", "fp32.onnx", *common, "--save-outputs", "ref.json"], tmp)
    p2 = measure([str(POLYGRAPHY), "run", "fp16.onnx", *common, "--load-outputs", "ref.json"], tmp)
    if p1["rc"] != 0:
        sys.exit("polygraphy (fp32 run) failed:\n" + p1["output"][-3000:])
    poly_names = set(re.findall(r"Comparing Output: '([^']+)'", p2["output"]))
    poly = {"seconds": p1["seconds"] + p2["seconds"], "peak_rss": max(p1["peak_rss"], p2["peak_rss"]),
            "files": (tmp / "ref.json").stat().st_size, "tensors": len(poly_names)}

    (tmp / "child.py").write_text(TRTLAB_CHILD)
    t = measure([sys.executable, "child.py", "fp32.onnx", "input.npy", str(tmp / "ws")], tmp)
    if t["rc"] != 0:
        sys.exit("trtlab compare failed:\n" + t["output"][-3000:])
    info = json.loads(t["output"].strip().splitlines()[-1])
    written = sum(p.stat().st_size for p in (tmp / "ws").rglob("results/*") if p.is_file())
    ours = {"seconds": t["seconds"], "peak_rss": t["peak_rss"], "files": written, "tensors": len(info["tensors"])}

    gib = 2**30
    from trtlab.backends.onnxruntime import _session_options
    if _session_options(BuildConfig.make(cpu_mem_arena=False)).enable_cpu_mem_arena:
        print("NOTE: the ONNX Runtime backend ignores option cpu_mem_arena=False, so every segment session keeps its "
              "arena at its peak and trtlab's peak RSS below is about the all-tensors figure, not the streaming bound")
    print(f"resnet50 batch {args.batch} at {args.image}x{args.image}, fp16 vs fp32, every tensor marked "
          f"({psutil.cpu_count()} CPUs)")
    print(f"{'':10}{'time s':>10}{'peak RSS GiB':>14}{'files MiB':>12}{'tensors':>9}")
    for name, r in (("polygraphy", poly), ("trtlab", ours)):
        print(f"{name:10}{r['seconds']:10.1f}{r['peak_rss'] / gib:14.2f}{r['files'] / 2**20:12.2f}{r['tensors']:9d}")
    print(f"ratios trtlab/polygraphy: time {ours['seconds'] / poly['seconds']:.3f} (target <= 0.333), "
          f"peak RSS {ours['peak_rss'] / poly['peak_rss']:.3f} (target <= 0.25), "
          f"files {ours['files'] / max(poly['files'], 1):.5f}")
    same = poly_names == set(info["tensors"])
    print(f"coverage: polygraphy compared {len(poly_names)} tensors, trtlab {len(info['tensors'])}; "
          f"identical names: {same}" + ("" if same else f"; only polygraphy: {sorted(poly_names - set(info['tensors']))[:8]}"
                                        f"; only trtlab: {sorted(set(info['tensors']) - poly_names)[:8]}"))
    print(f"polygraphy runs: fp32 {p1['seconds']:.1f} s / {p1['peak_rss'] / gib:.2f} GiB, fp16+compare "
          f"{p2['seconds']:.1f} s / {p2['peak_rss'] / gib:.2f} GiB; trtlab first divergence: {info['first_divergence']}")
    if not args.keep:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}")


if __name__ == "__main__":
    main()
