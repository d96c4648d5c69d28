"""The real-model corpus: trained ONNX models shipped inside pinned PyPI wheels, with realistic feeds.

    from corpus import MODELS, get
    m = get("silero_vad"); m.fetch(); feeds = m.feeds()      # list of feed dicts, all of one set of shapes

`fetch.py` beside this file downloads and verifies the files; `inspect_graphs.py` derives what each graph
covers from the graph itself (and from running it), which `covers` below must match.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import feeds as _feeds
from . import fetch as _fetch
from .fetch import WHEELS, CorpusError, cache_dir, file_path

__all__ = ["CorpusModel", "MODELS", "get", "CorpusError", "cache_dir"]


@dataclass(frozen=True)
class CorpusModel:
    id: str
    wheel: str                       # pinned "name==version"
    member: str                      # path of the .onnx inside the wheel
    licence: str
    description: str
    covers: tuple[str, ...]          # features of the graph, as inspect_graphs.features() names them
    make_feeds: Callable[["CorpusModel"], list[dict[str, np.ndarray]]] = field(repr=False)
    extra: tuple[str, ...] = ()      # small model-side files from the same wheel (configs)

    @property
    def path(self) -> Path:
        return file_path(self.wheel, self.member)

    @property
    def sha256(self) -> str:
        return WHEELS[self.wheel][self.member]

    def side_file(self, member: str) -> Path:
        return file_path(self.wheel, member)

    def fetch(self, offline: bool = False) -> Path:
        _fetch.fetch([self.wheel], offline=offline)
        return self.path

    def feeds(self) -> list[dict[str, np.ndarray]]:
        """Realistic feeds, one dict per run; every dict has the same shapes."""
        return self.make_feeds(self)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The shapes of the feeds, ready for ``Session.build(shapes=...)``."""
        return {k: tuple(v.shape) for k, v in self.feeds()[0].items()}


_RAPID = "rapidocr-onnxruntime==1.4.4"
_LIGHT = "onnx/backend/test/data/light/light_{}.onnx"
_MAGIKA_CFG = "magika/models/standard_v3_3/config.min.json"

MODELS: list[CorpusModel] = [
    CorpusModel(
        "ppocr_det", _RAPID, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", "Apache-2.0",
        "PP-OCRv4 text detector (DBNet, PaddlePaddle export): probability map of text regions",
        ("constant-weights", "placeholder-dims", "batchnorm", "resize"),
        lambda m: _feeds.ppocr_det()),
    CorpusModel(
        "ppocr_rec", _RAPID, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx", "Apache-2.0",
        "PP-OCRv4 text recogniser (SVTR-LCNet: convolutions, then attention blocks with decomposed LayerNorm), "
        "CTC over 6625 characters",
        ("constant-weights", "placeholder-dims", "attention", "layernorm-decomposed", "batchnorm"),
        lambda m: _feeds.ppocr_rec()),
    CorpusModel(
        "ppocr_cls", _RAPID, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx", "Apache-2.0",
        "PP-OCR text-direction classifier (MobileNetV3): upright or turned 180 degrees",
        ("constant-weights", "placeholder-dims", "placeholder-shared", "batchnorm"),
        lambda m: _feeds.ppocr_cls()),
    CorpusModel(
        "silero_vad", "silero-vad==6.2.3", "silero_vad/data/silero_vad.onnx", "MIT",
        "Silero VAD v6 (spox build): speech probability per 32 ms chunk; the 16 kHz / 8 kHz networks sit in "
        "`If` branches chosen by the scalar int64 `sr`, with LSTMs and their weights in Constant nodes",
        ("constant-weights", "weights-in-subgraphs", "all-dynamic", "unnamed-dims", "scalar-input", "integer-input",
         "multi-input", "multi-output", "control-flow", "lstm"),
        lambda m: _feeds.silero_vad()),
    CorpusModel(
        "magika", "magika==1.0.3", "magika/models/standard_v3_3/model.onnx", "Apache-2.0",
        "Magika v3.3 content-type classifier (tf2onnx): byte tokens -> 214 content types",
        ("integer-input", "placeholder-dims"),
        lambda m: _feeds.magika(_feeds.magika_config(m.side_file(_MAGIKA_CFG))), extra=(_MAGIKA_CFG,)),
    CorpusModel(
        "ddddocr", "ddddocr==1.6.1", "ddddocr/common.onnx", "MIT",
        "ddddocr captcha OCR (CNN + LSTM, CTC), fp32; declares its output [1, seqlen] but returns [T, 1, 8210]",
        ("lstm", "wrong-output-shape"),
        lambda m: _feeds.ddddocr()),
    CorpusModel(
        "nudenet", "nudenet==3.4.2", "nudenet/320n.onnx", "AGPL-3.0 (LICENSE file; metadata says MIT)",
        "NudeNet 320n: a YOLOv8n detector (PyTorch export), 18 classes, boxes decoded in-graph",
        ("symbolic-output-dims", "resize"),
        lambda m: _feeds.nudenet()),
    CorpusModel(
        "smart_turn", "pipecat-ai==1.14.0", "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
        "BSD-2-Clause",
        "pipecat smart-turn v3.2: Whisper-tiny encoder + classifier (end of turn?), statically quantized Q/DQ int8",
        ("attention", "layernorm", "gelu", "qdq", "placeholder-dims"),
        lambda m: _feeds.smart_turn()),
] + [
    CorpusModel(
        f"zoo_{name}", "onnx==1.23.2", _LIGHT.format(name), "Apache-2.0",
        f"ONNX model zoo {name} in the onnx package's 'light' form (IR 3, weights made by ConstantOfShape)",
        ("zoo-layout",) + extra,
        lambda m, inp=inp: _feeds.zoo(inp))
    for name, inp, extra in [
        ("bvlc_alexnet", "data_0", ()), ("densenet121", "data_0", ("batchnorm",)),
        ("inception_v1", "data_0", ()), ("inception_v2", "data_0", ("batchnorm",)),
        ("resnet50", "gpu_0/data_0", ("batchnorm",)), ("shufflenet", "gpu_0/data_0", ("batchnorm",)),
        ("squeezenet", "data_0", ()), ("vgg19", "data_0", ()), ("zfnet512", "gpu_0/data_0", ()),
    ]
]

_BY_ID = {m.id: m for m in MODELS}


def get(model_id: str) -> CorpusModel:
    try:
        return _BY_ID[model_id]
    except KeyError:
        raise KeyError(f"no corpus model {model_id!r}; known: {', '.join(_BY_ID)}") from None
