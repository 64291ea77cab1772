"""Meta RNN: an LSTM that learns to learn from its own input, error and label stream.

[1] S. Hochreiter, A. S. Younger, P. R. Conwell (2001), "Learning to Learn Using
    Gradient Descent", ICANN. https://doi.org/10.1007/3-540-44668-0_13
[2] L. Kirsch, J. Schmidhuber (2021), "Meta Learning Backpropagation And Improving It",
    the baseline configuration. https://arxiv.org/abs/2012.14905

The LSTM's weights are the meta-parameters; everything learnt within an episode lives in
its hidden and cell state. The helpers here (the [x, e, y] input, the initialisation,
the LSTM cell) are shared with the other meta-learned baselines.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from vsml_bench.errors import UserError
from vsml_bench.learner import Learner, PyTree, prev_error, soft_clip

FORGET_OFFSET = 1.0
"""Fixed offset added to the forget-gate pre-activation (not a parameter).

With zero biases the forget gate then starts near sigmoid(1) = 0.73 instead of 0.5, the
usual default of Haiku's and TensorFlow's LSTM (Jozefowicz et al. 2015), so the state
is kept longer at the start of meta-training.
"""


def init_dense(key: jax.Array, fan_in: int, fan_out: int) -> dict[str, jax.Array]:
    """A linear layer: w [fan_in, fan_out] truncated normal, std 1/sqrt(fan_in); b 0."""
    return {
        "w": jax.nn.initializers.lecun_normal()(key, (fan_in, fan_out), jnp.float32),
        "b": jnp.zeros((fan_out,), jnp.float32),
    }


def init_lstm(
    key: jax.Array, input_size: int, hidden_size: int
) -> dict[str, jax.Array]:
    """LSTM weights: w [I + H, 4H] (rows: input then h), b [4H].

    Columns are the gates in the order (i, g, f, o). w is truncated normal with std
    1/sqrt(I + H), b is zero: 4H(I + H) + 4H numbers.
    """
    return init_dense(key, input_size + hidden_size, 4 * hidden_size)


def lstm_step(
    params: dict[str, jax.Array], u: jax.Array, h: jax.Array, c: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """One LSTM update.

    Args:
        params: from `init_lstm`.
        u: input, [I].
        h, c: hidden and cell state, [H] each.
    Returns:
        (h', c'), [H] each.
    """
    z = jnp.concatenate([u, h]) @ params["w"] + params["b"]
    z_i, z_g, z_f, z_o = jnp.split(z, 4)
    c = jax.nn.sigmoid(z_f + FORGET_OFFSET) * c + jax.nn.sigmoid(z_i) * jnp.tanh(z_g)
    h = jax.nn.sigmoid(z_o) * jnp.tanh(c)
    return h, c


def feedback_input(
    x: jax.Array, prev_logits: jax.Array, prev_label: jax.Array
) -> jax.Array:
    """u_t = [x_t (flattened), e_{t-1}, y_{t-1}]: [A + 2C]; e and y are 0 at t = 0."""
    error = prev_error(prev_logits, prev_label)
    return jnp.concatenate([jnp.ravel(x).astype(jnp.float32), error, prev_label])


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class MetaRNNState:
    """Episode state of the Meta RNN.

    Attributes:
        h, c: LSTM hidden and cell state, [H] each.
        prev_logits: o_{t-1}, kept to form e_{t-1} once y_{t-1} arrives; [C].
    """

    h: jax.Array
    c: jax.Array
    prev_logits: jax.Array


def check_positive(learner: Learner, **sizes: int) -> None:
    """Raise `UserError` for any size option below 1."""
    for option, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(
                f"learner {learner.name!r}: {option} must be an int >= 1, got {value!r}"
            )


@dataclass(frozen=True)
class MetaRNN(Learner):
    """An LSTM reading [x_t, e_{t-1}, y_{t-1}], with a linear read-out to the logits.

    Per example, with u_t = [x_t, e_{t-1}, y_{t-1}] (x flattened; e, y zero at t = 0):

        (h, c) <- LSTM(u_t, h, c)        repeated `micro_ticks` times, same u_t
        o_t = 100 tanh((h W_out + b_out) / 100)

    The LSTM is standard: z = [u, h] W + b split into (i, g, f, o);
    c' = sigmoid(z_f + 1) c + sigmoid(z_i) tanh(z_g), h' = sigmoid(z_o) tanh(c').
    The +1 is a fixed forget-gate offset (`FORGET_OFFSET`), as in Haiku's LSTM.

    Meta-parameters: "lstm" {w [A + 2C + H, 4H], b [4H]} and "readout" {w [H, C],
    b [C]}; weights truncated normal with std 1/sqrt(fan_in), biases zero.
    The episode state starts at h = c = 0 (the reset key is unused).

    Attributes:
        hidden_size: H, LSTM units (128 in the reference experiments).
        micro_ticks: K, LSTM updates per example (2 in the reference experiments).
    """

    name = "meta_rnn"
    description = "LSTM reading input, error and label (Hochreiter et al. 2001)"

    hidden_size: int = 128
    micro_ticks: int = 2

    def __post_init__(self) -> None:
        check_positive(self, hidden_size=self.hidden_size, micro_ticks=self.micro_ticks)

    def init(self, key: jax.Array) -> PyTree:
        """LSTM and read-out weights."""
        k_lstm, k_out = jax.random.split(key)
        num_classes = self.spec.num_classes
        input_size = self.spec.input_size + 2 * num_classes
        return {
            "lstm": init_lstm(k_lstm, input_size, self.hidden_size),
            "readout": init_dense(k_out, self.hidden_size, num_classes),
        }

    def reset(self, key: jax.Array, meta_params: PyTree) -> MetaRNNState:
        """h = c = 0 and no previous logits."""
        zeros = jnp.zeros((self.hidden_size,), jnp.float32)
        return MetaRNNState(
            h=zeros,
            c=zeros,
            prev_logits=jnp.zeros((self.spec.num_classes,), jnp.float32),
        )

    def step(
        self,
        meta_params: PyTree,
        state: MetaRNNState,
        x: jax.Array,
        prev_label: jax.Array,
    ) -> tuple[MetaRNNState, jax.Array]:
        """K LSTM updates on [x_t, e_{t-1}, y_{t-1}], then the read-out."""
        u = feedback_input(x, state.prev_logits, prev_label)

        h, c = state.h, state.c
        for _ in range(self.micro_ticks):
            h, c = lstm_step(meta_params["lstm"], u, h, c)

        readout = meta_params["readout"]
        logits = soft_clip(h @ readout["w"] + readout["b"])
        return MetaRNNState(h=h, c=c, prev_logits=logits), logits
