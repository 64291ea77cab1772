"""A causal Transformer that learns in context from the stream of examples.

Kirsch, Harrison, Sohl-Dickstein and Metz 2022, "General-Purpose In-Context Learning by
Meta-Learning Transformers" (https://arxiv.org/abs/2212.04458). The token of step t is
the concatenation [x_t, onehot(y_{t-1})]; a causal Transformer reads the tokens so far
and predicts y_t from its output at token t. Nothing changes in its weights within an
episode: whatever it learns is in its key-value cache, which is the learner's state, so
that it steps one token at a time like every other learner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from vsml_bench.errors import UserError
from vsml_bench.learner import Learner, PyTree

_LAYER_NORM_EPS = 1e-5


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class TransformerState:
    """The key-value cache of one episode.

    Attributes:
        keys: cached attention keys, [num_layers, context, num_heads, head_size].
        values: cached attention values, same shape.
        t: number of tokens read so far, int32 scalar. Token t sits in slot
            t mod context: the cache is a ring buffer.
    """

    keys: jax.Array
    values: jax.Array
    t: jax.Array


def _dense(key: jax.Array, fan_in: int, fan_out: int) -> dict[str, jax.Array]:
    return {
        "w": jax.nn.initializers.lecun_normal()(key, (fan_in, fan_out), jnp.float32),
        "b": jnp.zeros((fan_out,), jnp.float32),
    }


def _layer_norm_params(size: int) -> dict[str, jax.Array]:
    return {
        "scale": jnp.ones((size,), jnp.float32),
        "bias": jnp.zeros((size,), jnp.float32),
    }


def layer_norm(params: dict[str, jax.Array], h: jax.Array) -> jax.Array:
    """Normalise the last axis of h, then scale and shift."""
    mean = jnp.mean(h, axis=-1, keepdims=True)
    var = jnp.var(h, axis=-1, keepdims=True)
    normalised = (h - mean) * jax.lax.rsqrt(var + _LAYER_NORM_EPS)
    return normalised * params["scale"] + params["bias"]


def dense(params: dict[str, jax.Array], h: jax.Array) -> jax.Array:
    """h W + b."""
    return h @ params["w"] + params["b"]


@dataclass(frozen=True)
class InContextTransformer(Learner):
    """A pre-layer-norm causal Transformer over the tokens [x_t, onehot(y_{t-1})].

    Architecture: a linear embedding of the token to `d_model`, `num_layers` blocks
    (layer norm, multi-head causal self-attention, residual; layer norm, a GELU MLP of
    width `mlp_ratio * d_model`, residual), a final layer norm and a linear read-out to
    the logits of y_t.

    Choices where the paper leaves room:
    - No positional encoding. Attention over the cache is then a function of the set
      of earlier tokens, which suits an i.i.d. stream, and the cache needs no positions.
    - The cache holds `context` tokens. Beyond that the window slides: token t attends
      to tokens t - context + 1 .. t, in every layer; older tokens are forgotten. This
      is exactly a full forward pass with a banded causal mask of width `context`.
    - Weights: LeCun-normal kernels (truncated normal, variance 1/fan_in), zero biases,
      layer norms at scale 1 and bias 0.
    - `reset` ignores its key: an episode starts from an empty cache.

    Cost: the cache takes 2 * num_layers * context * d_model floats per episode (1 MiB
    at the defaults), and one step attends over `context` slots in every layer.
    Defaults are small, for meta-training on a CPU.
    """

    name = "transformer"
    description = "causal Transformer learning in context (Kirsch et al. 2022)"

    num_layers: int = 2
    d_model: int = 128
    num_heads: int = 4
    mlp_ratio: int = 4
    context: int = 512

    def __post_init__(self) -> None:
        for option in ("num_layers", "d_model", "num_heads", "mlp_ratio", "context"):
            value = getattr(self, option)
            if value < 1:
                raise UserError(
                    f"learner 'transformer': {option} must be >= 1, got {value!r}"
                )
        if self.d_model % self.num_heads:
            raise UserError(
                f"learner 'transformer': d_model {self.d_model} must be a multiple of "
                f"num_heads {self.num_heads}"
            )

    @property
    def head_size(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.num_heads

    @property
    def token_size(self) -> int:
        """Width of one token [x_t, onehot(y_{t-1})]."""
        return self.spec.input_size + self.spec.num_classes

    def init(self, key: jax.Array) -> PyTree:
        """The Transformer's weights.

        Returns:
            {"embed": dense [token_size, D], "layers": a list of num_layers dicts
            {"ln_attn", "qkv" [D, 3D], "attn_out" [D, D], "ln_mlp", "mlp_in" [D, F],
            "mlp_out" [F, D]}, "ln_final", "readout" [D, C]}, with D = d_model and
            F = mlp_ratio * d_model.
        """
        d, f = self.d_model, self.mlp_ratio * self.d_model
        k_embed, k_readout, *k_layers = jax.random.split(key, 2 + self.num_layers)
        layers = []
        for k_layer in k_layers:
            k_qkv, k_out, k_in, k_mlp_out = jax.random.split(k_layer, 4)
            layers.append(
                {
                    "ln_attn": _layer_norm_params(d),
                    "qkv": _dense(k_qkv, d, 3 * d),
                    "attn_out": _dense(k_out, d, d),
                    "ln_mlp": _layer_norm_params(d),
                    "mlp_in": _dense(k_in, d, f),
                    "mlp_out": _dense(k_mlp_out, f, d),
                }
            )
        return {
            "embed": _dense(k_embed, self.token_size, d),
            "layers": layers,
            "ln_final": _layer_norm_params(d),
            "readout": _dense(k_readout, d, self.spec.num_classes),
        }

    def reset(self, key: jax.Array, meta_params: PyTree) -> TransformerState:
        """An empty cache."""
        shape = (self.num_layers, self.context, self.num_heads, self.head_size)
        return TransformerState(
            keys=jnp.zeros(shape, jnp.float32),
            values=jnp.zeros(shape, jnp.float32),
            t=jnp.zeros((), jnp.int32),
        )

    def step(
        self,
        meta_params: PyTree,
        state: TransformerState,
        x: jax.Array,
        prev_label: jax.Array,
    ) -> tuple[TransformerState, jax.Array]:
        """Read token t = [x_t, y_{t-1}], add it to the cache, predict y_t."""
        token = jnp.concatenate([x.reshape(-1), prev_label]).astype(jnp.float32)
        h = dense(meta_params["embed"], token)

        slot = state.t % self.context
        filled = jnp.arange(self.context) <= jnp.minimum(state.t, self.context - 1)
        keys, values = state.keys, state.values
        for i, layer in enumerate(meta_params["layers"]):
            qkv = dense(layer["qkv"], layer_norm(layer["ln_attn"], h))
            q, k, v = qkv.reshape(3, self.num_heads, self.head_size)
            keys = keys.at[i, slot].set(k)
            values = values.at[i, slot].set(v)

            # Slots not yet written hold zeros; they must get no attention weight.
            scores = jnp.einsum("hd,shd->hs", q, keys[i]) / math.sqrt(self.head_size)
            scores = jnp.where(filled, scores, -jnp.inf)
            weights = jax.nn.softmax(scores, axis=-1)
            attended = jnp.einsum("hs,shd->hd", weights, values[i])
            h = h + dense(layer["attn_out"], attended.reshape(-1))

            hidden = jax.nn.gelu(dense(layer["mlp_in"], layer_norm(layer["ln_mlp"], h)))
            h = h + dense(layer["mlp_out"], hidden)

        logits = dense(meta_params["readout"], layer_norm(meta_params["ln_final"], h))
        return TransformerState(keys, values, state.t + 1), logits
