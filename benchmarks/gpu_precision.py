"""Precision lab on a GPU: FP16 and INT8 against FP32 with real CUDA kernels (ORT CUDA provider), per tensor.

Runs Session.compare(outputs="all") for zoo resnet50, unet and bert small on the default providers (CUDA when
onnxruntime-gpu sees a GPU), the FP16 range report, INT8 (entropy calibration, Q/DQ) and find_fp32_layers on unet,
and writes one CSV per comparison plus summary.md to --out.   python benchmarks/gpu_precision.py --out DIR [--cpu]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trtlab  # noqa: E402

MODELS = {"resnet50": ({}, {"batch": 8}), "unet": ({}, {"batch": 4}),
          "bert": ({"size": "small"}, {"batch": 8, "dims": {"sequence": 128}})}
CPU_MODELS = {"resnet18": ({"image_size": 64}, {"batch": 2}), "unet": ({"image_size": 64}, {"batch": 1})}


def final_error(result, outputs: list[str]) -> dict[str, float]:
    """Relative RMS error and cosine of the model's real outputs."""
    f = result.to_frame().set_index("tensor")
    return {o: {"rel_rms_err": float(f.loc[o, "rel_rms_err"]), "cosine": float(f.loc[o, "cosine"])}
            for o in outputs if o in f.index}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cpu", action="store_true", help="small models on the CPU provider (proves the script)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    providers = ["cpu"] if args.cpu else None
    md = [f"# Precision lab on {'CPU' if args.cpu else 'GPU'} ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
          ""]
    env = trtlab.environment()
    md.append(f"- onnxruntime {env['libraries']['onnxruntime']}, providers {env['onnxruntime_providers']}, "
              f"gpus {[g.get('name') for g in env['gpus']]}")
    md.append("")
    md.append("| model | candidate | provider | tensors | seconds | first divergence | worst tensor (rel RMS err) | "
              "final output rel RMS err | cosine |")
    md.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    summary = {}
    extra: list[str] = []  # range report and find_fp32_layers, after the table
    for name, (kw, build) in (CPU_MODELS if args.cpu else MODELS).items():
        s = trtlab.Session(trtlab.zoo.get(name, **kw), workspace=str(out / "ws"))
        outputs = [o.name for o in s.model.outputs]
        cands = ["fp16"]
        if name in ("unet", "resnet18"):
            calib = s.calibrate(4 if not args.cpu else 2, method="entropy")
            cands.append({"precision": "int8", "calibration": calib})
        for cand in cands:
            label = cand if isinstance(cand, str) else cand["precision"]
            t0 = time.perf_counter()
            try:
                c = s.compare("fp32", cand, outputs="all", data=2, providers=providers, **build)
            except trtlab.TrtlabError as exc:
                md.append(f"| {name} | {label} | - | - | - | error: {exc} | | | |")
                continue
            sec = time.perf_counter() - t0
            f = c.to_frame()
            f.to_csv(out / f"compare-{name}-{label}.csv", index=False)
            div = c.first_divergence()
            worst = f.loc[f["rel_rms_err"].idxmax()]
            fin = final_error(c, outputs)
            first = next(iter(fin.values()))
            prov = s.build(precision="fp32", providers=providers, **build).providers[0]
            md.append(f"| {name} | {label} | {prov} | {len(f)} | {sec:.1f} | "
                      f"{div['tensor'] if div else 'none'} | {worst['tensor']} ({worst['rel_rms_err']:.3g}) | "
                      f"{first['rel_rms_err']:.3g} | {first['cosine']:.6f} |")
            summary[f"{name}-{label}"] = {"seconds": sec, "tensors": len(f), "first_divergence": div,
                                          "final": fin, "provider": prov}
            print(md[-1], flush=True)
        if name == "unet":
            r = s.fp16_range_report(data=1, **build)
            rf = r.to_frame()
            rf.to_csv(out / f"range-{name}.csv", index=False)
            extra.append("")
            extra.append(f"FP16 range report of {name}: {len(rf)} tensors; columns {list(rf.columns)[:8]}...")
            t0 = time.perf_counter()
            found = s.find_fp32_layers(candidate="fp16", tolerance=1e-3, data=1, **{k: v for k, v in build.items()
                                                                                    if k in ("batch", "dims")})
            extra.append(f"find_fp32_layers(fp16, tolerance 1e-3) on {name}: {found!r} in "
                         f"{time.perf_counter() - t0:.1f} s")
            extra.append("")
            steps = found.steps
            narrow = [c for c in steps.columns if not steps[c].map(lambda v: isinstance(v, (list, tuple))).any()]
            extra.append("```\n" + steps[narrow].to_string(index=False) + "\n```")
    md += extra
    (out / "summary.md").write_text("\n".join(md) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
