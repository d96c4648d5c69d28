"""Image classifiers: ResNet-18, ResNet-50 and MobileNetV2 with the layer names torchvision uses."""
from __future__ import annotations

import onnx
from onnx import TensorProto

from trtlab.errors import ConfigError
from trtlab.zoo._graph import GraphBuilder

def _check_image(fn: str, image_size: int, num_classes: int, multiple: int = 32) -> None:
    if image_size < multiple or image_size % multiple:
        raise ConfigError(f"trtlab.zoo.{fn}: image_size={image_size} must be a positive multiple of "
                          f"{multiple} (the network downsamples by {multiple}); try 224, 64 or 32")
    if num_classes < 1:
        raise ConfigError(f"trtlab.zoo.{fn}: num_classes={num_classes} must be at least 1")


def _probe_shape(image_size: int) -> tuple[int, int, int, int]:
    """Numpy probe batch that sets BatchNormalization statistics: about one 224x224 image's worth of pixels,
    so that small images still give the last stage enough samples per channel."""
    side = min(image_size, 224)
    return (-(-224 * 224 // (side * side)), 3, side, side)


def _stem(g: GraphBuilder) -> str:
    x = g.conv("input", 64, 7, "conv1", stride=2)
    x = g.relu(g.batchnorm(x, "bn1"), "relu")
    return g.maxpool(x, "maxpool")


def _downsample(g: GraphBuilder, x: str, cout: int, stride: int, prefix: str) -> str:
    if stride == 1 and g.channels(x) == cout:
        return x
    y = g.conv(x, cout, 1, f"{prefix}.downsample.0", stride=stride, gain=1.0)
    return g.batchnorm(y, f"{prefix}.downsample.1")


def _basic_block(g: GraphBuilder, x: str, cout: int, stride: int, prefix: str) -> str:
    y = g.relu(g.batchnorm(g.conv(x, cout, 3, f"{prefix}.conv1", stride=stride), f"{prefix}.bn1"), f"{prefix}.relu1")
    # A small last gamma, as in trained ResNets, keeps the residual sum from growing block by block.
    y = g.batchnorm(g.conv(y, cout, 3, f"{prefix}.conv2"), f"{prefix}.bn2", gamma=(0.3, 0.6))
    return g.relu(g.add(y, _downsample(g, x, cout, stride, prefix), f"{prefix}.add"), f"{prefix}.relu")


def _bottleneck(g: GraphBuilder, x: str, width: int, stride: int, prefix: str) -> str:
    cout = width * 4
    y = g.relu(g.batchnorm(g.conv(x, width, 1, f"{prefix}.conv1"), f"{prefix}.bn1"), f"{prefix}.relu1")
    y = g.relu(g.batchnorm(g.conv(y, width, 3, f"{prefix}.conv2", stride=stride), f"{prefix}.bn2"), f"{prefix}.relu2")
    y = g.batchnorm(g.conv(y, cout, 1, f"{prefix}.conv3"), f"{prefix}.bn3", gamma=(0.3, 0.6))
    return g.relu(g.add(y, _downsample(g, x, cout, stride, prefix), f"{prefix}.add"), f"{prefix}.relu")


def _resnet(name: str, seed: int, num_classes: int, image_size: int, bottleneck: bool,
            blocks: tuple[int, ...]) -> onnx.ModelProto:
    _check_image(name, image_size, num_classes)
    g = GraphBuilder(name, seed)
    g.input("input", TensorProto.FLOAT, ["batch", 3, image_size, image_size], probe_shape=_probe_shape(image_size))
    x = _stem(g)
    for stage, n in enumerate(blocks):
        width = 64 * 2 ** stage
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            prefix = f"layer{stage + 1}.{i}"
            x = _bottleneck(g, x, width, stride, prefix) if bottleneck else _basic_block(g, x, width, stride, prefix)
    g.classifier_head(x, num_classes)
    kind = "bottleneck" if bottleneck else "basic"
    return g.build(f"{name}: random-weight ResNet ({kind} blocks {list(blocks)}, BatchNormalization not folded), "
                   f"input 'input' [batch,3,{image_size},{image_size}], output 'logits' [batch,{num_classes}].")


def resnet18(seed: int = 0, num_classes: int = 1000, image_size: int = 224) -> onnx.ModelProto:
    """ResNet-18 (basic blocks, BatchNormalization unfolded, residual Adds); save with onnx.save(model, path)."""
    return _resnet("resnet18", seed, num_classes, image_size, bottleneck=False, blocks=(2, 2, 2, 2))


def resnet50(seed: int = 0, num_classes: int = 1000, image_size: int = 224) -> onnx.ModelProto:
    """ResNet-50 (bottleneck blocks, BatchNormalization unfolded, 175 nodes); save with onnx.save(model, path)."""
    return _resnet("resnet50", seed, num_classes, image_size, bottleneck=True, blocks=(3, 4, 6, 3))


# MobileNetV2 inverted-residual settings: expansion t, output channels c, repeats n, first stride s.
_MBV2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _divisible(v: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of 8 without dropping more than 10% (torchvision's rule)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _conv_bn_relu6(g: GraphBuilder, x: str, cout: int, k: int, prefix: str, stride: int = 1, group: int = 1) -> str:
    y = g.conv(x, cout, k, f"{prefix}.0", stride=stride, group=group)
    return g.relu6(g.batchnorm(y, f"{prefix}.1"), f"{prefix}.2")


def mobilenet_v2(seed: int = 0, num_classes: int = 1000, image_size: int = 224,
                 width_mult: float = 1.0) -> onnx.ModelProto:
    """MobileNetV2 (depthwise convs, Clip as ReLU6, inverted residuals); save with onnx.save(model, path)."""
    _check_image("mobilenet_v2", image_size, num_classes)
    if width_mult <= 0:
        raise ConfigError(f"trtlab.zoo.mobilenet_v2: width_mult={width_mult} must be positive, e.g. 1.0 or 0.5")
    g = GraphBuilder("mobilenet_v2", seed)
    g.input("input", TensorProto.FLOAT, ["batch", 3, image_size, image_size], probe_shape=_probe_shape(image_size))
    x = _conv_bn_relu6(g, "input", _divisible(32 * width_mult), 3, "features.0", stride=2)
    block = 1
    for t, c, n, s in _MBV2:
        cout = _divisible(c * width_mult)
        for i in range(n):
            stride, prefix, cin = (s if i == 0 else 1), f"features.{block}", g.channels(x)
            hidden = cin * t
            y, layer = x, 0
            if t != 1:
                y = _conv_bn_relu6(g, y, hidden, 1, f"{prefix}.conv.{layer}")
                layer += 1
            y = _conv_bn_relu6(g, y, hidden, 3, f"{prefix}.conv.{layer}", stride=stride, group=hidden)
            y = g.conv(y, cout, 1, f"{prefix}.conv.{layer + 1}", gain=1.0)
            y = g.batchnorm(y, f"{prefix}.conv.{layer + 2}", gamma=(0.3, 0.6) if stride == 1 and cin == cout
                            else (0.7, 1.3))
            x = g.add(x, y, f"{prefix}.add") if stride == 1 and cin == cout else y
            block += 1
    x = _conv_bn_relu6(g, x, _divisible(1280 * max(1.0, width_mult)), 1, f"features.{block}")
    g.classifier_head(x, num_classes)
    return g.build(f"mobilenet_v2: random-weight MobileNetV2 (width {width_mult}, BatchNormalization not folded), "
                   f"input 'input' [batch,3,{image_size},{image_size}], output 'logits' [batch,{num_classes}].")
