"""Fast Weight Memory: an LSTM with a tensor memory written by the delta rule.

[1] I. Schlag, T. Munkhdalai, J. Schmidhuber (2021), "Learning Associative Inference
    Using Fast Weight Memory", ICLR. https://arxiv.org/abs/2011.07831
[2] L. Kirsch, J. Schmidhuber (2021), "Meta Learning Backpropagation And Improving It",
    the baseline configuration. https://arxiv.org/abs/2012.14905
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from vsml_bench.agents.meta_rnn import (
    check_positive,
    feedback_input,
    init_dense,
    init_lstm,
    lstm_step,
)
from vsml_bench.learner import Learner, PyTree, soft_clip

LAYER_NORM_EPS = 1e-5


def layer_norm(
    r: jax.Array, scale: jax.Array, offset: jax.Array, eps: float = LAYER_NORM_EPS
) -> jax.Array:
    """(r - mean) / sqrt(var + eps) * scale + offset over the last axis."""
    mean = jnp.mean(r, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(r - mean), axis=-1, keepdims=True)
    return (r - mean) * jax.lax.rsqrt(var + eps) * scale + offset


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class FastWeightMemoryState:
    """Episode state of the fast weight memory learner.

    Attributes:
        h, c: LSTM hidden and cell state, [H] each.
        memory: F, [V, D * D]: one V-vector per entry of the key outer product.
        prev_logits: o_{t-1}; [C].
    """

    h: jax.Array
    c: jax.Array
    memory: jax.Array
    prev_logits: jax.Array


@dataclass(frozen=True)
class FastWeightMemory(Learner):
    """An LSTM plus a V x D^2 memory (16 x 256 by default), written by the delta rule.

    Per example, with u_t = [x_t, e_{t-1}, y_{t-1}] (x flattened; e, y zero at t = 0):

        (h, c) = LSTM(u_t, h, c)                       as in `meta_rnn`, one update
        k1, k2, v = tanh(h W_write + b_write) split [D, D, V]
        beta = sigmoid(last entry of h W_write + b_write)
        k = vec(k1 (x) k2)                            [D^2]
        F' = F + beta (v - F k) k^T                   delta rule: replace F k by v
        F = F' / max(1, ||F'||)                       Frobenius norm, keeps F bounded
        q1, q2 = tanh(h W_query + b_query) split [D, D]; q = vec(q1 (x) q2)
        r = LayerNorm(F q)                            [V], learnt scale and offset
        o_t = 100 tanh(((h + r W_proj) W_out + b_out) / 100)

    The write comes before the read, so the read sees what this step stored. The delta
    rule, the outer-product key, the bound on F's norm and the layer-normed read added
    to the LSTM output follow [1] as we read it, with one read step. The LSTM must carry
    x_{t-1} in its state to store it together with the feedback that arrives at step t.

    Choices where [1] and [2] leave room: tanh on keys, values and queries; the read is
    mapped from V to H by W_proj (no bias) before it is added to h; the logits are
    soft-clipped like VSML's.

    Meta-parameters: "lstm" {w [A + 2C + H, 4H], b [4H]}; "write" {w [H, 2D + V + 1],
    b}; "query" {w [H, 2D], b}; "norm" {scale [V] = 1, offset [V] = 0};
    "proj" {w [V, H]}; "readout" {w [H, C], b [C]}. Weights truncated normal with std
    1/sqrt(fan_in), biases zero. The episode starts with h = c = 0 and F = 0 (the reset
    key is unused).

    Attributes:
        hidden_size: H, LSTM units (32 in the reference experiments).
        key_size: D, size of each of the two key factors (16: keys of 16 x 16 = 256).
        value_size: V, size of a stored value (16).
    """

    name = "fw_memory"
    description = "LSTM with a delta-rule tensor memory (Schlag et al. 2021)"

    hidden_size: int = 32
    key_size: int = 16
    value_size: int = 16

    def __post_init__(self) -> None:
        check_positive(
            self,
            hidden_size=self.hidden_size,
            key_size=self.key_size,
            value_size=self.value_size,
        )

    def init(self, key: jax.Array) -> PyTree:
        """LSTM, memory heads, layer norm and read-out."""
        k_lstm, k_write, k_query, k_proj, k_out = jax.random.split(key, 5)
        hidden, keys, values = self.hidden_size, self.key_size, self.value_size
        num_classes = self.spec.num_classes
        input_size = self.spec.input_size + 2 * num_classes
        return {
            "lstm": init_lstm(k_lstm, input_size, hidden),
            "write": init_dense(k_write, hidden, 2 * keys + values + 1),
            "query": init_dense(k_query, hidden, 2 * keys),
            "norm": {
                "scale": jnp.ones((values,), jnp.float32),
                "offset": jnp.zeros((values,), jnp.float32),
            },
            "proj": {"w": init_dense(k_proj, values, hidden)["w"]},
            "readout": init_dense(k_out, hidden, num_classes),
        }

    def reset(self, key: jax.Array, meta_params: PyTree) -> FastWeightMemoryState:
        """Zero LSTM state and an empty memory."""
        zeros = jnp.zeros((self.hidden_size,), jnp.float32)
        return FastWeightMemoryState(
            h=zeros,
            c=zeros,
            memory=jnp.zeros((self.value_size, self.key_size**2), jnp.float32),
            prev_logits=jnp.zeros((self.spec.num_classes,), jnp.float32),
        )

    def step(
        self,
        meta_params: PyTree,
        state: FastWeightMemoryState,
        x: jax.Array,
        prev_label: jax.Array,
    ) -> tuple[FastWeightMemoryState, jax.Array]:
        """LSTM update, memory write, memory read, read-out."""
        p = meta_params
        keys = self.key_size
        u = feedback_input(x, state.prev_logits, prev_label)
        h, c = lstm_step(p["lstm"], u, state.h, state.c)

        write = h @ p["write"]["w"] + p["write"]["b"]
        k1, k2, value = jnp.split(jnp.tanh(write[:-1]), [keys, 2 * keys])
        beta = jax.nn.sigmoid(write[-1])
        k = jnp.outer(k1, k2).ravel()
        memory = state.memory + beta * jnp.outer(value - state.memory @ k, k)
        # Dividing by sqrt(max(1, ||F'||^2)) rather than max(1, ||F'||) gives the same
        # value but keeps gradients finite when F' = 0 (the norm's derivative is not).
        memory = memory * jax.lax.rsqrt(jnp.maximum(1.0, jnp.sum(jnp.square(memory))))

        q1, q2 = jnp.split(jnp.tanh(h @ p["query"]["w"] + p["query"]["b"]), 2)
        read = layer_norm(memory @ jnp.outer(q1, q2).ravel(), **p["norm"])

        out = h + read @ p["proj"]["w"]
        logits = soft_clip(out @ p["readout"]["w"] + p["readout"]["b"])
        new_state = FastWeightMemoryState(h=h, c=c, memory=memory, prev_logits=logits)
        return new_state, logits
