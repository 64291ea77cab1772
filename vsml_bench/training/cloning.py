"""Backprop cloning: supervised meta-training of VSML's LSTM to behave like a weight.

[1] L. Kirsch, J. Schmidhuber (2021), "Meta Learning Backpropagation And Improving It",
    NeurIPS 2021. https://arxiv.org/abs/2012.14905 (the first experiment: VSML RNNs
    trained to implement backpropagation, then run on MNIST without any gradient).

Every connection (a, b) of a VSML layer sees the value x_a in channel 0 of its
incoming forward message and the error e_b in channel 0 of its incoming backward
message. If its LSTM acts like a weight w_ab, the network does online gradient descent
although nothing computes a gradient. Cloning trains the shared LSTM (theta) by
supervised learning, with Adam, on random streams of single connections, to reproduce
a simulated weight step by step. At step t the connection gets (x_t, e_t), where e_t
is the error of the prediction made at step t-1, and the targets are

    u_t     = u_{t-1} - lr * x_{t-1} * e_t      (the update uses the x of e_t's step)
    w_t     = R * tanh(u_t / R)
    fwd_t   = w_t * x_t      in channels 0 and 1 of the forward message
    bwd_t   = w_{t-1} * e_t  in channel 0 of the backward message

with all other channels 0, x_{-1} = 0 and e_0 = 0. Channel 1 is where VSML reads its
logits, channel 0 where a next layer reads its input and a previous layer its error.
The same rule covers VSML's backward pass, where a connection alternates a backward
tick (x_t, e_t) and a forward tick (x_{t+1}, 0): the x of the previous tick is then
the x of the error's step. Every step is K micro ticks with fixed messages, as in VSML.

Choices (docs/cloning.md has the measurements behind them):

- Bounded weight: u is the plain online-gradient weight; the weight in use is
  w = R tanh(u / R) (R = `weight_bound`), which equals u while |u| is well below R.
  An LSTM reads its cell through tanh, so this target is one it can meet for every
  u, including the large weights that long MNIST episodes produce, where an
  unbounded target would leave the trained range.
- Initial weight: VSML's reset draws the first units of c with std 1/sqrt(A); the
  simulated accumulator starts at u_0 = R * c_0[0], so that w = R tanh(c[0]) when
  the LSTM keeps u / R in its first cell unit.
- Width: VSML averages over inputs, so a layer computes o_b = (1/A) sum_a w_ab x_a =
  sum_a W_ab x_a with W = w / A, and x_a e_b is the gradient of the loss with respect
  to W_ab. The update u <- u - lr x e is online SGD on W with learning rate lr / A
  (`effective_learning_rate`); the logits move by lr * mean_a(x_a^2) * e per example
  whatever the width A, so one lr suits 64 and 784 inputs alike.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from vsml_bench.agents.vsml import (
    FORGET_GATE_OFFSET,
    INPUT_GATE_OFFSET,
    LOGIT_CHANNEL,
    VSML,
)
from vsml_bench.config import TrainConfig
from vsml_bench.errors import UserError
from vsml_bench.learner import Learner, PyTree
from vsml_bench.training.es import GenerationTimes

logger = logging.getLogger(__name__)

INPUT_CHANNEL = 0
"""The channel of a forward message a layer reads as its input value, and of a
backward message it reads as its error."""

_TRUNCATED_STD = 0.87962566103423978
"""Std of a standard normal truncated to [-2, 2] (VSML's initial cell draw)."""


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Streams:
    """Random training streams of single connections.

    Attributes:
        x: [S, T] the input value x_t (channel 0 of the incoming forward message).
        e: [S, T] the error e_t arriving at step t (channel 0 of the incoming backward
            message); it belongs to the prediction of step t-1, and e[:, 0] = 0.
        relay: [S] 1 where channel 1 of the incoming forward message repeats x_t (a
            hidden layer's output, which carries w x in channels 0 and 1), else 0 (the
            network's input [x, 0, ..., 0]).
        c0: [S, N] the initial cell state, drawn like VSML's reset; h_0 = 0.
    """

    x: jax.Array
    e: jax.Array
    relay: jax.Array
    c0: jax.Array


@dataclass(frozen=True)
class StreamDistribution:
    """How training streams are drawn (per stream, uniformly unless said otherwise).

    Attributes:
        fan_in: range of the layer width A behind c_0's std 1/sqrt(A) (drawn
            log-uniformly).
        input_mean: |mean| of x within a stream is at most this.
        input_std: range of the std of x within a stream.
        error_logit_std: max std of the simulated logits behind the errors.
        error_true_rate: max rate at which the connection's output is the true class
            (the error is then p - 1, else p, with p the softmax probability).
        zero_error_rate: max rate of steps whose error is 0 (no label yet, or the
            forward tick of VSML's backward pass).
        wide_init_rate: share of streams whose accumulator starts uniform in
            +-`init_range` instead of at VSML's small random value, so that large
            and saturated weights are trained too.
        init_range: largest |u_0| of those streams.
        relay_rate: share of streams whose channel 1 repeats x (hidden-layer input).
    """

    fan_in: tuple[int, int] = (16, 1024)
    input_mean: float = 1.0
    input_std: tuple[float, float] = (0.2, 1.5)
    error_logit_std: float = 4.0
    error_true_rate: float = 0.4
    zero_error_rate: float = 0.5
    wide_init_rate: float = 0.5
    init_range: float = 40.0
    relay_rate: float = 0.5


def draw_streams(
    key: jax.Array,
    num: int,
    length: int,
    state_size: int,
    random_units: int,
    weight_bound: float,
    dist: StreamDistribution = StreamDistribution(),
    num_classes: int = 10,
) -> Streams:
    """`num` random streams of `length` steps (see `Streams`, `StreamDistribution`).

    Args:
        key: the streams' key.
        num, length: S streams of T steps.
        state_size: N; random_units: how many units of c_0 VSML draws at random.
        weight_bound: R (the wide initial accumulators are stored as u_0 / R).
        dist: the distribution's settings.
        num_classes: classes behind the simulated softmax errors.
    """
    keys = jax.random.split(key, 14)

    def uniform(k: jax.Array, low: float, high: float) -> jax.Array:
        return jax.random.uniform(k, (num,), minval=low, maxval=high)

    x_mean = uniform(keys[0], -dist.input_mean, dist.input_mean)
    x_std = uniform(keys[1], *dist.input_std)
    x = x_mean[:, None] + x_std[:, None] * jax.random.normal(keys[2], (num, length))

    # Errors as softmax(o) - onehot(y) makes them: mostly small and positive, now and
    # then p - 1 when this connection's output is the true class.
    logit_std = uniform(keys[3], 0.0, dist.error_logit_std)
    logits = logit_std[:, None, None] * jax.random.normal(
        keys[4], (num, length, num_classes)
    )
    p = jax.nn.softmax(logits, axis=-1)[..., 0]
    true_rate = uniform(keys[5], 0.0, dist.error_true_rate)
    is_true = jax.random.uniform(keys[6], (num, length)) < true_rate[:, None]
    zero_rate = uniform(keys[7], 0.0, dist.zero_error_rate)
    silent = jax.random.uniform(keys[8], (num, length)) < zero_rate[:, None]
    e = jnp.where(silent, 0.0, p - is_true)
    e = e.at[:, 0].set(0.0)

    # VSML's reset: truncated normal with std 1/sqrt(A) in the first units.
    fan_in = jnp.exp(uniform(keys[9], *np.log(dist.fan_in)))
    draw = jax.random.truncated_normal(keys[10], -2.0, 2.0, (num, random_units))
    draw = draw / (_TRUNCATED_STD * jnp.sqrt(fan_in))[:, None]
    bound = dist.init_range / weight_bound
    wide = uniform(keys[11], -bound, bound)
    use_wide = jax.random.uniform(keys[12], (num,)) < dist.wide_init_rate
    draw = draw.at[:, 0].set(jnp.where(use_wide, wide, draw[:, 0]))
    c0 = jnp.concatenate(
        [draw, jnp.zeros((num, state_size - random_units), jnp.float32)], axis=1
    )

    relay = jax.random.uniform(keys[13], (num,)) < dist.relay_rate
    return Streams(
        x=x.astype(jnp.float32),
        e=e.astype(jnp.float32),
        relay=relay.astype(jnp.float32),
        c0=c0.astype(jnp.float32),
    )


def simulate_weight(
    u0: jax.Array, x: jax.Array, e: jax.Array, lr: float, bound: float
) -> tuple[jax.Array, jax.Array]:
    """The weights an online-gradient connection holds at every step.

    Args:
        u0: the initial accumulator u before step 0, [].
        x: [T] inputs; e: [T] errors, e_t belonging to the prediction of step t-1.
        lr: the learning rate of u <- u - lr x_{t-1} e_t.
        bound: R of w = R tanh(u / R).
    Returns:
        w_before [T] (w_{t-1}, which made the prediction e_t belongs to) and
        w_after [T] (w_t, after the update with e_t, which multiplies x_t).
    """
    x_prev = jnp.concatenate([jnp.zeros_like(x[:1]), x[:-1]])
    u_after = u0 - lr * jnp.cumsum(x_prev * e)
    u_before = jnp.concatenate([jnp.reshape(u0, (1,)), u_after[:-1]])
    return bound * jnp.tanh(u_before / bound), bound * jnp.tanh(u_after / bound)


def cloning_targets(
    u0: jax.Array,
    x: jax.Array,
    e: jax.Array,
    lr: float,
    bound: float,
    message_size: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Target messages of one connection.

    Args:
        u0: []; x, e: [T]; lr, bound: see `simulate_weight`.
        message_size: M.
    Returns:
        forward [T, M] (w_t x_t in channels 0 and 1), backward [T, M]
        (w_{t-1} e_t in channel 0) and the weight w_t [T].
    """
    w_before, w_after = simulate_weight(u0, x, e, lr, bound)
    fwd = jnp.zeros((x.shape[0], message_size), jnp.float32)
    fwd = fwd.at[:, INPUT_CHANNEL].set(w_after * x)
    fwd = fwd.at[:, LOGIT_CHANNEL].set(w_after * x)
    bwd = jnp.zeros_like(fwd).at[:, INPUT_CHANNEL].set(w_before * e)
    return fwd, bwd, w_after


def _gate_offsets(N: int) -> jax.Array:
    return jnp.concatenate(
        [
            jnp.full((N,), INPUT_GATE_OFFSET),
            jnp.zeros((N,)),
            jnp.full((N,), FORGET_GATE_OFFSET),
            jnp.zeros((N,)),
        ]
    ).astype(jnp.float32)


def connection_messages(
    params: PyTree,
    c0: jax.Array,
    fwd_in: jax.Array,
    bwd_in: jax.Array,
    micro_ticks: int,
) -> tuple[jax.Array, jax.Array]:
    """One VSML connection over a stream: the messages it emits at every step.

    The same LSTM as a VSML layer of one input and one output (gate order i, g, f, o,
    fixed offsets on i and f), written for a single connection so that training
    streams vectorise; tests check it against `VSML.step`.

    Args:
        params: VSML's theta (kernel [2M + N, 4N], bias, fwd_w/fwd_b, bwd_w/bwd_b).
        c0: [N] initial cell state (h_0 = 0).
        fwd_in, bwd_in: [T, M] incoming messages of every step.
        micro_ticks: K LSTM updates per step with the same messages.
    Returns:
        outgoing forward and backward messages, [T, M] each.
    """
    N = c0.shape[-1]
    M = fwd_in.shape[-1]
    kernel = params["kernel"]
    fixed = (
        fwd_in @ kernel[:M]
        + bwd_in @ kernel[M : 2 * M]
        + params["bias"]
        + _gate_offsets(N)
    )
    recurrent = kernel[2 * M :]

    def step(carry, z_in):
        h, c = carry
        for _ in range(micro_ticks):
            z = z_in + h @ recurrent
            i = jax.nn.sigmoid(z[:N])
            g = jnp.tanh(z[N : 2 * N])
            f = jax.nn.sigmoid(z[2 * N : 3 * N])
            o = jax.nn.sigmoid(z[3 * N :])
            c = f * c + i * g
            h = o * jnp.tanh(c)
        return (h, c), h

    _, hs = jax.lax.scan(step, (jnp.zeros_like(c0), c0), fixed)
    fwd = hs @ params["fwd_w"] + params["fwd_b"]
    bwd = hs @ params["bwd_w"] + params["bwd_b"]
    return fwd, bwd


def incoming_messages(
    streams: Streams, message_size: int
) -> tuple[jax.Array, jax.Array]:
    """The incoming forward and backward messages of `streams`: [S, T, M] each."""
    fwd = jnp.zeros((*streams.x.shape, message_size), jnp.float32)
    fwd = fwd.at[..., INPUT_CHANNEL].set(streams.x)
    fwd = fwd.at[..., LOGIT_CHANNEL].set(streams.x * streams.relay[:, None])
    bwd = jnp.zeros_like(fwd).at[..., INPUT_CHANNEL].set(streams.e)
    return fwd, bwd


def cloning_loss(
    params: PyTree,
    streams: Streams,
    lr: float,
    weight_bound: float,
    micro_ticks: int,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Squared error of the emitted messages against the simulated weight's.

    Each step's squared error (summed over the M channels of both messages) is divided
    by 1 + |w_t|: large weights count, but less than their absolute error would
    (dividing by 1 + w_t^2 instead left large weights read out at about half their
    size; not dividing at all neglected small ones, see docs/cloning.md).

    Args:
        params: theta.
        streams: the training streams.
        lr: the simulated weight's learning rate; weight_bound: its R.
        micro_ticks: K.
    Returns:
        the loss [] and diagnostics: `fwd_rmse` and `bwd_rmse` (root mean squared
        error of the target channels, not normalised).
    """
    M = params["fwd_w"].shape[-1]
    fwd_in, bwd_in = incoming_messages(streams, M)
    u0 = weight_bound * streams.c0[:, 0]
    fwd_target, bwd_target, weight = jax.vmap(
        lambda u, x, e: cloning_targets(u, x, e, lr, weight_bound, M)
    )(u0, streams.x, streams.e)
    fwd, bwd = jax.vmap(
        lambda c, f, b: connection_messages(params, c, f, b, micro_ticks)
    )(streams.c0, fwd_in, bwd_in)
    squared = jnp.sum((fwd - fwd_target) ** 2 + (bwd - bwd_target) ** 2, axis=-1)
    loss = jnp.mean(squared / (1.0 + jnp.abs(weight)))
    fwd_error = fwd[..., LOGIT_CHANNEL] - fwd_target[..., LOGIT_CHANNEL]
    bwd_error = bwd[..., INPUT_CHANNEL] - bwd_target[..., INPUT_CHANNEL]
    diagnostics = {
        "fwd_rmse": jnp.sqrt(jnp.mean(fwd_error**2)),
        "bwd_rmse": jnp.sqrt(jnp.mean(bwd_error**2)),
    }
    return loss, diagnostics


@struct.dataclass
class CloningState:
    """Theta and the optimiser's state (`mean` is what the run saves)."""

    mean: Any
    opt_state: Any


class CloningTrainer:
    """Backprop cloning with the `Trainer` interface (see the module docstring).

    One generation is `cloning.steps_per_generation` Adam steps, each on
    `cloning.batch_size` fresh streams of `cloning.sequence_length` steps; the Adam
    learning rate follows a cosine decay to a tenth over the whole run
    (`generations` * steps per generation), so a resumed run follows the same
    schedule (raising `generations` on resume stretches what is left of it).
    Streams need no dataset; the suite's tasks are used only by the periodic
    meta-test. With several MPI ranks every rank computes the same steps (cloning
    is cheap; nothing is split).

    Args:
        config: the run's config (`config.cloning` holds the settings).
        learner: a `VSML` learner (shared LSTM, no label input).
        tasks: the meta-training tasks (unused: streams are synthetic).
        comm: a Communicator (unused).
    """

    def __init__(self, config: TrainConfig, learner: Learner, tasks, comm):
        if not isinstance(learner, VSML):
            raise UserError(
                f"method=cloning trains VSML's LSTM; agent={config.agent!r} is not vsml"
            )
        if learner.lstm_per_layer or learner.label_input:
            raise UserError(
                "method=cloning needs vsml with lstm_per_layer=false and "
                "label_input=false (one shared LSTM that sees only errors)"
            )
        self.random_units = round(learner.init_fraction * learner.state_size)
        if self.random_units < 1:
            raise UserError(
                f"method=cloning reads the initial weight from the first random cell "
                f"unit; vsml init_fraction={learner.init_fraction} leaves none"
            )
        settings = config.cloning
        for name in ("batch_size", "sequence_length", "steps_per_generation"):
            if getattr(settings, name) < 1:
                raise UserError(
                    f"cloning.{name}={getattr(settings, name)} must be >= 1"
                )
        for name in ("learning_rate", "clip_norm", "weight_lr", "weight_bound"):
            if getattr(settings, name) <= 0:
                raise UserError(f"cloning.{name}={getattr(settings, name)} must be > 0")
        self.config = config
        self.learner = learner
        self.settings = settings
        # An "episode" of this trainer is one training stream of one connection.
        self.num_episodes = settings.batch_size * settings.steps_per_generation
        self.episodes_per_generation = self.num_episodes
        self.steps_per_generation = self.num_episodes * settings.sequence_length
        total = max(1, config.generations * settings.steps_per_generation)
        schedule = optax.cosine_decay_schedule(settings.learning_rate, total, alpha=0.1)
        self.optimizer = optax.chain(
            optax.clip_by_global_norm(settings.clip_norm), optax.adam(schedule)
        )
        self._run = jax.jit(self._steps)

    def init(self, key: jax.Array, meta_params: Any = None) -> CloningState:
        """Theta (the learner's init, or given) and a fresh optimiser state."""
        mean = self.learner.init(key) if meta_params is None else meta_params
        mean = jax.tree.map(jnp.asarray, mean)
        return CloningState(mean=mean, opt_state=self.optimizer.init(mean))

    def mean(self, state: CloningState) -> Any:
        """The current meta-parameters."""
        return state.mean

    def streams(self, key: jax.Array) -> Streams:
        """One batch of training streams."""
        s = self.settings
        return draw_streams(
            key,
            s.batch_size,
            s.sequence_length,
            self.learner.state_size,
            self.random_units,
            s.weight_bound,
            StreamDistribution(init_range=s.init_range),
        )

    def loss(self, params: PyTree, streams: Streams):
        """`cloning_loss` with this run's settings."""
        s = self.settings
        return cloning_loss(
            params, streams, s.weight_lr, s.weight_bound, self.learner.micro_ticks
        )

    def _steps(self, state: CloningState, key: jax.Array):
        grad_fn = jax.value_and_grad(self.loss, has_aux=True)

        def one(state, step_key):
            (loss, aux), grads = grad_fn(state.mean, self.streams(step_key))
            updates, opt_state = self.optimizer.update(
                grads, state.opt_state, state.mean
            )
            mean = optax.apply_updates(state.mean, updates)
            norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
            aux = {**aux, "loss": loss, "grad_norm": norm}
            return CloningState(mean, opt_state), aux

        keys = jax.random.split(key, self.settings.steps_per_generation)
        return jax.lax.scan(one, state, keys)

    def generation(
        self, state: CloningState, key: jax.Array
    ) -> tuple[CloningState, dict[str, float], GenerationTimes]:
        """`steps_per_generation` Adam steps on fresh streams."""
        times = GenerationTimes()
        start = time.perf_counter()
        state, aux = self._run(state, key)
        aux = jax.device_get(aux)
        times.evaluate = time.perf_counter() - start
        metrics = {
            "meta_loss": float(np.mean(aux["loss"])),
            "cloning_loss_last": float(aux["loss"][-1]),
            "fwd_rmse": float(np.mean(aux["fwd_rmse"])),
            "bwd_rmse": float(np.mean(aux["bwd_rmse"])),
            "grad_norm": float(np.mean(aux["grad_norm"])),
            "non_finite": int(not np.all(np.isfinite(aux["loss"]))),
        }
        return state, metrics, times


def effective_learning_rate(weight_lr: float, fan_in: int) -> float:
    """The SGD learning rate on W = w / A that a cloned weight rate amounts to.

    VSML's layer computes (1/A) sum_a w_ab x_a = sum_a W_ab x_a; w <- w - lr x e is
    W <- W - (lr / A) x e, and x e is the gradient of the loss with respect to W.
    """
    return weight_lr / fan_in
