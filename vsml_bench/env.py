"""A task as a functional environment in the style of gymnax.

`reset(key, params) -> (obs, state)` draws a whole episode with `sample_episode` (so the
step-by-step stream is exactly the arrays of `sample_episode` for the same key) and
`step(key, state, action, params) -> (obs, state, reward, terminated, truncated, info)`
walks through it. Both are pure and work under `jit`, `vmap` and `lax.scan`. The
observation at step t is `{"x": x_t, "prev_label": onehot(y_{t-1})}` (zeros at t = 0);
y_t is revealed only in the reward and `info` of the step that answers x_t. Episodes
truncate after T steps; resetting is the caller's business (the vector environment of
`vsml_bench.gym_env` does it automatically).
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import struct

from vsml_bench.datasets import Dataset
from vsml_bench.errors import UserError
from vsml_bench.task import Episode, Task, sample_episode


@struct.dataclass
class EnvState:
    """The episode being served and the current step t."""

    episode: Episode
    t: jnp.ndarray


class TaskEnv:
    """A `Task` served one example at a time.

    Args:
        task: the episode distribution.
        action_type: "logits" (an action is a float32 [C] vector of logits, reward
            -cross-entropy) or "class" (an int class index, reward 1 if correct).
    """

    def __init__(self, task: Task, action_type: Literal["logits", "class"] = "logits"):
        if action_type not in ("logits", "class"):
            raise UserError(f"action_type={action_type!r}; use 'logits' or 'class'")
        self.task = task
        self.action_type = action_type

    @property
    def num_outputs(self) -> int:
        """Number of classes C (logits, one-hot labels)."""
        return self.task.num_outputs

    @property
    def default_params(self) -> Dataset:
        """The task's dataset split on the device."""
        return self.task.load()

    def observation(self, state: EnvState) -> dict[str, jax.Array]:
        """`{"x": x_t, "prev_label": onehot(y_{t-1})}` for the state's step t."""
        length = self.task.episode_length
        t = jnp.minimum(state.t, length - 1)
        prev = state.episode.y[jnp.maximum(state.t - 1, 0)]
        prev_label = jax.nn.one_hot(prev, self.num_outputs, dtype=jnp.float32)
        prev_label = jnp.where(state.t > 0, prev_label, jnp.zeros_like(prev_label))
        return {"x": state.episode.x[t], "prev_label": prev_label}

    def reset(
        self, key: jax.Array, params: Dataset | None = None
    ) -> tuple[dict[str, jax.Array], EnvState]:
        """Draw the episode of `key` and return the first observation."""
        params = self.default_params if params is None else params
        episode = sample_episode(self.task, key, params)
        state = EnvState(episode=episode, t=jnp.zeros((), jnp.int32))
        return self.observation(state), state

    def step(
        self,
        key: jax.Array,
        state: EnvState,
        action: jax.Array,
        params: Dataset | None = None,
    ) -> tuple[dict[str, jax.Array], EnvState, jax.Array, jax.Array, jax.Array, Any]:
        """Answer x_t with `action`; reveal y_t; move to t + 1.

        `key` and `params` are accepted for the gymnax signature; the episode was
        fixed at reset.
        """
        label = state.episode.y[jnp.minimum(state.t, self.task.episode_length - 1)]
        if self.action_type == "logits":
            logits = jnp.asarray(action, jnp.float32)
            reward = jax.nn.log_softmax(logits)[label]
            guess = jnp.argmax(logits)
        else:
            guess = jnp.asarray(action, jnp.int32)
            reward = (guess == label).astype(jnp.float32)
        correct = guess == label
        state = state.replace(t=state.t + 1)
        truncated = state.t >= self.task.episode_length
        info = {"label": label, "correct": correct}
        return (
            self.observation(state),
            state,
            reward.astype(jnp.float32),
            jnp.zeros((), bool),
            truncated,
            info,
        )
