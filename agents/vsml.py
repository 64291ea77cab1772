"""VSML: variable shared meta learning, a network whose every weight is a tiny LSTM.

[1] L. Kirsch, J. Schmidhuber (2021), "Meta Learning Backpropagation And Improving It",
    NeurIPS 2021. https://arxiv.org/abs/2012.14905

Each connection (a, b) of a layer holds its own LSTM state (h_ab, c_ab) of N units; all
connections share one small set of LSTM parameters theta, so theta does not depend on
the layer sizes. Connections talk through M-dimensional messages: the forward message
arriving at input a and the backward message arriving at output b are the LSTM's input;
two linear heads of h emit the messages that leave the layer, averaged over the
connections that meet at an output (forward) or at an input (backward). Learning
within an episode is nothing but the evolution of the LSTM states.

The symbols of [1] map to options as: N = `state_size`, M = `message_size`,
K = `micro_ticks`; the fixed LSTM gate offsets are `INPUT_GATE_OFFSET` and
`FORGET_GATE_OFFSET`. The facts followed here are in docs/vsml.md.

Cost: the gate pre-activation W [m_fwd_a, m_bwd_b, h_ab] + bias is split into a term
per input (W_fwd m_fwd_a), one per output (W_bwd m_bwd_b), computed once per step, and
the only per-connection term W_h h_ab; a layer's connections are stored
connection-major, [A, B, N], so that the per-connection term of a whole layer is one
[A * B, N] x [N, 4N] matrix product per micro tick.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from vsml_bench.errors import UserError
from vsml_bench.learner import Learner, PyTree, prev_error, soft_clip

INPUT_GATE_OFFSET = -5.0
"""Added to the input-gate pre-activation: the gate starts near 0 (c barely written)."""

FORGET_GATE_OFFSET = 5.0
"""Added to the forget-gate pre-activation: the gate starts near 1 (state kept)."""

LOGIT_CHANNEL = 1
"""The channel of the last layer's forward message that carries the logits."""

_TRUNCATED_STD = 0.87962566103423978
"""Standard deviation of a standard normal truncated to [-2, 2]; dividing by it makes a
truncated-normal draw have exactly the stated standard deviation."""


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class VSMLState:
    """What a VSML network has learnt so far in an episode.

    Per layer i (first to last) of L layers, with S_i the layer's connection shape
    ([A, B] for a dense layer, [k, k, C_in, C_out] for a convolution):

    Attributes:
        h: LSTM hidden states, one [*S_i, N] array per layer.
        c: LSTM cell states, one [*S_i, N] array per layer.
        bwd_msg: for i < L - 1, the backward message that layer i+1 last emitted
            towards layer i, shape [*out_shape_i, M]; it is layer i's incoming
            backward message at its next run. Empty for a single layer.
        fwd_msg: with the backward pass only, the forward message each layer received
            in the last forward sweep, [*in_shape_i, M]; the backward sweep reuses it.
            Empty otherwise.
        logits: the previous prediction o_{t-1}, [num_classes], for the error.
    """

    h: tuple[jax.Array, ...]
    c: tuple[jax.Array, ...]
    bwd_msg: tuple[jax.Array, ...]
    fwd_msg: tuple[jax.Array, ...]
    logits: jax.Array


@dataclass(frozen=True)
class LayerShape:
    """The static geometry of one layer (dense or convolution), from `VSML.layers`."""

    kind: Literal["dense", "conv"]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: int = 1
    stride: int = 1
    pad: tuple[int, int] = (0, 0)
    """Zero rows and columns added before the first input row and column (SAME)."""

    @property
    def connections(self) -> tuple[int, ...]:
        """Shape of the connection grid: [A, B] or [k, k, C_in, C_out]."""
        if self.kind == "dense":
            return (self.in_shape[0], self.out_shape[0])
        return (self.kernel, self.kernel, self.in_shape[2], self.out_shape[2])

    @property
    def fan_in(self) -> int:
        """Inputs feeding one output: A, or k * k * C_in for a convolution."""
        return math.prod(self.connections[:-1])


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Output size and leading zero padding of a SAME convolution along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2


@dataclass(frozen=True)
class VSML(Learner):
    """Every weight a tiny LSTM, all sharing one set of parameters theta.

    Layers run first to last: the convolutions of `conv` (inputs are then images
    [H, W, C]), the dense layers of `hidden`, and a dense output layer with one output
    per class. The first layer's incoming forward message at input a is
    [x_a, 0, ..., 0]; the last layer's incoming backward message at output b is
    [e_b, l_b, 0, ..., 0] with e the error of the previous prediction and l the
    previous one-hot label (only with `label_input`, else 0). The logits are channel
    `LOGIT_CHANNEL` of the last layer's outgoing forward message, soft-clipped to
    +-100. Theta holds 4N(2M + N) + 4N + 2(NM + M) numbers (2,384 for N=16, M=8), or
    that many per layer with `lstm_per_layer`.

    Choices where the paper's description is silent:

    - Backward pass (`backward_pass`): the error of step t is known only at step t+1,
      so the backward sweep of step t runs at the start of step t+1, before its
      forward sweep; the order of all updates is the same as running it right after
      the forward sweep of step t. It reuses the forward messages each layer received
      in that sweep, carries the error and label to the last layer, and is skipped at
      t = 0 (no prediction yet). The forward sweep then gets an all-zero message
      from the feedback (error and label).
    - A layer's incoming backward message is always the one the layer above emitted
      at its latest run (forward or backward sweep).
    - Initial cell state: the first `init_fraction` of the N units of c are a
      standard normal truncated to [-2, 2], rescaled to a std of exactly
      1/sqrt(fan_in) (fan_in = A, or k*k*C_in for a convolution), drawn from the
      episode key; the rest of c and all of h are 0.
      Parameters: LSTM kernel and heads truncated normal with std 1/sqrt(fan_in),
      biases zero.
    - Convolutions: padded positions send the zero message but their LSTMs run and
      count in the averages (like zero inputs of a weight); input positions that
      feed no output (stride > kernel) receive the zero backward message.
    - Mini-batches (`step_batch`): every example has its own copy of the state, all
      copies start equal (`reset_batch`), and after each step the first
      `batch_shared_fraction` of the N units (in h and c) are replaced by their
      batch mean.

    Attributes:
        state_size: N, LSTM units per connection.
        message_size: M, size of the forward and backward messages (at least 2).
        micro_ticks: K, LSTM updates per layer and example; messages stay fixed.
        hidden: sizes of the dense hidden layers, e.g. (32,).
        conv: convolution layers before the dense ones, each (out_channels, kernel,
            stride); kernels are kernel x kernel with SAME padding.
        backward_pass: after the forward sweep, run the layers again last to first
            with the fresh error.
        label_input: also pass the previous one-hot label to the last layer.
        lstm_per_layer: one set of LSTM parameters per layer instead of one shared.
        init_fraction: share of the N cell units with a random initial value.
        batch_shared_fraction: share of the N units averaged over a mini-batch.
    """

    state_size: int = 16
    message_size: int = 8
    micro_ticks: int = 2
    hidden: tuple[int, ...] = ()
    conv: tuple[tuple[int, int, int], ...] = ()
    backward_pass: bool = False
    label_input: bool = False
    lstm_per_layer: bool = False
    init_fraction: float = 0.5
    batch_shared_fraction: float = 0.5

    name = "vsml"
    description = "VSML: every weight is a small LSTM sharing meta-parameters"

    def __post_init__(self) -> None:
        for field, value, least in (
            ("state_size", self.state_size, 1),
            ("message_size", self.message_size, 2),
            ("micro_ticks", self.micro_ticks, 1),
        ):
            if value < least:
                raise UserError(f"vsml {field}={value}: must be at least {least}")
        if any(size < 1 for size in self.hidden):
            raise UserError(f"vsml hidden={self.hidden}: sizes must be positive")
        for layer in self.conv:
            if len(layer) != 3 or any(v < 1 for v in layer):
                raise UserError(
                    f"vsml conv layer {layer}: expected positive "
                    "(out_channels, kernel, stride)"
                )
        if self.conv and len(self.spec.input_shape) != 3:
            raise UserError(
                f"vsml conv needs image inputs [H, W, C]; got input shape "
                f"{self.spec.input_shape}"
            )
        for field in ("init_fraction", "batch_shared_fraction"):
            value = getattr(self, field)
            if not 0.0 <= value <= 1.0:
                raise UserError(f"vsml {field}={value}: must be within [0, 1]")

    # Structure ---------------------------------------------------------------

    def layers(self) -> tuple[LayerShape, ...]:
        """The static geometry of every layer, first to last."""
        layers = []
        shape = tuple(self.spec.input_shape)
        for out_channels, kernel, stride in self.conv:
            height, pad_h = _same_padding(shape[0], kernel, stride)
            width, pad_w = _same_padding(shape[1], kernel, stride)
            out = (height, width, out_channels)
            layers.append(
                LayerShape("conv", shape, out, kernel, stride, (pad_h, pad_w))
            )
            shape = out
        for size in (*self.hidden, self.spec.num_classes):
            layers.append(LayerShape("dense", (math.prod(shape),), (size,)))
            shape = (size,)
        return tuple(layers)

    def _layer_params(self, meta_params: PyTree, index: int) -> PyTree:
        if not self.lstm_per_layer:
            return meta_params
        return jax.tree.map(lambda leaf: leaf[index], meta_params)

    # Learner contract ----------------------------------------------------------

    def init(self, key: jax.Array) -> PyTree:
        """Theta: the LSTM kernel [2M + N, 4N] (rows m_fwd, m_bwd, h; gate columns
        i, g, f, o), its bias [4N], and the forward and backward heads [N, M], [M].

        With `lstm_per_layer` every array gets a leading axis of size L (layers).
        """
        if self.lstm_per_layer:
            keys = jax.random.split(key, len(self.layers()))
            return jax.vmap(self._init_one)(keys)
        return self._init_one(key)

    def _init_one(self, key: jax.Array) -> dict[str, jax.Array]:
        N, M = self.state_size, self.message_size
        k_lstm, k_fwd, k_bwd = jax.random.split(key, 3)
        normal = jax.nn.initializers.lecun_normal()
        return {
            "kernel": normal(k_lstm, (2 * M + N, 4 * N), jnp.float32),
            "bias": jnp.zeros((4 * N,), jnp.float32),
            "fwd_w": normal(k_fwd, (N, M), jnp.float32),
            "fwd_b": jnp.zeros((M,), jnp.float32),
            "bwd_w": normal(k_bwd, (N, M), jnp.float32),
            "bwd_b": jnp.zeros((M,), jnp.float32),
        }

    def reset(self, key: jax.Array, meta_params: PyTree) -> VSMLState:
        """h = 0; c random in its first `init_fraction` units, from `key`."""
        N, M = self.state_size, self.message_size
        layers = self.layers()
        random_units = round(self.init_fraction * N)

        # One draw for all layers: each random-number kernel is slow to compile.
        sizes = [math.prod(layer.connections) * random_units for layer in layers]
        draws = jax.random.truncated_normal(key, -2.0, 2.0, (sum(sizes),))
        offsets = np.cumsum([0, *sizes])
        hs, cs = [], []
        for i, layer in enumerate(layers):
            std = 1.0 / math.sqrt(layer.fan_in)
            draw = draws[offsets[i] : offsets[i + 1]] * (std / _TRUNCATED_STD)
            draw = draw.reshape(*layer.connections, random_units)
            zeros = jnp.zeros((*layer.connections, N - random_units), jnp.float32)
            hs.append(jnp.zeros((*layer.connections, N), jnp.float32))
            cs.append(jnp.concatenate([draw.astype(jnp.float32), zeros], axis=-1))
        bwd_msg = tuple(
            jnp.zeros((*layer.out_shape, M), jnp.float32) for layer in layers[:-1]
        )
        fwd_msg = ()
        if self.backward_pass:
            fwd_msg = tuple(
                jnp.zeros((*layer.in_shape, M), jnp.float32) for layer in layers
            )
        logits = jnp.zeros((self.spec.num_classes,), jnp.float32)
        return VSMLState(tuple(hs), tuple(cs), bwd_msg, fwd_msg, logits)

    def step(
        self,
        meta_params: PyTree,
        state: VSMLState,
        x: jax.Array,
        prev_label: jax.Array,
    ) -> tuple[VSMLState, jax.Array]:
        """One example: x [*input_shape], prev_label [C] -> (state, logits [C])."""
        M = self.message_size
        layers = self.layers()
        prev_label = prev_label.astype(jnp.float32)

        error = prev_error(state.logits, prev_label)
        label = prev_label if self.label_input else jnp.zeros_like(prev_label)
        feedback = jnp.zeros((self.spec.num_classes, M), jnp.float32)
        feedback = feedback.at[:, 0].set(error).at[:, 1].set(label)

        if self.backward_pass:
            swept = self._backward_sweep(meta_params, state, feedback)
            has_label = jnp.sum(prev_label) > 0
            state = jax.tree.map(
                lambda new, old: jnp.where(has_label, new, old), swept, state
            )
            feedback = jnp.zeros_like(feedback)

        x = jnp.asarray(x, jnp.float32).reshape(layers[0].in_shape)
        fwd = jnp.zeros((*x.shape, M), jnp.float32).at[..., 0].set(x)
        hs, cs = list(state.h), list(state.c)
        bwd_msg = list(state.bwd_msg)
        fwd_msg = list(state.fwd_msg)
        for i, layer in enumerate(layers):
            if self.backward_pass:
                fwd_msg[i] = fwd
            bwd = feedback if i == len(layers) - 1 else bwd_msg[i]
            params = self._layer_params(meta_params, i)
            hs[i], cs[i], fwd, bwd_out = _run_layer(
                layer, params, hs[i], cs[i], fwd, bwd, self.micro_ticks
            )
            if i > 0:
                bwd_msg[i - 1] = bwd_out.reshape(bwd_msg[i - 1].shape)
            if i < len(layers) - 1:
                fwd = fwd.reshape(*layers[i + 1].in_shape, M)

        logits = soft_clip(fwd[:, LOGIT_CHANNEL])
        state = VSMLState(tuple(hs), tuple(cs), tuple(bwd_msg), tuple(fwd_msg), logits)
        return state, logits

    def _backward_sweep(
        self, meta_params: PyTree, state: VSMLState, feedback: jax.Array
    ) -> VSMLState:
        """The layers last to first with the error in `feedback` [C, M]."""
        layers = self.layers()
        hs, cs = list(state.h), list(state.c)
        bwd_msg = list(state.bwd_msg)
        bwd = feedback
        for i in reversed(range(len(layers))):
            params = self._layer_params(meta_params, i)
            hs[i], cs[i], _, bwd_out = _run_layer(
                layers[i],
                params,
                hs[i],
                cs[i],
                state.fwd_msg[i],
                bwd,
                self.micro_ticks,
            )
            if i > 0:
                bwd = bwd_out.reshape(bwd_msg[i - 1].shape)
                bwd_msg[i - 1] = bwd
        return dataclasses.replace(
            state, h=tuple(hs), c=tuple(cs), bwd_msg=tuple(bwd_msg)
        )

    # Mini-batches --------------------------------------------------------------

    def reset_batch(
        self, key: jax.Array, meta_params: PyTree, batch_size: int
    ) -> VSMLState:
        """`batch_size` equal copies of `reset(key, meta_params)` (leading axis)."""
        state = self.reset(key, meta_params)
        return jax.tree.map(
            lambda leaf: jnp.broadcast_to(leaf, (batch_size, *leaf.shape)), state
        )

    def step_batch(
        self,
        meta_params: PyTree,
        state: VSMLState,
        x: jax.Array,
        prev_label: jax.Array,
    ) -> tuple[VSMLState, jax.Array]:
        """A mini-batch step: every example updates its own state copy, then the
        first `batch_shared_fraction` of the N units of h and c take the batch mean.

        Args:
            meta_params: theta.
            state: from `reset_batch` or `step_batch`, a leading batch axis [Bt].
            x: [Bt, *input_shape].
            prev_label: one-hot labels of the previous batch, [Bt, C].
        Returns:
            the new state and logits [Bt, C].
        """
        state, logits = jax.vmap(self.step, in_axes=(None, 0, 0, 0))(
            meta_params, state, x, prev_label
        )
        shared = round(self.batch_shared_fraction * self.state_size)

        def share(leaf: jax.Array) -> jax.Array:
            mean = jnp.mean(leaf[..., :shared], axis=0, keepdims=True)
            return leaf.at[..., :shared].set(
                jnp.broadcast_to(mean, leaf[..., :shared].shape)
            )

        state = dataclasses.replace(
            state,
            h=tuple(share(h) for h in state.h),
            c=tuple(share(c) for c in state.c),
        )
        return state, logits


# Layers ------------------------------------------------------------------------


def _gate_offsets(N: int) -> jax.Array:
    """Fixed offsets of the gate pre-activations in the order (i, g, f, o)."""
    return jnp.concatenate(
        [
            jnp.full((N,), INPUT_GATE_OFFSET, jnp.float32),
            jnp.zeros((N,), jnp.float32),
            jnp.full((N,), FORGET_GATE_OFFSET, jnp.float32),
            jnp.zeros((N,), jnp.float32),
        ]
    )


def _split_kernel(params: PyTree, M: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    kernel = params["kernel"]
    return kernel[:M], kernel[M : 2 * M], kernel[2 * M :]


def _lstm_cell(z: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """LSTM update from the pre-activations z [..., 4N] (offsets included)."""
    N = c.shape[-1]
    i = jax.nn.sigmoid(z[..., :N])
    g = jnp.tanh(z[..., N : 2 * N])
    f = jax.nn.sigmoid(z[..., 2 * N : 3 * N])
    o = jax.nn.sigmoid(z[..., 3 * N :])
    c = f * c + i * g
    return o * jnp.tanh(c), c


def _run_layer(
    layer: LayerShape,
    params: PyTree,
    h: jax.Array,
    c: jax.Array,
    fwd: jax.Array,
    bwd: jax.Array,
    ticks: int,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Run one layer on one example; returns (h, c, outgoing fwd, outgoing bwd)."""
    if layer.kind == "dense":
        return _dense_layer(params, h, c, fwd, bwd, ticks)
    return _conv_layer(layer, params, h, c, fwd, bwd, ticks)


def _dense_layer(
    params: PyTree,
    h: jax.Array,
    c: jax.Array,
    fwd: jax.Array,
    bwd: jax.Array,
    ticks: int,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """K micro ticks of a dense layer's A * B LSTMs, then its outgoing messages.

    Args:
        params: theta of this layer.
        h, c: [A, B, N].
        fwd: incoming forward messages, [A, M].
        bwd: incoming backward messages, [B, M].
        ticks: K.
    Returns:
        h, c [A, B, N]; outgoing forward messages [B, M] (mean over a) and backward
        messages [A, M] (mean over b).
    """
    A, B, N = h.shape
    M = fwd.shape[-1]
    w_fwd, w_bwd, w_h = _split_kernel(params, M)

    # Terms of the gate pre-activation that are fixed across the micro ticks.
    per_input = fwd @ w_fwd + (params["bias"] + _gate_offsets(N))
    per_output = bwd @ w_bwd
    for _ in range(ticks):
        recurrent = (h.reshape(A * B, N) @ w_h).reshape(A, B, 4 * N)
        z = recurrent + per_input[:, None, :] + per_output[None, :, :]
        h, c = _lstm_cell(z, c)

    # The heads are linear, so the mean of the messages is the head of the mean.
    fwd_out = jnp.mean(h, axis=0) @ params["fwd_w"] + params["fwd_b"]
    bwd_out = jnp.mean(h, axis=1) @ params["bwd_w"] + params["bwd_b"]
    return h, c, fwd_out, bwd_out


def _conv_layer(
    layer: LayerShape,
    params: PyTree,
    h: jax.Array,
    c: jax.Array,
    fwd: jax.Array,
    bwd: jax.Array,
    ticks: int,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """K micro ticks of a convolution's kernel LSTMs at every output position.

    Args:
        layer: the geometry (H, W, C_in -> H', W', C_out; kernel k, stride s).
        params: theta of this layer.
        h, c: [k, k, C_in, C_out, N], shared by all positions.
        fwd: incoming forward messages, [H, W, C_in, M].
        bwd: incoming backward messages, [H', W', C_out, M].
        ticks: K.
    Returns:
        h, c averaged over the H' * W' positions; outgoing forward messages
        [H', W', C_out, M] (mean over the kernel window and C_in) and backward
        messages [H, W, C_in, M] (mean over every (position, kernel entry, C_out)
        that read the input position).
    """
    k, s = layer.kernel, layer.stride
    H, W, C_in = layer.in_shape
    H_out, W_out, C_out = layer.out_shape
    N = h.shape[-1]
    M = fwd.shape[-1]
    w_fwd, w_bwd, w_h = _split_kernel(params, M)
    pad_h, pad_w = layer.pad
    # The zero-padded input frame covers every window (and the whole input).
    span_h = max((H_out - 1) * s + k, pad_h + H)
    span_w = max((W_out - 1) * s + k, pad_w + W)
    frame = ((pad_h, span_h - H - pad_h), (pad_w, span_w - W - pad_w))

    def window(di: int, dj: int) -> tuple[slice, slice]:
        """Frame positions that kernel entry (di, dj) reads, one per output."""
        rows = slice(di, di + s * (H_out - 1) + 1, s)
        cols = slice(dj, dj + s * (W_out - 1) + 1, s)
        return rows, cols

    # Per input position: W_fwd m_fwd, zero at padded positions, gathered per window.
    per_input = jnp.pad(fwd @ w_fwd, (*frame, (0, 0), (0, 0)))
    windows = jnp.stack(
        [per_input[window(di, dj)] for di in range(k) for dj in range(k)], axis=2
    )  # [H', W', k * k, C_in, 4N]
    per_input = windows.reshape(H_out * W_out, k, k, C_in, 1, 4 * N)
    per_output = (bwd @ w_bwd).reshape(H_out * W_out, 1, 1, 1, C_out, 4 * N)
    fixed = per_input + per_output + (params["bias"] + _gate_offsets(N))

    # Every position starts from the shared state [k, k, C_in, C_out, N] and then
    # runs on its own copy [H' * W', k, k, C_in, C_out, N].
    for _ in range(ticks):
        h, c = _lstm_cell(fixed + h @ w_h, c)

    fwd_out = jnp.mean(h, axis=(1, 2, 3)) @ params["fwd_w"] + params["fwd_b"]
    fwd_out = fwd_out.reshape(H_out, W_out, C_out, M)

    # Backward: mean over C_out, then scatter each window entry to its input position.
    sent = jnp.mean(h, axis=4) @ params["bwd_w"] + params["bwd_b"]
    sent = sent.reshape(H_out, W_out, k, k, C_in, M)
    total = jnp.zeros((span_h, span_w, C_in, M), jnp.float32)
    count = np.zeros((span_h, span_w), np.float32)
    for di in range(k):
        for dj in range(k):
            # Zero padding with stride-1 gaps puts output (p, q) at row di + s * p
            # and column dj + s * q of the frame.
            rows = (di, span_h - di - s * (H_out - 1) - 1, s - 1)
            cols = (dj, span_w - dj - s * (W_out - 1) - 1, s - 1)
            placed = jax.lax.pad(
                sent[:, :, di, dj], 0.0, (rows, cols, (0, 0, 0), (0, 0, 0))
            )
            total = total + placed
            count[window(di, dj)] += 1.0
    crop = (slice(pad_h, pad_h + H), slice(pad_w, pad_w + W))
    total, count = total[crop], count[crop]
    bwd_out = total / np.maximum(count, 1.0)[:, :, None, None]

    return jnp.mean(h, axis=0), jnp.mean(c, axis=0), fwd_out, bwd_out
