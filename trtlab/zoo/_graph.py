"""A small ONNX graph builder for the zoo: seeded, scaled weights and unique, readable node names."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # opset 17's IR version; every onnxruntime since 1.13 loads it


def round_sig(a: np.ndarray, digits: int = 3) -> np.ndarray:
    """Round to `digits` significant digits.

    Values derived from the float64 probe differ between BLAS builds only in the last bits, far below
    this rounding step, so the model's bytes are the same on every machine (barring a ~1e-12 chance).
    """
    a64 = np.asarray(a, dtype=np.float64)
    mag = np.where(a64 == 0, 1.0, np.abs(a64))
    step = 10.0 ** (np.floor(np.log10(mag)) - (digits - 1))
    return (np.round(a64 / step) * step).astype(np.float32)


def _stats(a: np.ndarray, axis: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and variance (float64) of a probe activation."""
    return a.mean(axis=axis), a.var(axis=axis)


class GraphBuilder:
    """Collects nodes and initializers, and runs a small probe batch through every layer as it is added.

    The probe (seeded N(0, 1) input, computed with numpy) is what keeps a random network's
    activations O(1): convolutions get He-scaled weights, and each BatchNormalization gets
    running statistics close to the mean and variance its input really has (with noise, as in
    a trained network), so a deep network with unfolded BatchNormalization neither explodes
    nor vanishes. The probe is only a construction aid; it is not stored in the model.
    """

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.probe: dict[str, np.ndarray] = {}  # activation name -> probe batch value (float64)
        self._node_names: set[str] = set()
        self._tensor_names: set[str] = set()

    # -- bookkeeping -----------------------------------------------------------------------

    def channels(self, x: str) -> int:
        """Channel count (dim 1) of a probed activation."""
        return self.probe[x].shape[1]

    def _claim_tensor(self, name: str) -> str:
        if name in self._tensor_names:
            raise ValueError(f"zoo builder: tensor name {name!r} used twice in {self.name}")
        self._tensor_names.add(name)
        return name

    def input(self, name: str, elem_type: int, shape: Sequence[int | str],
              probe_shape: Sequence[int] | None = None, doc: str = "") -> str:
        """Declare a graph input (str dims are dynamic, e.g. "batch"); probe it with N(0, 1) data."""
        self.inputs.append(helper.make_tensor_value_info(self._claim_tensor(name), elem_type, list(shape), doc))
        if probe_shape is not None:
            probe_rng = np.random.default_rng(12345)  # fixed: the probe does not vary with the seed
            self.probe[name] = probe_rng.standard_normal(tuple(probe_shape))
        return name

    def output(self, name: str, elem_type: int, shape: Sequence[int | str]) -> None:
        """Declare a graph output; `name` must be produced by a node."""
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))

    def const(self, name: str, array: np.ndarray) -> str:
        """Add an initializer and return its name."""
        self.initializers.append(numpy_helper.from_array(np.asarray(array, order="C"), self._claim_tensor(name)))
        return name

    def scalar(self, name: str, value: float | int, dtype: type = np.float32) -> str:
        """A shared scalar initializer, created on first use."""
        if name not in self._tensor_names:
            self.const(name, np.array(value, dtype=dtype))
        return name

    def node(self, op: str, inputs: Sequence[str], name: str, outputs: Sequence[str] | None = None,
             probe: np.ndarray | None = None, **attrs: object) -> str:
        """Add a node named `name`; its (first) output tensor gets the same name unless given."""
        if name in self._node_names:
            raise ValueError(f"zoo builder: node name {name!r} used twice in {self.name}")
        self._node_names.add(name)
        outs = [self._claim_tensor(o) for o in (outputs or [name])]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        if probe is not None:
            self.probe[outs[0]] = probe.astype(np.float64, copy=False)
        return outs[0]

    def normal(self, shape: Sequence[int], std: float, mean: float = 0.0) -> np.ndarray:
        """Seeded float32 normal weights."""
        return self.rng.standard_normal(tuple(shape), dtype=np.float32) * np.float32(std) + np.float32(mean)

    def uniform(self, shape: Sequence[int], low: float, high: float) -> np.ndarray:
        """Seeded float32 uniform weights."""
        return self.rng.uniform(low, high, tuple(shape)).astype(np.float32)

    # -- layers for convolutional networks (NCHW) --------------------------------------------

    def conv(self, x: str, cout: int, kernel: int, name: str, stride: int = 1, group: int = 1,
             bias: bool = False, gain: float = 2.0) -> str:
        """Conv with He-scaled weights (gain 2 before a ReLU), 'same' padding for odd kernels."""
        cin = self.channels(x)
        cg = cin // group
        w = self.normal((cout, cg, kernel, kernel), math.sqrt(gain / (cg * kernel * kernel)))
        inputs = [x, self.const(f"{name}.weight", w)]
        pad = kernel // 2
        xp = np.pad(self.probe[x], ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        win = sliding_window_view(xp, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
        n, _, h, wd = win.shape[:4]
        win = win.reshape(n, group, cg, h, wd, kernel, kernel)
        y = np.einsum("ngchwij,gocij->ngohw", win, w.reshape(group, cout // group, cg, kernel, kernel),
                      optimize=True).reshape(n, cout, h, wd)
        if bias:
            b = self.normal((cout,), 0.05 * float(round_sig(y.std(), 2)))
            inputs.append(self.const(f"{name}.bias", b))
            y = y + b[:, None, None]
        return self.node("Conv", inputs, name, probe=y, kernel_shape=[kernel, kernel],
                         strides=[stride, stride], pads=[pad] * 4, group=group, dilations=[1, 1])

    def conv_transpose(self, x: str, cout: int, name: str) -> str:
        """ConvTranspose with kernel 2, stride 2 (doubles H and W), He-scaled, with bias."""
        cin = self.channels(x)
        w = self.normal((cin, cout, 2, 2), math.sqrt(2.0 / cin))
        b = self.normal((cout,), 0.05)
        y = np.einsum("nchw,coij->nohiwj", self.probe[x], w, optimize=True)
        n, _, h, _, wd, _ = y.shape
        y = y.reshape(n, cout, 2 * h, 2 * wd) + b[:, None, None]
        return self.node("ConvTranspose", [x, self.const(f"{name}.weight", w), self.const(f"{name}.bias", b)],
                         name, probe=y, kernel_shape=[2, 2], strides=[2, 2])

    def batchnorm(self, x: str, name: str, gamma: tuple[float, float] = (0.7, 1.3)) -> str:
        """BatchNormalization whose running statistics are the probe's, with trained-network-like noise."""
        c = self.channels(x)
        m, v = _stats(self.probe[x], (0, 2, 3))
        scale = self.uniform((c,), *gamma)
        bias = self.normal((c,), 0.2)
        run_mean = round_sig(m + self.rng.standard_normal(c) * 0.1 * np.sqrt(v))
        run_var = round_sig(v * self.rng.uniform(0.7, 1.3, c) + 1e-3)
        inputs = [x] + [self.const(f"{name}.{k}", a) for k, a in
                        (("weight", scale), ("bias", bias), ("running_mean", run_mean), ("running_var", run_var))]
        inv = scale.astype(np.float64) / np.sqrt(run_var.astype(np.float64) + 1e-5)
        y = (self.probe[x] - run_mean[:, None, None]) * inv[:, None, None] + bias[:, None, None]
        return self.node("BatchNormalization", inputs, name, probe=y, epsilon=1e-5)

    def relu(self, x: str, name: str) -> str:
        """Relu."""
        return self.node("Relu", [x], name, probe=np.maximum(self.probe[x], 0))

    def relu6(self, x: str, name: str) -> str:
        """ReLU6 as Clip(x, 0, 6), the form exporters write."""
        lo, hi = self.scalar("clip.min", 0.0), self.scalar("clip.max", 6.0)
        return self.node("Clip", [x, lo, hi], name, probe=np.clip(self.probe[x], 0, 6))

    def add(self, a: str, b: str, name: str) -> str:
        """Elementwise Add."""
        return self.node("Add", [a, b], name, probe=self.probe[a] + self.probe[b])

    def maxpool(self, x: str, name: str, kernel: int = 3, stride: int = 2) -> str:
        """MaxPool; kernel 3 pads by 1 ('same' before striding), kernel 2 does not pad."""
        pad = (kernel - 1) // 2
        xp = np.pad(self.probe[x], ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
        y = sliding_window_view(xp, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride].max(axis=(4, 5))
        return self.node("MaxPool", [x], name, probe=y, kernel_shape=[kernel, kernel],
                         strides=[stride, stride], pads=[pad] * 4)

    def classifier_head(self, x: str, num_classes: int, output: str = "logits") -> str:
        """GlobalAveragePool, Flatten and a Gemm to `num_classes` logits named `output`."""
        c = self.channels(x)
        pooled = self.node("GlobalAveragePool", [x], "avgpool")
        flat = self.node("Flatten", [pooled], "flatten", axis=1)
        # Pooled features have large common means; scale so that logits come out about unit size.
        feats = self.probe[x].mean(axis=(2, 3))
        power = float(round_sig(np.mean(feats.astype(np.float64) ** 2), 2))
        w = self.normal((num_classes, c), math.sqrt(1.0 / (c * power)))
        b = self.normal((num_classes,), 0.01)
        self.node("Gemm", [flat, self.const("fc.weight", w), self.const("fc.bias", b)], "fc",
                  outputs=[output], transB=1)
        self.output(output, TensorProto.FLOAT, ["batch", num_classes])
        return output

    # -- assembly ----------------------------------------------------------------------------

    def build(self, doc: str, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
        """Assemble and return the model (tests run the full checker; here it would double a base BERT's build time)."""
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers,
                                  doc_string=doc)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="trtlab.zoo", producer_version="1", doc_string=doc)
        model.ir_version = IR_VERSION
        meta = {"trtlab.zoo.name": self.name, "trtlab.zoo.seed": str(self.seed), **(metadata or {})}
        helper.set_model_props(model, meta)
        return model
