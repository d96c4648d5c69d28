"""The `trtlab` command: info, bench and profile from a shell, readable or as JSON."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from .errors import ConfigError, DynamicShapeError, TrtlabError, UsageError


def _load_model(spec: str) -> Any:
    """A path, or `zoo:NAME` for a generated demo model."""
    if spec.startswith("zoo:"):
        from . import zoo
        return zoo.get(spec[4:])
    return spec


def _dim_list(text: str, what: str) -> tuple[int, ...]:
    if text.lower() == "scalar":
        return ()
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise UsageError(f"{what}: {text!r} is not a shape: write positive sizes joined by x, e.g. 8x3x224x224, or scalar for a 0-d input")
    return dims


def _shapes(items: list[str] | None) -> dict[str, tuple[int, ...]] | None:
    """Parse trtexec-style shapes 'name:1x3x224x224' (the name may itself contain ':')."""
    if not items:
        return None
    out = {}
    for item in items:
        name, sep, dims = item.rpartition(":")
        if not sep or not name:
            raise UsageError(f"--shapes {item}: write INPUT:DIMS, e.g. --shapes input:8x3x224x224 (sr:scalar for a "
                             f"0-d input)")
        out[name] = _dim_list(dims, f"--shapes {item}")
    return out


def _dims(items: list[str] | None) -> dict[str, int] | None:
    """Parse named dynamic dimensions 'sequence=128'."""
    if not items:
        return None
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            size = int(value)
        except ValueError:
            size = 0
        if not sep or not name or size <= 0:
            raise UsageError(f"--dims {item}: write NAME=SIZE with a positive size, e.g. --dims sequence=128")
        out[name] = size
    return out


def _data(path: str | None) -> dict[str, Any] | None:
    """The input arrays of an .npz file (np.savez(path, **{input_name: array})), 0-d arrays kept 0-d."""
    if path is None:
        return None
    import numpy as np
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise UsageError(f"--data {path}: cannot read it as an .npz of input arrays ({exc}); write it with "
                         f"numpy.savez(path, **{{input_name: array}})") from None


def _add_build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="ONNX file, or zoo:NAME (resnet18, resnet50, mobilenet_v2, unet, bert, mlp)")
    p.add_argument("--backend", default="onnxruntime", help="onnxruntime (default), tensorrt, tensorrt-rtx, auto")
    p.add_argument("--precision", default="fp32", help="fp32, fp16, bf16, int8, fp8, int8+fp16")
    p.add_argument("--batch", type=int, default=None, help="batch size for a dynamic first dimension")
    p.add_argument("--shapes", nargs="*", help="per-input shapes, e.g. input:8x3x224x224; sr:scalar for a 0-d "
                                               "input (default with --data: the shapes of its arrays)")
    p.add_argument("--data", default=None, metavar="FILE.npz",
                   help="input data instead of random inputs: an .npz with one array per input name "
                        "(numpy.savez('in.npz', input=x, sr=np.array(16000)))")
    p.add_argument("--dims", nargs="*", help="named dynamic dims, e.g. sequence=128")
    p.add_argument("--providers", nargs="*", help="ONNX Runtime providers, e.g. cuda cpu")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads")
    p.add_argument("--workspace", default=None, help="workspace folder (default ./.trtlab)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr (default: when stderr is a terminal and --json is not given)")


class ProgressBars:
    """tqdm bars on stderr fed by a session's progress events: one bar per task, closed when the next begins."""

    def __init__(self, events: Any) -> None:
        from tqdm import tqdm
        self._tqdm = tqdm
        self._bar: Any = None
        self._task: str | None = None
        self._unsubscribe = events.subscribe(self._on_event)

    def _on_event(self, kind: str, payload: Any) -> None:
        if kind != "progress":
            return
        if payload.task != self._task or self._bar is None:
            self._close_bar()
            self._task = payload.task
            self._bar = self._tqdm(total=payload.total, desc=payload.task, file=sys.stderr, leave=False,
                                   dynamic_ncols=True)
        bar = self._bar
        if payload.total != bar.total:
            bar.total = payload.total
        done = payload.done
        bar.n = done if float(done).is_integer() else round(float(done), 2)  # durations report seconds
        if payload.message:
            bar.set_postfix_str(payload.message, refresh=False)
        bar.refresh()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        """Stop listening and remove the bar."""
        self._unsubscribe()
        self._close_bar()


def _session_and_engine(args: argparse.Namespace):
    from .session import Session
    shapes, dims = _shapes(args.shapes), _dims(args.dims)  # argument errors before any work
    args.feeds = _data(args.data)
    if args.feeds is not None:
        shapes = {**{k: v.shape for k, v in args.feeds.items()}, **(shapes or {})}
    s = Session(_load_model(args.model), backend=args.backend, workspace=args.workspace)
    show = args.progress if args.progress is not None else (sys.stderr.isatty() and not args.json)
    args.bars = ProgressBars(s.events) if show else None
    eng = s.build(precision=args.precision, batch=args.batch, shapes=shapes, dims=dims,
                  providers=args.providers, threads=args.threads)
    return s, eng


def _close_bars(args: argparse.Namespace) -> None:
    if getattr(args, "bars", None) is not None:
        args.bars.close()


def cmd_info(args: argparse.Namespace) -> int:
    """Print the environment report."""
    from .environment import environment
    env = environment()
    print(json.dumps(env, indent=2, default=str) if args.json else env)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Build and benchmark a model; trtexec-style summary."""
    s, eng = _session_and_engine(args)
    r = s.benchmark(eng, iterations=args.iterations, duration=args.duration, warmup=args.warmup, data=args.feeds)
    _close_bars(args)
    if args.json:
        print(json.dumps({**r.summary(), "config": r.config}, indent=2, default=str))
    else:
        print(r)
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """Build and profile a model per layer."""
    s, eng = _session_and_engine(args)
    p = s.profile_layers(eng, runs=args.runs, data=args.feeds)
    _close_bars(args)
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


class _Parser(argparse.ArgumentParser):
    """argparse with misuse reported on one line (and exit status 2), like every other trtlab error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `trtlab` command."""
    parser = _Parser(prog="trtlab", description=__doc__)
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
        _close_bars(args)
        text = exc.cli_message if isinstance(exc, DynamicShapeError) else exc  # the fix in flags, not Python
        print(f"trtlab: error: {_one_line(text)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _close_bars(args)
        print("trtlab: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an unexpected library failure: one line, the traceback on request
        _close_bars(args)
        if os.environ.get("TRTLAB_DEBUG"):
            raise
        print(f"trtlab: internal error: {type(exc).__name__}: {_one_line(exc)} (run with TRTLAB_DEBUG=1 for the "
              f"traceback, and please report it)", file=sys.stderr)
        return 1


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
