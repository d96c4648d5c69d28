"""A BERT encoder: Gather embeddings, MatMul/Softmax self-attention, LayerNormalization, Erf GELU."""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto

from trtlab.errors import ConfigError
from trtlab.zoo._graph import GraphBuilder

# layers, hidden, heads, default vocabulary. BERT-base's real vocabulary is 30522 words; the
# default here is 8192 so that the model (about 350 MB of weights at base size) builds in seconds.
SIZES = {"small": (4, 256, 4, 8192), "base": (12, 768, 12, 8192)}


class _Bert:
    """Holds the builder and the shared constants while the encoder is assembled."""

    def __init__(self, g: GraphBuilder, hidden: int, heads: int) -> None:
        self.g, self.hidden, self.heads = g, hidden, heads
        self.head_dim = hidden // heads
        self.split_shape = g.const("shape.split_heads", np.array([0, 0, heads, self.head_dim], dtype=np.int64))
        self.merge_shape = g.const("shape.merge_heads", np.array([0, 0, hidden], dtype=np.int64))
        self.scale = g.scalar("attention.scale", math.sqrt(self.head_dim))
        self.mask: str | None = None

    def dense(self, x: str, fan_in: int, fan_out: int, name: str) -> str:
        """MatMul + bias Add with 1/sqrt(fan_in) weights, the way exporters write nn.Linear on 3-D input."""
        w = self.g.const(f"{name}.weight", self.g.normal((fan_in, fan_out), 1.0 / math.sqrt(fan_in)))
        b = self.g.const(f"{name}.bias", self.g.normal((fan_out,), 0.02))
        return self.g.node("Add", [self.g.node("MatMul", [x, w], name), b], f"{name}.add_bias")

    def layer_norm(self, x: str, name: str, output: str | None = None) -> str:
        """LayerNormalization over the hidden axis with non-trivial scale and bias."""
        scale = self.g.const(f"{name}.weight", self.g.normal((self.hidden,), 0.1, mean=1.0))
        bias = self.g.const(f"{name}.bias", self.g.normal((self.hidden,), 0.05))
        return self.g.node("LayerNormalization", [x, scale, bias], name, outputs=[output] if output else None,
                           axis=-1, epsilon=1e-12)

    def gelu(self, x: str, name: str) -> str:
        """GELU as x * 0.5 * (1 + erf(x / sqrt 2)), the form ONNX Runtime fuses."""
        g = self.g
        y = g.node("Div", [x, g.scalar("gelu.sqrt2", math.sqrt(2.0))], f"{name}.div")
        y = g.node("Erf", [y], f"{name}.erf")
        y = g.node("Add", [y, g.scalar("const.one", 1.0)], f"{name}.add")
        y = g.node("Mul", [x, y], f"{name}.mul")
        return g.node("Mul", [y, g.scalar("gelu.half", 0.5)], f"{name}.mul_half")

    def heads_of(self, x: str, name: str, perm: list[int]) -> str:
        """[batch, seq, hidden] -> [batch, heads, seq, head_dim] (or keys: [batch, heads, head_dim, seq])."""
        y = self.g.node("Reshape", [x, self.split_shape], f"{name}.reshape")
        return self.g.node("Transpose", [y], f"{name}.transpose", perm=perm)

    def attention(self, x: str, p: str) -> str:
        """Multi-head self-attention with output projection, residual Add and LayerNormalization."""
        g, h = self.g, self.hidden
        q = self.heads_of(self.dense(x, h, h, f"{p}.self.query"), f"{p}.self.query", [0, 2, 1, 3])
        k = self.heads_of(self.dense(x, h, h, f"{p}.self.key"), f"{p}.self.key", [0, 2, 3, 1])
        v = self.heads_of(self.dense(x, h, h, f"{p}.self.value"), f"{p}.self.value", [0, 2, 1, 3])
        scores = g.node("Div", [g.node("MatMul", [q, k], f"{p}.self.scores"), self.scale], f"{p}.self.scale")
        if self.mask is not None:
            scores = g.node("Add", [scores, self.mask], f"{p}.self.mask_add")
        probs = g.node("Softmax", [scores], f"{p}.self.softmax", axis=-1)
        ctx = g.node("MatMul", [probs, v], f"{p}.self.context")
        ctx = g.node("Transpose", [ctx], f"{p}.self.context.transpose", perm=[0, 2, 1, 3])
        ctx = g.node("Reshape", [ctx, self.merge_shape], f"{p}.self.context.reshape")
        out = self.dense(ctx, h, h, f"{p}.output.dense")
        return self.layer_norm(g.node("Add", [out, x], f"{p}.output.add"), f"{p}.output.LayerNorm")

    def feed_forward(self, x: str, p: str, output: str | None) -> str:
        """Dense to 4x hidden, GELU, dense back, residual Add and LayerNormalization."""
        h = self.hidden
        y = self.gelu(self.dense(x, h, 4 * h, f"{p}.intermediate.dense"), f"{p}.intermediate.gelu")
        y = self.dense(y, 4 * h, h, f"{p}.output.dense")
        return self.layer_norm(self.g.node("Add", [y, x], f"{p}.output.add"), f"{p}.output.LayerNorm", output)


def bert(seed: int = 0, size: str = "small", vocab_size: int | None = None, max_position: int = 512,
         attention_mask: bool = False) -> onnx.ModelProto:
    """BERT encoder ("small": 4 layers/256 hidden/4 heads, "base": 12/768/12); save with onnx.save(model, path).

    Input 'input_ids' int64 [batch, sequence] with ids in [0, vocab_size) (default vocabulary
    8192, not BERT's 30522, to keep base at about 350 MB), sequence <= max_position; with
    `attention_mask=True` also 'attention_mask' int64 [batch, sequence] (1 = attend, 0 = padding).
    Outputs 'last_hidden_state' [batch, sequence, hidden] and 'pooler_output' [batch, hidden].
    """
    if size not in SIZES:
        raise ConfigError(f"trtlab.zoo.bert: size={size!r} is not one of {sorted(SIZES)}")
    layers, hidden, heads, default_vocab = SIZES[size]
    vocab = default_vocab if vocab_size is None else vocab_size
    if vocab < 2 or max_position < 1:
        raise ConfigError(f"trtlab.zoo.bert: vocab_size={vocab} must be at least 2 and max_position={max_position} "
                          "at least 1")
    name = f"bert_{size}"
    g = GraphBuilder(name, seed)
    b = _Bert(g, hidden, heads)
    ids = g.input("input_ids", TensorProto.INT64, ["batch", "sequence"],
                  doc=f"token ids in [0, {vocab}); sequence length at most {max_position}")

    word = g.const("embeddings.word_embeddings.weight", g.normal((vocab, hidden), 0.05))
    pos = g.const("embeddings.position_embeddings.weight", g.normal((max_position, hidden), 0.02))
    types = g.const("embeddings.token_type_embeddings.weight", g.normal((2, hidden), 0.02))
    x = g.node("Gather", [word, ids], "embeddings.word_embeddings", axis=0)
    # Position ids 0..sequence-1 for every row, built elementwise (ones, exclusive CumSum) rather
    # than by Range so that shape inference keeps [batch, sequence] through the whole encoder.
    zero, one = g.scalar("const.zero_i64", 0, np.int64), g.scalar("const.one_i64", 1, np.int64)
    ones = g.node("Add", [g.node("Mul", [ids, zero], "embeddings.position_ids.zeros"), one],
                  "embeddings.position_ids.ones")
    positions = g.node("CumSum", [ones, one], "embeddings.position_ids", exclusive=1)
    x = g.node("Add", [x, g.node("Gather", [pos, positions], "embeddings.position_embeddings", axis=0)],
               "embeddings.add_position")
    # token_type_ids are all 0 here: add row 0 of the token-type table.
    token_type = g.node("Gather", [types, "const.zero_i64"], "embeddings.token_type_embeddings", axis=0)
    x = g.node("Add", [x, token_type], "embeddings.add_token_type")
    x = b.layer_norm(x, "embeddings.LayerNorm")

    if attention_mask:
        mask = g.input("attention_mask", TensorProto.INT64, ["batch", "sequence"], doc="1 = attend, 0 = padding")
        m = g.node("Cast", [mask], "extended_attention_mask.cast", to=TensorProto.FLOAT)
        m = g.node("Sub", [g.scalar("const.one", 1.0), m], "extended_attention_mask.invert")
        # -10000 rather than float32's minimum so that the graph stays finite in fp16.
        m = g.node("Mul", [m, g.scalar("attention.mask_value", -10000.0)], "extended_attention_mask.scale")
        axes = g.const("extended_attention_mask.axes", np.array([1, 2], dtype=np.int64))
        b.mask = g.node("Unsqueeze", [m, axes], "extended_attention_mask")

    for i in range(layers):
        p = f"encoder.layer.{i}"
        x = b.attention(x, f"{p}.attention")
        x = b.feed_forward(x, p, "last_hidden_state" if i == layers - 1 else None)

    first = g.node("Gather", [x, "const.zero_i64"], "pooler.first_token", axis=1)
    w = g.const("pooler.dense.weight", g.normal((hidden, hidden), 1.0 / math.sqrt(hidden)))
    bias = g.const("pooler.dense.bias", g.normal((hidden,), 0.02))
    pooled = g.node("Gemm", [first, w, bias], "pooler.dense")
    g.node("Tanh", [pooled], "pooler.activation", outputs=["pooler_output"])
    g.output("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden])
    g.output("pooler_output", TensorProto.FLOAT, ["batch", hidden])
    inputs = "'input_ids'" + (" and 'attention_mask'" if attention_mask else "")
    return g.build(f"{name}: random-weight BERT encoder ({layers} layers, hidden {hidden}, {heads} heads, "
                   f"vocabulary {vocab}, Erf GELU), inputs {inputs} int64 [batch, sequence], outputs "
                   f"'last_hidden_state' [batch,sequence,{hidden}] and 'pooler_output' [batch,{hidden}].",
                   metadata={"trtlab.zoo.input_range.input_ids": f"0,{vocab}",
                             **({"trtlab.zoo.input_range.attention_mask": "0,2"} if attention_mask else {}),
                             "trtlab.zoo.max_sequence": str(max_position)})
