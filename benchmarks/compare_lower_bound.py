"""Session.compare(outputs="all") against the naive floor: time and peak memory, side by side in one run.

The question both answer: per tensor of zoo resnet50 (batch 8, a few batches), how far is the FP16 engine from
the FP32 engine? trtlab: `Session("fp32.onnx").compare("fp32", "fp16", outputs="all", data=batches)`.
The floor: the least a user could write that gets the same table.

Decisions that define the floor
* Models: the FP32 model and the FP16 variant trtlab's compare builds (the same typed ONNX, made by
  trtlab's transform with the analysis config compare uses, saved to disk), each with every tensor trtlab
  compares (`Model.activation_names()`) appended as a graph output; where that config has
  fp16_mode="faithful" (ONNX Runtime's CPU provider), the FP16 model is the one such an engine runs (every
  fp16 tensor stored in fp16 through a Cast pair, `trtlab.backends.ort_fp16.store_every_fp16`).
* Engines: two plain `onnxruntime.InferenceSession`s on the CPU provider, default SessionOptions (arena on,
  default threads) except the graph optimisation level, taken from the config trtlab builds with, so both
  run the same kernels.
* Work per batch: run both sessions fetching every marked tensor, so both runs' outputs are alive at once,
  then per tensor compute with plain numpy, whole arrays at once, the statistics trtlab
  reports (max/mean abs error, max/mean relative error over ref != 0, elements over 10% relative error,
  cosine, SNR, relative RMS error, NaN/inf counts of both, candidate overflow to inf, reference max |x|,
  fp16 overflow/underflow/subnormal counts of the reference) and fold them into per-tensor running sums.
  Outputs of earlier batches are dropped (the floor is not charged for holding all batches).
  Arithmetic as trtlab defines it: elementwise work in float32 (the candidate cast to float32, as trtlab
  does), squares, products and every sum in float64 (numpy's dtype=float64, as trtlab's sums are);
  NaN/inf masks are applied only when a tensor has non-finite elements.
* Both start from a model file and a list of input arrays already in memory; both pay model loading,
  session creation (trtlab: its segment engines) and, for trtlab, writing its result to a fresh workspace.

Method
* Each measurement is one child process (fresh interpreter, nothing cached, fresh workspace). The child
  imports what it needs, loads the input batches, records its resident set size (RSS), then does the work;
  time is wall-clock of the work; peak memory is the kernel's high-water mark of the child's RSS
  (getrusage ru_maxrss, exact, no sampling) minus the RSS before the work: the memory the work added.
  ONNX Runtime's arena and every numpy temporary are counted alike; tracemalloc would miss the arena.
* Rounds alternate the order (floor first, then trtlab first, ...); medians over rounds are reported.
* The script prints how far the two tables are apart (largest relative difference per statistic): the engines
  differ slightly (trtlab's segments are fused differently at their boundaries), the statistics do not.

Usage: python benchmarks/compare_lower_bound.py [--batch 8] [--batches 3] [--rounds 3] [--image 224]
Targets (issue "Speed"): trtlab time <= 1.5 x the floor's, trtlab peak memory <= 0.35 x the floor's.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIME_TARGET, MEMORY_TARGET = 1.5, 0.35

CHILD_COMMON = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
import psutil
tmp = Path(sys.argv[1])
n_batches = int(sys.argv[2])
batches = [{"input": np.load(tmp / f"input{i}.npy")} for i in range(n_batches)]
names = json.loads((tmp / "names.json").read_text())
rss0 = psutil.Process().memory_info().rss
t0 = time.perf_counter()
"""

CHILD_END = r"""
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("RESULT " + json.dumps({"seconds": seconds, "peak_growth": peak - rss0, "rss0": rss0, "rows": rows}))
"""

FLOOR = CHILD_COMMON + r"""
import onnxruntime as ort
meta = json.loads((tmp / "meta.json").read_text())
FP16_MAX, FP16_MIN_SUB, FP16_MIN_NORMAL = 65504.0, 2.0 ** -24, 2.0 ** -14
levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}

def session(path, level):
    so = ort.SessionOptions()
    so.graph_optimization_level = levels.get(level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

ref_s = session(tmp / "fp32_marked.onnx", meta["reference_level"])
cand_s = session(tmp / "fp16_marked.onnx", meta["candidate_level"])
keys = ["n", "n_finite", "n_rel", "sum_abs", "max_abs", "sum_rel", "max_rel", "over10", "ref2", "cand2", "err2", "dot",
        "ref_nan", "ref_inf", "cand_nan", "cand_inf", "cand_overflow_inf", "ref_max_abs", "overflow", "underflow",
        "subnormal"]
acc = {n: dict.fromkeys(keys, 0.0) for n in names}
for feeds in batches:
    refs = ref_s.run(names, feeds)
    cands = cand_s.run(names, feeds)
    for name, r, c in zip(names, refs, cands):
        a = acc[name]
        integer = r.dtype.kind in "iub"
        r = r.ravel().astype(np.float32, copy=False)
        c = c.ravel().astype(np.float32)
        a["n"] += r.size
        rnan, rinf, cnan, cinf = np.isnan(r), np.isinf(r), np.isnan(c), np.isinf(c)
        a["ref_nan"] += rnan.sum(); a["ref_inf"] += rinf.sum(); a["cand_nan"] += cnan.sum(); a["cand_inf"] += cinf.sum()
        rfin = ~(rnan | rinf)
        fin = rfin & ~(cnan | cinf)
        a["cand_overflow_inf"] += (rfin & cinf).sum()
        a["over10"] += (rfin & ~fin).sum()
        ra = np.abs(r) if rfin.all() else np.abs(r[rfin])
        if ra.size:
            a["ref_max_abs"] = max(a["ref_max_abs"], ra.max())
        if not integer:
            a["overflow"] += (ra > FP16_MAX).sum()
            a["underflow"] += ((ra > 0) & (ra < FP16_MIN_SUB)).sum()
            a["subnormal"] += ((ra >= FP16_MIN_SUB) & (ra < FP16_MIN_NORMAL)).sum()
        if not fin.all():
            r, c = r[fin], c[fin]
        a["n_finite"] += r.size
        d = np.abs(r - c)
        if d.size:
            a["max_abs"] = max(a["max_abs"], d.max())
        f64 = np.float64
        a["sum_abs"] += d.sum(dtype=f64); a["err2"] += np.square(d, dtype=f64).sum()
        a["ref2"] += np.square(r, dtype=f64).sum(); a["cand2"] += np.square(c, dtype=f64).sum()
        a["dot"] += np.multiply(r, c, dtype=f64).sum()
        nz = r != 0
        rel = d[nz] / np.abs(r[nz])
        a["over10"] += (rel >= np.float32(0.1)).sum() + ((~nz) & (d > 0)).sum()  # = rel > 0.1 in float64
        a["n_rel"] += rel.size
        if rel.size:
            a["sum_rel"] += rel.sum(dtype=f64); a["max_rel"] = max(a["max_rel"], rel.max())
    del refs, cands

def row(name, a):
    has = a["n_finite"] > 0
    denom = (a["ref2"] * a["cand2"]) ** 0.5
    return {"tensor": name, "max_abs_err": a["max_abs"] if has else None,
            "mean_abs_err": a["sum_abs"] / a["n_finite"] if has else None,
            "max_rel_err": a["max_rel"] if has else None,
            "mean_rel_err": a["sum_rel"] / a["n_rel"] if a["n_rel"] else (0.0 if has else None),
            "elements_over_10pct": a["over10"], "total_elements": a["n"],
            "cosine": (a["dot"] / denom if denom > 0 else (1.0 if a["err2"] == 0 else 0.0)) if has else None,
            "snr_db": 10 * np.log10(a["ref2"] / a["err2"]) if a["err2"] > 0 and a["ref2"] > 0 else None,
            "rel_rms_err": ((a["err2"] / a["ref2"]) ** 0.5 if a["ref2"] > 0 else (0.0 if a["err2"] == 0 else None))
            if has else None,
            "cand_inf": a["cand_inf"], "cand_nan": a["cand_nan"], "ref_max_abs": a["ref_max_abs"],
            "overflow": a["overflow"], "underflow": a["underflow"], "subnormal": a["subnormal"]}

rows = [{k: (None if v is None else float(v)) if k != "tensor" else v for k, v in row(n, acc[n]).items()}
        for n in names]
""" + CHILD_END

TRTLAB = CHILD_COMMON + r"""
import trtlab
s = trtlab.Session(str(tmp / "fp32.onnx"), workspace=str(tmp / f"ws{sys.argv[3]}"))
c = s.compare("fp32", "fp16", outputs="all", data=batches, batch=batches[0]["input"].shape[0])
f = c.frame
cols = ["tensor", "max_abs_err", "mean_abs_err", "max_rel_err", "mean_rel_err", "elements_over_10pct",
        "total_elements", "cosine", "snr_db", "rel_rms_err", "cand_inf", "cand_nan", "ref_max_abs", "overflow",
        "underflow", "subnormal"]
rows = [{k: (r[k] if k == "tensor" else (None if r[k] is None or r[k] != r[k] else float(r[k]))) for k in cols}
        for r in f[cols].to_dict("records")]
""" + CHILD_END


def child(kind: str, tmp: Path, n_batches: int, tag: str) -> dict:
    code = FLOOR if kind == "floor" else TRTLAB
    script = tmp / f"child_{kind}.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script), str(tmp), str(n_batches), tag], capture_output=True,
                          text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"{kind} child failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def prepare(tmp: Path, batch: int, n_batches: int, image: int) -> dict:
    """Write fp32.onnx, the marked fp32 and fp16 models, names.json, meta.json and the input batches."""
    import numpy as np
    import onnx

    import trtlab
    import trtlab.zoo as zoo
    from trtlab.backends.ort_fp16 import store_every_fp16
    from trtlab.events import Reporter
    from trtlab.lab import lab_names, lab_variant

    onnx.save(zoo.resnet50(image_size=image), str(tmp / "fp32.onnx"))
    s = trtlab.Session(str(tmp / "fp32.onnx"), workspace=str(tmp / "ws_prepare"))
    names = lab_names(s, "all")
    rep = Reporter("prepare")
    meta = {}
    for spec, label in (("fp32", "fp32"), ("fp16", "fp16")):
        config, variant = lab_variant(s, spec, rep, batch=batch)
        m = onnx.ModelProto()
        m.CopyFrom(variant.model)
        have = {o.name for o in m.graph.output}
        m.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names if n not in have)
        if config.option("fp16_mode") == "faithful":  # as trtlab's engine runs it (marked first: outputs keep names)
            m = store_every_fp16(m)[0]
        if label == "fp16":
            meta["fp16_mode"] = config.option("fp16_mode", "native")
        onnx.save(m, str(tmp / f"{label}_marked.onnx"))
        meta["reference_level" if label == "fp32" else "candidate_level"] = config.option("graph_optimization", "all")
    (tmp / "names.json").write_text(json.dumps(names))
    (tmp / "meta.json").write_text(json.dumps(meta))
    rng = np.random.default_rng(0)
    for i in range(n_batches):
        np.save(tmp / f"input{i}.npy", rng.standard_normal((batch, 3, image, image)).astype(np.float32))
    return {"tensors": len(names), **meta}


def agreement(floor_rows: list[dict], ours_rows: list[dict]) -> dict[str, float]:
    """Per statistic, the largest relative difference between the two tables (tensor by tensor)."""
    ours = {r["tensor"]: r for r in ours_rows}
    worst: dict[str, float] = {}
    for fr in floor_rows:
        tr = ours.get(fr["tensor"])
        if tr is None:
            worst["missing tensors"] = worst.get("missing tensors", 0) + 1
            continue
        for k, v in fr.items():
            if k == "tensor":
                continue
            w = tr[k]
            if v is None or w is None:
                diff = 0.0 if v is None and w is None else float("inf")
            else:
                diff = abs(v - w) / max(abs(v), abs(w), 1e-30) if v != w else 0.0
            worst[k] = max(worst.get(k, 0.0), diff)
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--image", type=int, default=224)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import psutil

    tmp = Path(tempfile.mkdtemp(prefix="trtlab-compare-floor-"))
    info = prepare(tmp, args.batch, args.batches, args.image)
    runs: dict[str, list[dict]] = {"floor": [], "trtlab": []}
    for r in range(args.rounds):
        order = ("floor", "trtlab") if r % 2 == 0 else ("trtlab", "floor")
        for kind in order:
            res = child(kind, tmp, args.batches, str(r))
            runs[kind].append(res)
            print(f"round {r + 1} {kind:7}: {res['seconds']:6.1f} s, peak RSS growth {res['peak_growth'] / 2**30:5.2f} GiB",
                  flush=True)
    med = {k: {"seconds": statistics.median(x["seconds"] for x in v),
               "peak": statistics.median(x["peak_growth"] for x in v)} for k, v in runs.items()}
    t_ratio = med["trtlab"]["seconds"] / med["floor"]["seconds"]
    m_ratio = med["trtlab"]["peak"] / med["floor"]["peak"]
    print(f"\nresnet50 batch {args.batch} at {args.image}x{args.image}, {args.batches} batches, {info['tensors']} tensors, "
          f"fp16 vs fp32, {args.rounds} rounds alternating, medians ({psutil.cpu_count()} CPUs; graph optimisation "
          f"reference {info['reference_level']}, candidate {info['candidate_level']}; fp16_mode {info['fp16_mode']})")
    print(f"{'':8}{'time s':>10}{'peak RSS growth GiB':>22}")
    for k in ("floor", "trtlab"):
        print(f"{k:8}{med[k]['seconds']:10.2f}{med[k]['peak'] / 2**30:22.3f}")
    print(f"ratios trtlab/floor: time {t_ratio:.2f} (target <= {TIME_TARGET}: "
          f"{'met' if t_ratio <= TIME_TARGET else 'NOT met'}), peak memory {m_ratio:.3f} (target <= {MEMORY_TARGET}: "
          f"{'met' if m_ratio <= MEMORY_TARGET else 'NOT met'})")
    agree = agreement(runs["floor"][-1]["rows"], runs["trtlab"][-1]["rows"])
    print("largest relative difference floor vs trtlab per statistic: "
          + ", ".join(f"{k} {v:.2g}" for k, v in agree.items()))
    print("(the engines differ, not the arithmetic: trtlab runs the graph in segments, which ONNX Runtime fuses "
          "differently at their boundaries, so relative errors of near-zero elements move; tests/test_compare.py "
          "checks compare's statistics against float64 numpy on the same outputs)")
    if not args.keep:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}")


if __name__ == "__main__":
    main()
