"""trtlab.zoo: models are valid, deterministic, well scaled, and agree between ONNX Runtime and onnx.reference."""
from __future__ import annotations

import functools
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from trtlab import zoo
from trtlab.errors import ConfigError

# Small variants keep the file fast: onnx.reference is slow on big convolutions.
SMALL = {
    "mlp": {},
    "resnet18": {"image_size": 32},
    "resnet50": {"image_size": 32},
    "mobilenet_v2": {"image_size": 32},
    "unet": {"image_size": 32, "channels": 8},
    "bert_small": {"attention_mask": True},
}


@functools.lru_cache(maxsize=None)
def small(name: str) -> onnx.ModelProto:
    return zoo.get(name, **SMALL[name])


@functools.lru_cache(maxsize=None)
def full(name: str) -> onnx.ModelProto:
    return zoo.get(name)


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def feeds_for(model: onnx.ModelProto, batch: int, seed: int = 0, sequence: int = 8) -> dict[str, np.ndarray]:
    """Random feeds: N(0, 1) images/features, token ids within the model's declared range, a padded mask."""
    rng = np.random.default_rng(seed)
    meta = {p.key: p.value for p in model.metadata_props}
    feeds = {}
    for inp in model.graph.input:
        dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        if inp.name == "input_ids":
            low, high = map(int, meta["trtlab.zoo.input_range.input_ids"].split(","))
            feeds[inp.name] = rng.integers(low, high, (batch, sequence), dtype=np.int64)
        elif inp.name == "attention_mask":
            mask = np.ones((batch, sequence), dtype=np.int64)
            mask[0, sequence // 2:] = 0
            feeds[inp.name] = mask
        else:
            feeds[inp.name] = rng.standard_normal([batch, *dims[1:]]).astype(np.float32)
    return feeds


def op_counts(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


# -- registry and argument errors ------------------------------------------------------------

def test_names_lists_every_model_and_get_builds_them():
    assert zoo.names() == ["mlp", "resnet18", "resnet50", "mobilenet_v2", "unet", "bert_small", "bert_base"]
    assert zoo.get("MobileNet-V2", image_size=32).graph.name == "mobilenet_v2"
    assert zoo.get("bert", size="small").graph.name == "bert_small"


def test_bad_names_and_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match=r"no model named 'vgg16'.*resnet50"):
        zoo.get("vgg16")
    with pytest.raises(ConfigError, match=r"get\('mlp'\).*unexpected keyword.*image_size.*help\(trtlab.zoo.mlp\)"):
        zoo.get("mlp", image_size=32)
    with pytest.raises(ConfigError, match=r"resnet18: image_size=30 must be a positive multiple of 32"):
        zoo.resnet18(image_size=30)
    with pytest.raises(ConfigError, match=r"bert: size='huge' is not one of \['base', 'small'\]"):
        zoo.bert(size="huge")
    with pytest.raises(ConfigError, match=r"unet: image_size=100 must be a positive multiple of 2\*\*depth=16"):
        zoo.unet(image_size=100)
    with pytest.raises(ConfigError, match=r"unet: upsample='bicubic' is not one of"):
        zoo.unet(upsample="bicubic")
    with pytest.raises(ConfigError, match=r"mobilenet_v2: width_mult=0 must be positive"):
        zoo.mobilenet_v2(width_mult=0)


# -- validity ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SMALL))
def test_models_pass_full_checker_and_strict_shape_inference(name):
    model = small(name)
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    assert model.ir_version == 8
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    # Every node has a unique, non-empty name; every input and output has a dynamic "batch" dimension.
    node_names = [n.name for n in model.graph.node]
    assert all(node_names) and len(set(node_names)) == len(node_names)
    for vi in [*model.graph.input, *model.graph.output]:
        assert dims(vi)[0] == "batch", vi.name
    assert len(inferred.graph.value_info) >= len(model.graph.node) - len(model.graph.output)
    assert {p.key: p.value for p in model.metadata_props}["trtlab.zoo.name"] == name


def test_io_names_and_shapes():
    assert [(i.name, dims(i)) for i in small("resnet18").graph.input] == [("input", ["batch", 3, 32, 32])]
    assert [(o.name, dims(o)) for o in full("resnet50").graph.output] == [("logits", ["batch", 1000])]
    assert [(o.name, dims(o)) for o in small("mlp").graph.output] == [("logits", ["batch", 10])]
    u = small("unet").graph
    assert [(i.name, dims(i)) for i in u.input] == [("image", ["batch", 3, 32, 32])]
    assert [(o.name, dims(o)) for o in u.output] == [("mask", ["batch", 1, 32, 32])]
    b = small("bert_small").graph
    assert [(i.name, dims(i), i.type.tensor_type.elem_type) for i in b.input] == [
        ("input_ids", ["batch", "sequence"], onnx.TensorProto.INT64),
        ("attention_mask", ["batch", "sequence"], onnx.TensorProto.INT64)]
    assert [(o.name, dims(o)) for o in b.output] == [
        ("last_hidden_state", ["batch", "sequence", 256]), ("pooler_output", ["batch", 256])]
    assert [i.name for i in zoo.bert().graph.input] == ["input_ids"]


# -- structure -----------------------------------------------------------------------------

def test_resnet50_structure():
    model = full("resnet50")
    counts = op_counts(model)
    assert len(model.graph.node) == 175
    assert counts["Conv"] == counts["BatchNormalization"] == 53  # BatchNormalization not folded
    assert counts["Add"] == 16 and counts["GlobalAveragePool"] == 1 and counts["Gemm"] == 1
    names = {n.name for n in model.graph.node}
    assert {"conv1", "bn1", "layer1.0.conv3", "layer3.5.add", "layer4.0.downsample.0", "fc"} <= names
    # A residual Add joins the block's last BatchNormalization and the shortcut.
    add = next(n for n in model.graph.node if n.name == "layer2.1.add")
    assert list(add.input) == ["layer2.1.bn3", "layer2.0.relu"]
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert 25.4e6 < params < 25.7e6  # torchvision's ResNet-50 has 25.56 M (incl. BN statistics)


def test_resnet18_structure():
    model = small("resnet18")
    counts = op_counts(model)
    assert len(model.graph.node) == 69
    assert counts["Conv"] == counts["BatchNormalization"] == 20 and counts["Add"] == 8


def test_batchnorm_statistics_are_realistic():
    init = {t.name: numpy_helper.to_array(t) for t in full("resnet50").graph.initializer}
    for key in ("layer1.0.bn1", "layer3.2.bn2", "layer4.0.downsample.1"):
        var, mean, scale = init[f"{key}.running_var"], init[f"{key}.running_mean"], init[f"{key}.weight"]
        assert (var > 0).all() and var.std() > 0 and mean.std() > 0 and scale.std() > 0
        assert not np.allclose(mean, 0) and not np.allclose(var, 1) and not np.allclose(scale, 1)


def test_mobilenet_v2_structure():
    model = small("mobilenet_v2")
    counts = op_counts(model)
    assert counts["Clip"] == 35 and counts["Add"] == 10 and counts["BatchNormalization"] == 52
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    clip = next(n for n in model.graph.node if n.op_type == "Clip")
    assert (float(init[clip.input[1]]), float(init[clip.input[2]])) == (0.0, 6.0)
    depthwise = [n for n in model.graph.node if n.op_type == "Conv"
                 and next(a.i for a in n.attribute if a.name == "group") > 1]
    assert len(depthwise) == 17
    for n in depthwise:
        group = next(a.i for a in n.attribute if a.name == "group")
        assert init[n.input[1]].shape[:2] == (group, 1)  # one filter per channel


@pytest.mark.parametrize("upsample, ops", [("mixed", {"ConvTranspose": 2, "Resize": 2}),
                                           ("transpose", {"ConvTranspose": 4, "Resize": 0}),
                                           ("resize", {"ConvTranspose": 0, "Resize": 4})])
def test_unet_structure(upsample, ops):
    model = zoo.unet(image_size=32, channels=8, upsample=upsample)
    counts = op_counts(model)
    assert {k: counts[k] for k in ops} == ops
    concats = [n for n in model.graph.node if n.op_type == "Concat"]
    # Skip connections: each decoder level concatenates its upsampled input with an encoder output.
    assert [n.input[1] for n in concats] == ["encoder.3.relu2", "encoder.2.relu2", "encoder.1.relu2", "encoder.0.relu2"]
    assert model.graph.node[-1].op_type == "Sigmoid"


def test_bert_structure_small_and_base():
    s = small("bert_small")
    counts = op_counts(s)
    assert counts["Softmax"] == 4 and counts["Erf"] == 4 and counts["LayerNormalization"] == 9
    assert counts["MatMul"] == 4 * 8 and counts["Gather"] >= 2
    assert "encoder.layer.3.attention.self.softmax" in {n.name for n in s.graph.node}
    base = zoo.bert(size="base")
    counts = op_counts(base)
    assert counts["Softmax"] == 12 and counts["LayerNormalization"] == 25 and counts["Erf"] == 12
    init = {t.name: tuple(t.dims) for t in base.graph.initializer}
    assert init["embeddings.word_embeddings.weight"] == (8192, 768)
    assert init["encoder.layer.11.intermediate.dense.weight"] == (768, 3072)
    assert {p.key: p.value for p in base.metadata_props}["trtlab.zoo.input_range.input_ids"] == "0,8192"
    out = session(base).run(None, feeds_for(base, batch=1, sequence=4))
    assert out[0].shape == (1, 4, 768) and np.isfinite(out[0]).all()


# -- determinism ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlp", "resnet18", "unet", "bert_small"])
def test_same_seed_same_bytes_other_seed_other_weights(name):
    a = small(name).SerializeToString()
    assert zoo.get(name, **SMALL[name]).SerializeToString() == a
    other = zoo.get(name, seed=1, **SMALL[name])
    assert [n.name for n in other.graph.node] == [n.name for n in small(name).graph.node]
    w0 = {t.name: numpy_helper.to_array(t) for t in small(name).graph.initializer}
    w1 = {t.name: numpy_helper.to_array(t) for t in other.graph.initializer}
    assert w0.keys() == w1.keys()
    weights = [k for k, v in w0.items() if v.size > 16 and v.dtype == np.float32]
    assert weights and all(not np.array_equal(w0[k], w1[k]) for k in weights)


def test_saved_model_round_trips(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(small("mlp"), str(path))
    assert onnx.load(str(path)).SerializeToString() == small("mlp").SerializeToString()


# -- numbers -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SMALL))
def test_onnxruntime_matches_onnx_reference(name):
    model = small(name)
    feeds = feeds_for(model, batch=2)
    got = session(model).run(None, feeds)  # default optimizations: fused kernels included
    want = ReferenceEvaluator(model).run(None, feeds)
    assert len(got) == len(want) == len(model.graph.output)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * float(np.abs(w).max()))


@pytest.mark.parametrize("name", list(SMALL))
def test_dynamic_batch(name):
    model = small(name)
    sess = session(model)
    one = sess.run(None, feeds_for(model, batch=1, seed=3))
    three = sess.run(None, feeds_for(model, batch=3, seed=3))
    for a, b in zip(one, three):
        assert a.shape[0] == 1 and b.shape[0] == 3 and a.shape[1:] == b.shape[1:]
    if name != "bert_small":  # the first sample is the same N(0, 1) draw in both batches
        np.testing.assert_allclose(three[0][:1], one[0], rtol=1e-4, atol=1e-5)


def test_bert_dynamic_sequence_and_mask():
    model = small("bert_small")
    sess = session(model)
    for seq in (3, 17):
        out = sess.run(None, feeds_for(model, batch=2, sequence=seq))
        assert out[0].shape == (2, seq, 256) and out[1].shape == (2, 256)
    # A padded (mask 0) token must not change any attended position's output.
    feeds = {"input_ids": np.array([[5, 6, 7, 8]]), "attention_mask": np.array([[1, 1, 1, 0]])}
    a = sess.run(None, feeds)[0]
    feeds["input_ids"] = np.array([[5, 6, 7, 4000]])
    b = sess.run(None, feeds)[0]
    np.testing.assert_allclose(a[:, :3], b[:, :3], rtol=1e-5, atol=1e-6)
    assert not np.allclose(a[:, 3], b[:, 3])


@pytest.mark.parametrize("name", list(SMALL))
def test_outputs_are_sanely_scaled(name):
    model = small(name)
    for out in session(model).run(None, feeds_for(model, batch=4, seed=11)):
        assert np.isfinite(out).all()
        assert 1e-3 < float(out.std()) < 1e3


@pytest.mark.parametrize("name, kw", [("resnet50", {"image_size": 64}), ("mobilenet_v2", {"image_size": 64}),
                                      ("unet", {"image_size": 64}), ("bert_small", {})])
def test_every_activation_stays_order_one(name, kw):
    """He-scaled weights and matching BatchNormalization statistics: no layer explodes or vanishes."""
    model = zoo.get(name, **kw)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    declared = {o.name for o in probe.graph.output}
    # Embedding lookups are table rows (small, as in BERT) until embeddings.LayerNorm; position ids are ints.
    floats = {n.output[0] for n in model.graph.node
              if not n.name.startswith(("embeddings.", "extended_attention_mask")) or n.name == "embeddings.LayerNorm"}
    probe.graph.output.extend(onnx.ValueInfoProto(name=t) for t in sorted(floats - declared))
    sess = session(probe)
    outs = sess.run(None, feeds_for(model, batch=2, seed=5, sequence=16))
    rms = {o.name: float(np.sqrt(np.mean(v.astype(np.float64) ** 2)))
           for o, v in zip(sess.get_outputs(), outs) if v.dtype == np.float32}
    assert len(rms) >= len(floats) - 1
    bad = {k: v for k, v in rms.items() if not 0.05 < v < 20}
    assert not bad
