"""Which TensorRT wrote a trtexec export: from a log's banner, the layer information's I/O listing, the build
options, or 'unknown'; checked on the real exports in tests/data/trtexec (TensorRT 8.x, per their README)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from trtlab.errors import TrtexecFormatError
from trtlab.trtexec import load_trtexec
from trtlab.trtexec_format import version_from_banner

DATA = Path(__file__).resolve().parent / "data" / "trtexec"


def _copy(folder: str, dest: Path, skip: tuple[str, ...] = ("engine.timing.json",)) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for p in (DATA / folder).iterdir():
        if p.name not in skip:
            shutil.copy(p, dest / p.name)
    return dest


def test_real_tensorrt_8_exports_are_placed_before_11(tmp_path):
    qat = load_trtexec(_copy("resnet18-a100-qat", tmp_path / "qat"))
    assert qat.tensorrt.major is None and qat.tensorrt.majors == (8, 9, 10) and qat.tensorrt.label == "8.x-10.x"
    assert any("'Bindings'" in e for e in qat.tensorrt.evidence)
    assert any("Precision: FP32+FP16+INT8" in e for e in qat.tensorrt.evidence)
    assert qat.summary()["tensorrt"] == "8.x-10.x" and "TensorRT 8.x-10.x" in repr(qat)


def test_a_trtexec_log_gives_the_exact_version(tmp_path):
    d = _copy("resnet18-a100-fp16", tmp_path / "fp16")
    # the first line trtexec prints (format of trtexec 10.3's own banner)
    (d / "build.log").write_text("&&&& RUNNING TensorRT.trtexec [TensorRT v100300] [b17] # trtexec "
                                 "--onnx=resnet18.onnx --fp16 --exportLayerInfo=engine.graph.json\n"
                                 "[09/25/2026-10:00:00] [I] === Model Options ===\n")
    rep = load_trtexec(d)
    assert (rep.tensorrt.major, rep.tensorrt.version) == (10, "10.3.0")
    assert rep.tensorrt.evidence[0].startswith(str(d / "build.log"))
    old = load_trtexec(_copy("resnet18-a100-fp16", tmp_path / "old"),
                       log=_write(tmp_path / "t.txt", "[I] TensorRT version: 8.6.1\n"))
    assert old.tensorrt.version == "8.6.1" and old.tensorrt.major == 8
    assert (version_from_banner("8601"), version_from_banner("101600"), version_from_banner("11.1.0.106")) == \
        ("8.6.1", "10.16.0", "11.1.0.106")


def _write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


def test_tensorrt_11_layer_information_lists_io_tensors(tmp_path):
    d = _copy("resnet18-a100-fp32", tmp_path / "v11", skip=("engine.timing.json", "engine.build.metadata.json"))
    info = json.loads((d / "engine.graph.json").read_text())
    names = info.pop("Bindings")
    # TensorRT 11 replaced 'Bindings' by 'I/O Tensors' objects (NVIDIA's IEngineInspector 10.x-to-11.x migration
    # page shows Name, IOMode, DataType, Dimensions, Location, IsShapeInferenceIO, ProfileInfo)
    info["I/O Tensors"] = [{"Name": n, "IOMode": "Input" if k == 0 else "Output", "DataType": "Float",
                            "Dimensions": [32, 3, 224, 224] if k == 0 else [32, 1000], "Location": "Device",
                            "IsShapeInferenceIO": False} for k, n in enumerate(names)]
    (d / "engine.graph.json").write_text(json.dumps(info))
    rep = load_trtexec(d)
    assert rep.tensorrt.major == 11 and "'I/O Tensors'" in rep.tensorrt.evidence[0]
    assert rep.batch == 32  # the batch still comes from the first input's dimensions
    info["I/O Tensors"][1]["Dimensions"] = [32, "1000"]
    (d / "engine.graph.json").write_text(json.dumps(info))
    with pytest.raises(TrtexecFormatError, match=r"engine\.graph\.json: \['I/O Tensors'\]\[1\]\.Dimensions\[1\]: "
                                                 r"expected an integer"):
        load_trtexec(d)


def test_nothing_to_go_by_is_unknown(tmp_path):
    d = _copy("mobilenet-qat-titanrtx", tmp_path / "p", skip=())
    rep = load_trtexec(profile=d / "engine.profile.json")
    assert rep.tensorrt.label == "unknown" and rep.tensorrt.evidence == () and rep.tensorrt.to_dict()["major"] is None
