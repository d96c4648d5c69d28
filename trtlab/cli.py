"""The `trtlab` command: info, bench and profile from a shell, readable or as JSON."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from .errors import ConfigError, TrtlabError


def _load_model(spec: str) -> Any:
    """A path, or `zoo:NAME` for a generated demo model."""
    if spec.startswith("zoo:"):
        from . import zoo
        return zoo.get(spec[4:])
    return spec


def _shapes(items: list[str] | None) -> dict[str, tuple[int, ...]] | None:
    """Parse trtexec-style shapes 'name:1x3x224x224'."""
    if not items:
        return None
    out = {}
    for item in items:
        name, _, dims = item.rpartition(":")
        out[name] = tuple(int(d) for d in dims.lower().split("x"))
    return out


def _dims(items: list[str] | None) -> dict[str, int] | None:
    if not items:
        return None
    return {k: int(v) for k, v in (i.split("=", 1) for i in items)}


def _add_build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="ONNX file, or zoo:NAME (resnet18, resnet50, mobilenet_v2, unet, bert, mlp)")
    p.add_argument("--backend", default="onnxruntime", help="onnxruntime (default), tensorrt, tensorrt-rtx, auto")
    p.add_argument("--precision", default="fp32", help="fp32, fp16, bf16, int8, fp8, int8+fp16")
    p.add_argument("--batch", type=int, default=None, help="batch size for a dynamic first dimension")
    p.add_argument("--shapes", nargs="*", help="per-input shapes, e.g. input:8x3x224x224")
    p.add_argument("--dims", nargs="*", help="named dynamic dims, e.g. sequence=128")
    p.add_argument("--providers", nargs="*", help="ONNX Runtime providers, e.g. cuda cpu")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads")
    p.add_argument("--workspace", default=None, help="workspace folder (default ./.trtlab)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _session_and_engine(args: argparse.Namespace):
    from .session import Session
    s = Session(_load_model(args.model), backend=args.backend, workspace=args.workspace)
    eng = s.build(precision=args.precision, batch=args.batch, shapes=_shapes(args.shapes), dims=_dims(args.dims),
                  providers=args.providers, threads=args.threads)
    return s, eng


def cmd_info(args: argparse.Namespace) -> int:
    """Print the environment report."""
    from .environment import environment
    env = environment()
    print(json.dumps(env, indent=2, default=str) if args.json else env)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Build and benchmark a model; trtexec-style summary."""
    s, eng = _session_and_engine(args)
    r = s.benchmark(eng, iterations=args.iterations, duration=args.duration, warmup=args.warmup)
    if args.json:
        print(json.dumps({**r.summary(), "config": r.config}, indent=2, default=str))
    else:
        print(r)
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """Build and profile a model per layer."""
    s, eng = _session_and_engine(args)
    p = s.profile_layers(eng, runs=args.runs)
    if args.json:
        print(json.dumps(p.to_dict(), indent=2, default=str))
        return 0
    print(p)
    print()
    print(p.by_op_type().to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    """Start JupyterLab on a notebook (default: the quickstart), allowing root where the machine runs as root."""
    import importlib.util
    import os
    from pathlib import Path
    extra = [a for a in args.jupyter_args if a != "--"]
    notebook = Path(args.notebook) if args.notebook else Path(__file__).resolve().parents[1] / "notebooks" / \
        "00-quickstart.ipynb"
    if not notebook.exists():
        raise ConfigError(f"notebook {notebook} not found: pass its path (trtlab lab path/to/notebook.ipynb)")
    if importlib.util.find_spec("jupyterlab") is None:
        raise ConfigError("JupyterLab is not installed: pip install -e '.[lab]' (or pip install jupyterlab)")
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in extra
    if as_root:
        print("trtlab: running as root, so JupyterLab gets --allow-root (it refuses to start as root otherwise); "
              "its kernels run with root's rights: start it as an ordinary user where you can", file=sys.stderr,
              flush=True)
    argv = [sys.executable, "-m", "jupyter", "lab", str(notebook)] + (["--allow-root"] if as_root else []) + extra
    os.execvp(argv[0], argv)  # replaces this process: Ctrl+C stops JupyterLab as usual
    return 0  # not reached


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `trtlab` command."""
    parser = argparse.ArgumentParser(prog="trtlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="versions, providers, backends, CPU and GPUs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_info)
    p = sub.add_parser("bench", help="build and benchmark (like trtexec)")
    _add_build_args(p)
    p.add_argument("--iterations", type=int, default=None, help="timed iterations (default 100)")
    p.add_argument("--duration", type=float, default=None, help="seconds to run instead of iterations")
    p.add_argument("--warmup", type=int, default=10, help="warm-up iterations")
    p.set_defaults(fn=cmd_bench)
    p = sub.add_parser("profile", help="per-layer times")
    _add_build_args(p)
    p.add_argument("--runs", type=int, default=20, help="profiled runs")
    p.set_defaults(fn=cmd_profile)
    p = sub.add_parser("lab", help="open JupyterLab on the quickstart notebook (or NOTEBOOK)")
    p.add_argument("notebook", nargs="?", help="notebook to open (default notebooks/00-quickstart.ipynb)")
    p.add_argument("jupyter_args", nargs=argparse.REMAINDER, help="further arguments for jupyter lab")
    p.set_defaults(fn=cmd_lab)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a subcommand; TrtlabErrors print one clear line and exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lab"]:
        # everything after the optional notebook goes to jupyter lab untouched (argparse would reject its options)
        rest = argv[1:]
        notebook = rest.pop(0) if rest and not rest[0].startswith("-") else None
        args = argparse.Namespace(command="lab", notebook=notebook, jupyter_args=rest, fn=cmd_lab)
    else:
        args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except TrtlabError as exc:
        print(f"trtlab: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
