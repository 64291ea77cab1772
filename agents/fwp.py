"""Fast weight programmer: a slow linear net programs a fast matrix with the delta rule.

[1] I. Schlag, K. Irie, J. Schmidhuber (2021), "Linear Transformers Are Secretly Fast
    Weight Programmers", ICML. https://arxiv.org/abs/2102.11174
[2] L. Kirsch, J. Schmidhuber (2021), "Meta Learning Backpropagation And Improving It",
    the baseline configuration. https://arxiv.org/abs/2012.14905
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp

from vsml_bench.agents.meta_rnn import check_positive, feedback_input, init_dense
from vsml_bench.errors import UserError
from vsml_bench.learner import Learner, PyTree, soft_clip

WriteKey = Literal["previous", "current"]


def feature_map(z: jax.Array) -> jax.Array:
    """phi(z) = (elu(z) + 1) / sum(elu(z) + 1): positive, sums to 1, as in [1]."""
    phi = jax.nn.elu(z) + 1.0
    return phi / jnp.sum(phi, axis=-1, keepdims=True)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class FastWeightState:
    """Episode state of the fast weight programmer.

    Attributes:
        fast: W, the fast weight matrix, [V, D].
        prev_key: phi(k_{t-1}), the key emitted at the previous step, [D]; 0 at t = 0.
        prev_logits: o_{t-1}; [C].
    """

    fast: jax.Array
    prev_key: jax.Array
    prev_logits: jax.Array


@dataclass(frozen=True)
class FastWeightProgrammer(Learner):
    """A slow linear net emits key, value, query and write strength for a fast matrix.

    Per example, with u_t = [x_t, e_{t-1}, y_{t-1}] (x flattened; e, y zero at t = 0):

        k_t, v_t, q_t, b_t = u_t W_slow + b_slow       split [D, V, D, 1]
        beta = sigmoid(b_t)
        k = phi(k_{t-1}) or phi(k_t) (`write_key`)   phi: elu + 1, sum-normalised
        W <- W + beta (v_t - W k) k^T                   delta rule
        o_t = 100 tanh(((W phi(q_t)) W_out + b_out) / 100)

    The key written at step t is chosen by `write_key`:
    - "previous" (default): k = phi(k_{t-1}), the key the slow net emitted for x_{t-1}.
      The value v_t is emitted together with the feedback (e_{t-1}, y_{t-1}) of that
      same example, so the fast matrix can associate an input with its own label. At
      t = 0 the stored key is zero and nothing is written.
    - "current": k = phi(k_t), as in [1], where key and value come from the same step.
      A feed-forward slow net then pairs x_t with the feedback of x_{t-1}, which on a
      stream of independent examples associates unrelated inputs and labels.
    The write comes before the read, as in [1]. Keys and queries use [1]'s
    sum normalisation, which keeps the delta rule stable for beta in (0, 1).

    Choices where [1] and [2] leave room: the sizes D = 64, V = 32 (not given for the
    reference experiments); a linear read-out from the fast net's output to the logits;
    the logits are soft-clipped like VSML's.

    Meta-parameters: "slow" {w [A + 2C, 2D + V + 1], b}, "readout" {w [V, C], b [C]};
    weights truncated normal with std 1/sqrt(fan_in), biases zero. W starts at 0 in
    every episode (the reset key is unused).

    Attributes:
        key_size: D, size of keys and queries.
        value_size: V, size of values and of the fast net's output.
        write_key: "previous" or "current", see above.
    """

    name = "fwp"
    description = "fast weight programmer with the delta rule (Schlag et al. 2021)"

    key_size: int = 64
    value_size: int = 32
    write_key: WriteKey = "previous"

    def __post_init__(self) -> None:
        check_positive(self, key_size=self.key_size, value_size=self.value_size)
        if self.write_key not in ("previous", "current"):
            raise UserError(
                f"learner {self.name!r}: write_key must be 'previous' or 'current', "
                f"got {self.write_key!r}"
            )

    def init(self, key: jax.Array) -> PyTree:
        """Slow net and read-out."""
        k_slow, k_out = jax.random.split(key)
        num_classes = self.spec.num_classes
        input_size = self.spec.input_size + 2 * num_classes
        slow_size = 2 * self.key_size + self.value_size + 1
        return {
            "slow": init_dense(k_slow, input_size, slow_size),
            "readout": init_dense(k_out, self.value_size, num_classes),
        }

    def reset(self, key: jax.Array, meta_params: PyTree) -> FastWeightState:
        """W = 0 and no stored key."""
        return FastWeightState(
            fast=jnp.zeros((self.value_size, self.key_size), jnp.float32),
            prev_key=jnp.zeros((self.key_size,), jnp.float32),
            prev_logits=jnp.zeros((self.spec.num_classes,), jnp.float32),
        )

    def step(
        self,
        meta_params: PyTree,
        state: FastWeightState,
        x: jax.Array,
        prev_label: jax.Array,
    ) -> tuple[FastWeightState, jax.Array]:
        """Slow net, delta-rule write, read with the query, read-out."""
        p = meta_params
        u = feedback_input(x, state.prev_logits, prev_label)
        slow = u @ p["slow"]["w"] + p["slow"]["b"]
        key, value, query = jnp.split(
            slow[:-1], [self.key_size, self.key_size + self.value_size]
        )
        beta = jax.nn.sigmoid(slow[-1])
        key = feature_map(key)

        written = state.prev_key if self.write_key == "previous" else key
        fast = state.fast + beta * jnp.outer(value - state.fast @ written, written)

        out = fast @ feature_map(query)
        logits = soft_clip(out @ p["readout"]["w"] + p["readout"]["b"])
        return FastWeightState(fast=fast, prev_key=key, prev_logits=logits), logits
