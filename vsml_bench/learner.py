"""The learner contract: a learning algorithm that runs inside one episode.

A learner is a frozen dataclass whose fields are its options (all static, hashable, so
that a learner can be a static argument of `jax.jit`). It has three pure methods:

- `init(key) -> meta_params`: the meta-parameters theta, a pytree of arrays (an empty
  dict for learners without meta-parameters). Meta-training changes them; they are the
  same in every episode.
- `reset(key, meta_params) -> state`: the episode state at t = 0, a pytree. Everything
  the learner learns within an episode lives here.
- `step(meta_params, state, x, prev_label) -> (state, logits)`: one example of the
  online protocol. `x` is the input x_t (shape `spec.input_shape`), `prev_label` the
  one-hot label of step t-1 (zeros at t = 0, shape `[spec.num_classes]`), exactly the
  observation of a task environment. The returned `logits` ([num_classes]) are the
  prediction for x_t. A learner that needs the error of step t-1,
  e = softmax(o_{t-1}) - onehot(y_{t-1}), keeps o_{t-1} in its state and computes e
  from `prev_label` (see `prev_error`). The label y_t is never an argument of the step
  that predicts x_t, so a learner cannot peek.

All three work under `jit`, under `vmap` (over populations of meta-parameters and over
episodes) and inside `lax.scan` over time; `rollout` runs a whole episode that way.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

PyTree = Any


@dataclass(frozen=True)
class TaskSpec:
    """The shapes a learner is built for.

    Attributes:
        input_shape: shape of one input x_t, e.g. `(784,)` or `(28, 28, 1)`.
        num_classes: number of outputs (logits) and of one-hot label entries.
    """

    input_shape: tuple[int, ...]
    num_classes: int

    @property
    def input_size(self) -> int:
        """Number of input features when x_t is flattened."""
        return math.prod(self.input_shape)


@dataclass(frozen=True)
class Learner:
    """Base class of every learner; subclasses are frozen dataclasses of options."""

    spec: TaskSpec

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def init(self, key: jax.Array) -> PyTree:
        """Meta-parameters theta from a key ({} when the learner has none)."""
        return {}

    def reset(self, key: jax.Array, meta_params: PyTree) -> PyTree:
        """The episode state at t = 0."""
        raise NotImplementedError

    def step(
        self,
        meta_params: PyTree,
        state: PyTree,
        x: jax.Array,
        prev_label: jax.Array,
    ) -> tuple[PyTree, jax.Array]:
        """Consume x_t and the feedback of step t-1; return (state, logits_t)."""
        raise NotImplementedError

    def num_meta_params(self, key: jax.Array | None = None) -> int:
        """Number of scalars in theta (computed from shapes, without running init)."""
        key = jax.random.PRNGKey(0) if key is None else key
        shapes = jax.eval_shape(self.init, key)
        return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))

    def options(self) -> dict[str, Any]:
        """The learner's options (every field but `spec`)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "spec"
        }


def prev_error(prev_logits: jax.Array, prev_label: jax.Array) -> jax.Array:
    """e_{t-1} = softmax(o_{t-1}) - onehot(y_{t-1}); zero at t = 0 (no label yet).

    Args:
        prev_logits: o_{t-1}, shape [C].
        prev_label: one-hot y_{t-1}, shape [C]; all zeros at t = 0.
    """
    has_label = jnp.sum(prev_label) > 0
    error = jax.nn.softmax(prev_logits) - prev_label
    return jnp.where(has_label, error, jnp.zeros_like(error))


def soft_clip(logits: jax.Array, bound: float = 100.0) -> jax.Array:
    """o = bound * tanh(o_raw / bound), as VSML and the Meta RNN apply to logits."""
    return bound * jnp.tanh(logits / bound)


def shifted_labels(y: jax.Array, num_classes: int) -> jax.Array:
    """One-hot y_{t-1} for every t of an episode (zeros at t = 0).

    Args:
        y: labels, int [T].
    Returns:
        float32 [T, num_classes].
    """
    onehot = jax.nn.one_hot(y, num_classes, dtype=jnp.float32)
    return jnp.concatenate([jnp.zeros_like(onehot[:1]), onehot[:-1]], axis=0)


def rollout(
    learner: Learner,
    meta_params: PyTree,
    key: jax.Array,
    x: jax.Array,
    y: jax.Array,
) -> jax.Array:
    """Run one episode with `lax.scan` and return the online logits.

    Args:
        learner: the learner.
        meta_params: theta.
        key: the key of the learner's initial state.
        x: inputs, [T, *input_shape].
        y: labels, int [T].
    Returns:
        logits o_t for every step, float32 [T, num_classes].
    """
    state = learner.reset(key, meta_params)
    prev = shifted_labels(y, learner.spec.num_classes)

    def body(state, inputs):
        x_t, prev_t = inputs
        state, logits = learner.step(meta_params, state, x_t, prev_t)
        return state, logits

    _, logits = jax.lax.scan(body, state, (x, prev))
    return logits


def online_metrics(logits: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
    """Per-step cross-entropy and correctness of an episode's online predictions.

    Args:
        logits: [..., T, C]; y: int [..., T].
    Returns:
        `loss` (cross-entropy, [..., T]) and `correct` (float 0/1, [..., T]).
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    loss = -jnp.take_along_axis(logp, y[..., None], axis=-1)[..., 0]
    correct = (jnp.argmax(logits, axis=-1) == y).astype(jnp.float32)
    return {"loss": loss, "correct": correct}


LearnerFactory = Callable[..., Learner]
