"""Online SGD and Adam: hand-designed learners, the baselines that learn by gradients.

A small network (linear, a one-hidden-layer tanh MLP, or a small conv net) trained with
batch size 1 on the stream itself, as in the baselines of Kirsch and Schmidhuber 2021,
"Meta Learning Backpropagation And Improving It" (https://arxiv.org/abs/2012.14905):
lr 0.01 for SGD and 0.001 for Adam. Nothing is meta-trained (`init` returns {}); the
optimiser is `optax.sgd` or `optax.adam`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import jax
import jax.numpy as jnp
import optax

from vsml_bench.errors import UserError
from vsml_bench.learner import Learner, PyTree

Model = Literal["linear", "mlp", "conv"]

_CONV_CHANNELS = (16, 32)
_CONV_KERNEL = 3
_CONV_STRIDE = 2


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class OptimizerState:
    """The episode state of an online optimiser.

    Attributes:
        params: the model's weights (see `init_model`).
        opt_state: the optax state of the optimiser.
        prev_x: x_{t-1}, kept until its label arrives at step t; [*input_shape].
    """

    params: PyTree
    opt_state: PyTree
    prev_x: jax.Array


def _dense(key: jax.Array, fan_in: int, fan_out: int) -> dict[str, jax.Array]:
    return {
        "w": jax.nn.initializers.lecun_normal()(key, (fan_in, fan_out), jnp.float32),
        "b": jnp.zeros((fan_out,), jnp.float32),
    }


def _conv(key: jax.Array, channels_in: int, channels_out: int) -> dict[str, jax.Array]:
    shape = (_CONV_KERNEL, _CONV_KERNEL, channels_in, channels_out)
    return {
        "w": jax.nn.initializers.lecun_normal()(key, shape, jnp.float32),
        "b": jnp.zeros((channels_out,), jnp.float32),
    }


def _conv_output_size(input_shape: tuple[int, ...]) -> int:
    """Number of features after the conv stack (SAME padding, stride 2 each)."""
    height, width = input_shape[0], input_shape[1]
    for _ in _CONV_CHANNELS:
        height = math.ceil(height / _CONV_STRIDE)
        width = math.ceil(width / _CONV_STRIDE)
    return height * width * _CONV_CHANNELS[-1]


def init_model(
    key: jax.Array,
    model: Model,
    input_shape: tuple[int, ...],
    num_classes: int,
    hidden_size: int,
) -> PyTree:
    """Initial weights: LeCun-normal kernels (variance 1/fan_in), zero biases.

    Returns a dict of layers, each {"w", "b"}:
        linear: {"out"}, w [A, C];
        mlp: {"hidden"} w [A, H] and {"out"} w [H, C];
        conv: {"conv0"} w [3, 3, Ch, 16], {"conv1"} w [3, 3, 16, 32], {"out"}.
    """
    input_size = math.prod(input_shape)
    if model == "linear":
        return {"out": _dense(key, input_size, num_classes)}
    if model == "mlp":
        k_hidden, k_out = jax.random.split(key)
        return {
            "hidden": _dense(k_hidden, input_size, hidden_size),
            "out": _dense(k_out, hidden_size, num_classes),
        }
    keys = jax.random.split(key, len(_CONV_CHANNELS) + 1)
    params = {}
    channels_in = input_shape[2] if len(input_shape) == 3 else 1
    for i, channels_out in enumerate(_CONV_CHANNELS):
        params[f"conv{i}"] = _conv(keys[i], channels_in, channels_out)
        channels_in = channels_out
    params["out"] = _dense(keys[-1], _conv_output_size(input_shape), num_classes)
    return params


def apply_model(model: Model, params: PyTree, x: jax.Array) -> jax.Array:
    """Logits of one input.

    Args:
        x: one input, [*input_shape] ([H, W, C] or [H, W] for "conv").
    Returns:
        float32 [C].
    """
    if model == "conv":
        h = x.reshape(1, x.shape[0], x.shape[1], -1)
        for i in range(len(_CONV_CHANNELS)):
            layer = params[f"conv{i}"]
            h = jax.lax.conv_general_dilated(
                h,
                layer["w"],
                window_strides=(_CONV_STRIDE, _CONV_STRIDE),
                padding="SAME",
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )
            h = jnp.tanh(h + layer["b"])
        h = h.reshape(-1)
    else:
        h = x.reshape(-1)
        if model == "mlp":
            h = jnp.tanh(h @ params["hidden"]["w"] + params["hidden"]["b"])
    return h @ params["out"]["w"] + params["out"]["b"]


def _cross_entropy(
    params: PyTree, model: Model, x: jax.Array, label: jax.Array
) -> jax.Array:
    logits = apply_model(model, params, x)
    return -jnp.sum(label * jax.nn.log_softmax(logits))


@dataclass(frozen=True)
class _OnlineOptimizer(Learner):
    """Shared implementation; subclasses choose the optax optimiser.

    At step t the learner first takes one optimiser step on the cross-entropy of the
    stored x_{t-1} against `prev_label` (skipped at t = 0, where `prev_label` is all
    zeros, so Adam's step count starts with the first label), then predicts x_t. This is
    exactly "predict x_t, then update on (x_t, y_t)", shifted by one step so that y_t
    never reaches the step that predicts x_t. The update on the episode's last label is
    never taken: nothing would use it.

    Models:
        "linear": logits = x W + b on the flattened input.
        "mlp": one hidden tanh layer of `hidden_size` units (160, as the reference).
        "conv": for image inputs [H, W, C] (or [H, W]): two 3x3 convolutions with
            stride 2, SAME padding, 16 then 32 channels, tanh after each, then a linear
            read-out of the flattened features. `hidden_size` is unused.
    The initial weights are drawn from the `reset` key: LeCun-normal kernels (truncated
    normal with variance 1/fan_in), zero biases; a new episode gets a new network.
    """

    model: Model = "linear"
    learning_rate: float = 0.01
    hidden_size: int = 160

    def __post_init__(self) -> None:
        if self.model not in get_args(Model):
            choices = ", ".join(repr(m) for m in get_args(Model))
            raise UserError(
                f"learner {self.name!r}: model {self.model!r} is not one of {choices}"
            )
        if self.learning_rate <= 0:
            raise UserError(
                f"learner {self.name!r}: learning_rate must be > 0, "
                f"got {self.learning_rate!r}"
            )
        if self.hidden_size < 1:
            raise UserError(
                f"learner {self.name!r}: hidden_size must be >= 1, "
                f"got {self.hidden_size!r}"
            )
        if self.model == "conv" and len(self.spec.input_shape) not in (2, 3):
            raise UserError(
                f"learner {self.name!r}: model 'conv' needs image inputs [H, W, C] "
                f"or [H, W], got input shape {self.spec.input_shape}; use 'linear' "
                "or 'mlp' for flat inputs"
            )

    def optimizer(self) -> optax.GradientTransformation:
        """The optax optimiser applied with batch size 1."""
        raise NotImplementedError

    def reset(self, key: jax.Array, meta_params: PyTree) -> OptimizerState:
        """A freshly initialised network (weights from `key`) and optimiser."""
        params = init_model(
            key,
            self.model,
            self.spec.input_shape,
            self.spec.num_classes,
            self.hidden_size,
        )
        return OptimizerState(
            params=params,
            opt_state=self.optimizer().init(params),
            prev_x=jnp.zeros(self.spec.input_shape, jnp.float32),
        )

    def step(
        self,
        meta_params: PyTree,
        state: OptimizerState,
        x: jax.Array,
        prev_label: jax.Array,
    ) -> tuple[OptimizerState, jax.Array]:
        """Learn from (x_{t-1}, y_{t-1}) if there is a label, then predict x_t."""
        grads = jax.grad(_cross_entropy)(
            state.params, self.model, state.prev_x, prev_label
        )
        updates, opt_state = self.optimizer().update(
            grads, state.opt_state, state.params
        )
        params = optax.apply_updates(state.params, updates)

        # At t = 0 there is no label: keep weights and optimiser state (Adam's count
        # included) exactly as they were.
        has_label = jnp.sum(prev_label) > 0
        params, opt_state = jax.tree.map(
            lambda new, old: jnp.where(has_label, new, old),
            (params, opt_state),
            (state.params, state.opt_state),
        )

        x = x.astype(jnp.float32)
        logits = apply_model(self.model, params, x)
        return OptimizerState(params, opt_state, x), logits


@dataclass(frozen=True)
class OnlineSGD(_OnlineOptimizer):
    """Online SGD with batch size 1 (lr 0.01 by default); see `_OnlineOptimizer`."""

    name = "sgd"
    description = "online SGD on a linear, MLP or conv model (not meta-trained)"

    learning_rate: float = 0.01

    def optimizer(self) -> optax.GradientTransformation:
        """Plain SGD, no momentum."""
        return optax.sgd(self.learning_rate)


@dataclass(frozen=True)
class OnlineAdam(_OnlineOptimizer):
    """Online Adam with batch size 1 (lr 0.001 by default); see `_OnlineOptimizer`."""

    name = "adam"
    description = "online Adam on a linear, MLP or conv model (not meta-trained)"

    learning_rate: float = 0.001

    def optimizer(self) -> optax.GradientTransformation:
        """Adam with optax's defaults b1 0.9, b2 0.999, eps 1e-8."""
        return optax.adam(self.learning_rate)
