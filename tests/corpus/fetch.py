"""Fetch the real-model corpus: pinned PyPI wheels, only their model files, each checked by sha256.

    python tests/corpus/fetch.py            # fetch everything into the cache, print the paths
    python tests/corpus/fetch.py --check    # verify the cache only, never touch the network

The cache is ``$TRTLAB_CORPUS`` or ``~/.cache/trtlab-corpus``; a file lands at
``<cache>/<distribution>-<version>/<path inside the wheel>``. A wheel is downloaded only when one of its
files is missing or does not match its pinned sha256, so a warm cache needs no network. The wheel itself is
downloaded into a temporary folder and deleted once its files are extracted.

This file is self-contained (standard library only) so CI can run it before the project is importable.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

#: wheel (pinned "name==version") -> {path inside the wheel: sha256}
WHEELS: dict[str, dict[str, str]] = {
    "rapidocr-onnxruntime==1.4.4": {
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx":
            "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx":
            "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx":
            "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
    },
    "silero-vad==6.2.3": {
        "silero_vad/data/silero_vad.onnx":
            "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
    },
    "magika==1.0.3": {
        "magika/models/standard_v3_3/model.onnx":
            "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c",
        "magika/models/standard_v3_3/config.min.json":
            "ae24c742205358f6ff6dfd5facb6743fb69743dbba8373e73da58ff0cbd695db",
    },
    "ddddocr==1.6.1": {
        "ddddocr/common.onnx":
            "33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8",
    },
    "nudenet==3.4.2": {
        "nudenet/320n.onnx":
            "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
    },
    "pipecat-ai==1.14.0": {
        "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx":
            "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
    },
    "onnx==1.23.2": {
        f"onnx/backend/test/data/light/light_{name}.onnx": sha for name, sha in {
            "bvlc_alexnet": "2afa78cef5a88aed9d6e3d63fb92bd330c9177ac150d19189c6b3e7204ba0212",
            "densenet121": "49ddb5712797d6164f1d864bedaad927de4f3909ad1b4ba390a92c2f8150e9f6",
            "inception_v1": "bb7a0e6c370c709f5615eeef961b43628de13d0009ae4d6f4bfb0d5aea5d8270",
            "inception_v2": "224d77d55b26559a959db627c3f417a623fbf3b3000d25f0939327aa935d933f",
            "resnet50": "05e77a5c9c9ce0913f549a50d6ebaced5e0ff6817b61e09bae26e4c5bd9055e4",
            "shufflenet": "c6f406d62be36d6b4572542c0950a2abd59f56237068793290680bba89fbafe5",
            "squeezenet": "770b0f3c8623e18bf58b53754d710051b4c268248422142980a132bbe6dfe908",
            "vgg19": "8e547d732b3a3d66eeb8fa64a026adb994d3db552f0bbd52e436d06300d89afe",
            "zfnet512": "6444bb58b98c3d14f551a3bdb83eea9e5db7e147790db3115c447e9c9a8338b0",
        }.items()
    },
}


class CorpusError(RuntimeError):
    """The corpus cannot be fetched or a cached file does not match its pin."""


def cache_dir() -> Path:
    """Where the corpus lives: ``$TRTLAB_CORPUS`` or ``~/.cache/trtlab-corpus``."""
    env = os.environ.get("TRTLAB_CORPUS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "trtlab-corpus"


def wheel_folder(spec: str, root: Path | None = None) -> Path:
    """The cache folder of one pinned wheel, ``<cache>/<name>-<version>``."""
    name, version = spec.split("==")
    return (root or cache_dir()) / f"{name}-{version}"


def file_path(spec: str, member: str, root: Path | None = None) -> Path:
    """Where a pinned file of a wheel lands in the cache."""
    return wheel_folder(spec, root) / member


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _missing(spec: str, root: Path) -> list[str]:
    """Pinned members of ``spec`` that are absent from the cache or do not match their sha256."""
    return [m for m, want in WHEELS[spec].items()
            if not (p := file_path(spec, m, root)).is_file() or sha256(p) != want]


def _download(spec: str, into: Path, root: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "--quiet", spec, "-d", str(into)]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise CorpusError(f"downloading the wheel {spec} took more than 15 minutes; "
                          "check the network to PyPI or pre-fill the cache (TRTLAB_CORPUS)") from None
    except OSError as e:
        raise CorpusError(f"could not run pip to download the wheel {spec}: {e}") from None
    wheels = sorted(into.glob("*.whl"))
    if run.returncode != 0 or not wheels:
        lines = (run.stderr or run.stdout).strip().splitlines()
        tail = "\n".join([ln for ln in lines if ln.startswith("ERROR")] or lines[-5:])
        raise CorpusError(f"could not download the wheel {spec} with pip (exit {run.returncode}): {tail}\n"
                          f"The corpus needs network access to PyPI once; afterwards it is read from "
                          f"{root} (set TRTLAB_CORPUS to use another folder).")
    return wheels[0]


def _extract(spec: str, wheel: Path, members: list[str], root: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for member in members:
            if member not in names:
                raise CorpusError(f"the wheel {wheel.name} has no file {member}; the pin in "
                                  f"tests/corpus/fetch.py is wrong")
            dest = file_path(spec, member, root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".part")
            with z.open(member) as src, open(tmp, "wb") as out:
                while block := src.read(1 << 20):
                    out.write(block)
            got, want = sha256(tmp), WHEELS[spec][member]
            if got != want:
                tmp.unlink()
                raise CorpusError(f"{member} from {wheel.name} has sha256 {got}, but {want} is pinned: "
                                  f"the wheel on the index changed or the pin is wrong")
            os.replace(tmp, dest)


def fetch(specs: list[str] | None = None, root: Path | None = None, offline: bool = False,
          log=None) -> dict[str, Path]:
    """Make sure every pinned file of ``specs`` (all wheels when None) is in the cache; return their paths.

    A file already cached with the right sha256 is kept as it is (no network). With ``offline=True`` a
    missing file raises :class:`CorpusError` instead of downloading.
    """
    root = Path(root) if root else cache_dir()
    specs = list(WHEELS) if specs is None else specs
    for spec in specs:
        if spec not in WHEELS:
            raise CorpusError(f"{spec!r} is not a pinned corpus wheel; pinned: {', '.join(WHEELS)}")
        missing = _missing(spec, root)
        if not missing:
            continue
        if offline:
            raise CorpusError(f"{len(missing)} file(s) of {spec} are not in the corpus cache {root} "
                              f"(first: {missing[0]}); run `python tests/corpus/fetch.py` with network access")
        if log:
            log(f"corpus: downloading {spec} for {len(missing)} file(s)")
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
            _extract(spec, _download(spec, Path(tmp), root), missing, root)
    return {f"{spec}:{m}": file_path(spec, m, root) for spec in specs for m in WHEELS[spec]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="verify the cache only; never download")
    ap.add_argument("--dest", type=Path, help="cache folder (default: $TRTLAB_CORPUS or ~/.cache/trtlab-corpus)")
    args = ap.parse_args(argv)
    try:
        paths = fetch(root=args.dest, offline=args.check, log=lambda m: print(m, file=sys.stderr))
    except CorpusError as e:
        print(f"corpus: {e}", file=sys.stderr)
        return 1
    for key, path in paths.items():
        print(f"{path}")
    print(f"corpus: {len(paths)} files verified in {args.dest or cache_dir()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
