"""A U-Net segmenter: encoder/decoder with Concat skip connections, ConvTranspose and Resize upsampling."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from trtlab.errors import ConfigError
from trtlab.zoo._graph import GraphBuilder

_UPSAMPLE = ("mixed", "transpose", "resize")


def _double_conv(g: GraphBuilder, x: str, cout: int, prefix: str) -> str:
    for i in (1, 2):
        x = g.relu(g.batchnorm(g.conv(x, cout, 3, f"{prefix}.conv{i}"), f"{prefix}.bn{i}"), f"{prefix}.relu{i}")
    return x


def _resize2x(g: GraphBuilder, x: str, name: str) -> str:
    """Bilinear 2x Resize (half_pixel, as PyTorch's align_corners=False); the probe is upsampled the same way."""
    def up(a: np.ndarray, axis: int) -> np.ndarray:
        prev = np.concatenate([a.take([0], axis), a.take(range(a.shape[axis] - 1), axis)], axis)
        nxt = np.concatenate([a.take(range(1, a.shape[axis]), axis), a.take([-1], axis)], axis)
        even, odd = 0.75 * a + 0.25 * prev, 0.75 * a + 0.25 * nxt
        out = np.stack([even, odd], axis + 1)
        return out.reshape(a.shape[:axis] + (2 * a.shape[axis],) + a.shape[axis + 1:])

    scales = g.const(f"{name}.scales", np.array([1, 1, 2, 2], dtype=np.float32))
    return g.node("Resize", [x, "", scales], name, probe=up(up(g.probe[x], 2), 3), mode="linear",
                  coordinate_transformation_mode="half_pixel")


def unet(seed: int = 0, channels: int = 16, depth: int = 4, image_size: int = 128, in_channels: int = 3,
         num_classes: int = 1, upsample: str = "mixed") -> onnx.ModelProto:
    """U-Net, input 'image' [batch,C,H,W], output 'mask' (Sigmoid) [batch,classes,H,W]; save with onnx.save.

    `upsample`: "transpose" (ConvTranspose 2x2/2), "resize" (bilinear Resize + 1x1 Conv) or
    "mixed" (ConvTranspose in the deeper half of the decoder, Resize in the shallower half).
    """
    if upsample not in _UPSAMPLE:
        raise ConfigError(f"trtlab.zoo.unet: upsample={upsample!r} is not one of {_UPSAMPLE}")
    if depth < 1 or channels < 1 or in_channels < 1 or num_classes < 1:
        raise ConfigError(f"trtlab.zoo.unet: depth={depth}, channels={channels}, in_channels={in_channels} and "
                          f"num_classes={num_classes} must all be at least 1")
    if image_size % 2 ** depth or image_size < 2 ** depth:
        raise ConfigError(f"trtlab.zoo.unet: image_size={image_size} must be a positive multiple of "
                          f"2**depth={2 ** depth}; try 128 or 64")
    g = GraphBuilder("unet", seed)
    side = min(image_size, 128)  # probe about one 128x128 image's worth of pixels, however small the image
    x = g.input("image", TensorProto.FLOAT, ["batch", in_channels, image_size, image_size],
                probe_shape=(-(-128 * 128 // (side * side)), in_channels, side, side))
    skips = []
    for level in range(depth):
        x = _double_conv(g, x, channels * 2 ** level, f"encoder.{level}")
        skips.append(x)
        x = g.maxpool(x, f"encoder.{level}.pool", kernel=2, stride=2)
    x = _double_conv(g, x, channels * 2 ** depth, "bottleneck")
    for i, level in enumerate(reversed(range(depth))):
        prefix, cout = f"decoder.{i}", channels * 2 ** level
        if upsample == "transpose" or (upsample == "mixed" and i < (depth + 1) // 2):
            x = g.conv_transpose(x, cout, f"{prefix}.up")
        else:
            x = g.conv(_resize2x(g, x, f"{prefix}.resize"), cout, 1, f"{prefix}.up", bias=True, gain=1.0)
        skip = skips[level]
        x = g.node("Concat", [x, skip], f"{prefix}.concat", probe=np.concatenate([g.probe[x], g.probe[skip]], 1),
                   axis=1)
        x = _double_conv(g, x, cout, prefix)
    x = g.conv(x, num_classes, 1, "head.conv", bias=True)
    g.node("Sigmoid", [x], "head.sigmoid", outputs=["mask"])
    g.output("mask", TensorProto.FLOAT, ["batch", num_classes, image_size, image_size])
    return g.build(f"unet: random-weight U-Net (base {channels} channels, depth {depth}, {upsample} upsampling, "
                   f"BatchNormalization not folded), input 'image' [batch,{in_channels},{image_size},{image_size}], "
                   f"output 'mask' [batch,{num_classes},{image_size},{image_size}].")
