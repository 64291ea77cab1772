"""The tasks as Gymnasium environments: one episode at a time, or many per jitted call.

`VsmlBenchEnv` is a `gymnasium.Env` over `vsml_bench.env.TaskEnv`: each `reset` draws
a whole episode of the task (so the stream is exactly `sample_episode` for the episode's
key) and each `step` answers one example. `VsmlBenchVectorEnv` runs `num_envs` episodes
side by side with one jitted, vmapped call per step and resets finished episodes itself
in Gymnasium's next-step mode. Both are registered under the ids of
`vsml_bench.tasks.catalog` (see `vsml_bench.registration`):

    env = gymnasium.make("vsml_bench/MNIST-v0", episode_length=100)
    envs = gymnasium.make_vec("vsml_bench/MNIST-v0", num_envs=64)

Protocol, as in `TaskEnv`: the observation at step t is `{"x": x_t, "prev_label":
onehot(y_{t-1})}` (zeros at t = 0); the action answers x_t; the reward and
`info["label"]` reveal y_t. With `action_type="logits"` the action is a vector of C
logits and the reward is log softmax(logits)[y_t] (minus the cross-entropy); with
`action_type="class"` it is a class index and the reward is 1 if it is y_t, else 0.
Episodes never terminate; they truncate after `episode_length` steps.

Seeding: `reset(seed=s)` seeds the environment's `np_random` (as every Gymnasium
environment does); each episode's JAX key is then `jax.random.PRNGKey(n)` with `n` the
next draw `np_random.integers(0, 2**32)`, so `reset(seed=s)` followed by plain `reset()`
calls gives the same episodes on every run. Sub-environment i of the vector environment
reset with `seed=s` draws its episodes exactly like a `VsmlBenchEnv` reset with
`seed=s + i`, as Gymnasium's `SyncVectorEnv` would.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from vsml_bench.datasets import Dataset
from vsml_bench.env import EnvState, TaskEnv
from vsml_bench.errors import UserError
from vsml_bench.options import build
from vsml_bench.task import Episode, Task
from vsml_bench.tasks.catalog import TASKS, make_task

ActionType = Literal["logits", "class"]
Observation = dict[str, np.ndarray]


def resolve_task(task: str | Task, overrides: dict[str, Any]) -> Task:
    """A catalogue name or a `Task`, with `Task` fields overridden by keyword."""
    if isinstance(task, Task):
        if not overrides:
            return task
        fields = {f.name: getattr(task, f.name) for f in dataclasses.fields(Task)}
        return build(Task, "task", **{**fields, **overrides})
    if not isinstance(task, str):
        raise UserError(
            f"task={task!r}: give a task name (see `vsml-bench tasks`) or a Task"
        )
    return make_task(task, **overrides)


def episode_seed(rng: np.random.Generator) -> int:
    """The next episode's seed, drawn from an environment's generator: [0, 2**32)."""
    return int(rng.integers(0, 2**32))


@jax.jit
def _value_range(values: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.min(values), jnp.max(values)


def input_bounds(task: Task, data: Dataset) -> tuple[float, float]:
    """Bounds that every input value x_t of the task lies within.

    Standardised pixels lie between (min - mean) / std and (max - mean) / std of the
    split; grayscale, resizing (a convex combination of pixels) and permutations keep
    them there, padding adds zeros, and a projection bounds |(x P)_j| by
    D * sqrt(6 / (2 D)) * max |x_i|. A small slack covers float32 rounding.
    """
    mean, std = float(data.mean), float(data.std)
    smallest, largest = _value_range(data.images)
    low, high = (float(smallest) - mean) / std, (float(largest) - mean) / std
    low, high = min(low, 0.0), max(high, 0.0)
    if task.projection != "none":
        size = math.prod(task.image_shape)
        bound = size * math.sqrt(6.0 / (2 * size)) * max(-low, high)
        low, high = -bound, bound
    slack = 1e-4 * max(1.0, high - low)
    return low - slack, high + slack


def observation_space(task: Task, data: Dataset) -> spaces.Dict:
    """`Dict(x=Box[obs_shape], prev_label=Box(0, 1, [C]))`, both float32."""
    low, high = input_bounds(task, data)
    return spaces.Dict(
        {
            "x": spaces.Box(
                np.float32(low), np.float32(high), task.obs_shape, np.float32
            ),
            "prev_label": spaces.Box(
                np.float32(0.0), np.float32(1.0), (task.num_outputs,), np.float32
            ),
        }
    )


def action_space(task: Task, action_type: ActionType) -> spaces.Space:
    """`Box(-1, 1, [C])` of logits, or `Discrete(C)` for `action_type="class"`.

    The logits' box is [-1, 1], the range Gymnasium asks of continuous actions; a
    step takes any finite logits and does not clip them, so a sample of the space is a
    valid (if unconfident) answer and a model is free to answer with larger logits.
    """
    if action_type == "class":
        return spaces.Discrete(task.num_outputs)
    return spaces.Box(
        np.float32(-1.0), np.float32(1.0), (task.num_outputs,), np.float32
    )


@dataclasses.dataclass(frozen=True)
class _Functions:
    """The compiled functions of one (task, action_type), shared by every env of it.

    Resetting does not depend on the action type, so both action types of a task share
    one compiled `vreset` (and `sample_episode` is compiled once per task anyway).
    """

    env: TaskEnv
    step: Callable
    vreset: Callable
    vstep: Callable


@functools.cache
def _vreset(task: Task) -> Callable:
    env = TaskEnv(task)

    def vreset(seeds: jax.Array, data: Dataset):
        keys = jax.vmap(jax.random.PRNGKey)(seeds)
        return jax.vmap(env.reset, in_axes=(0, None))(keys, data)

    return jax.jit(vreset)


@functools.cache
def _functions(task: Task, action_type: ActionType) -> _Functions:
    env = TaskEnv(task, action_type)

    # Only the new t leaves the step: returning the unchanged episode would copy it.
    def step(state: EnvState, action: jax.Array):
        obs, state, reward, terminated, truncated, info = env.step(None, state, action)
        return obs, state.t, reward, terminated, truncated, info

    return _Functions(
        env=env,
        step=jax.jit(step),
        vreset=_vreset(task),
        vstep=jax.jit(jax.vmap(step)),
    )


def _check_options(options: dict[str, Any] | None) -> None:
    if options:
        raise UserError(f"reset options {sorted(options)} are not supported")


def _check_episode(episode: Episode, task: Task) -> Episode:
    if not isinstance(episode, Episode):
        raise UserError(
            f"reset option 'episode' is a {type(episode).__name__}; give a "
            "vsml_bench.task.Episode"
        )
    length, size = task.episode_length, task.num_outputs
    x, y = np.asarray(episode.x), np.asarray(episode.y)
    if x.shape != (length, *task.obs_shape) or y.shape != (length,):
        raise UserError(
            f"episode of shapes x {x.shape}, y {y.shape}; this task needs x "
            f"{(length, *task.obs_shape)} and y {(length,)}"
        )
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= size:
        raise UserError(f"episode labels must be integers in 0..{size - 1}")
    return Episode(x=jnp.asarray(x, jnp.float32), y=jnp.asarray(y, jnp.int32))


def _check_render_mode(render_mode: str | None) -> None:
    if render_mode is not None:
        raise UserError(
            f"render_mode={render_mode!r}; these environments only take None"
        )


def _numpy_observation(obs: dict[str, jax.Array]) -> Observation:
    # Fresh, writable arrays: users keep observations, e.g. in rollout buffers.
    return {name: np.array(value) for name, value in obs.items()}


def _check_actions(
    action: Any, num_outputs: int, action_type: ActionType, batch: tuple[int, ...]
) -> jax.Array:
    array = np.asarray(action)
    if action_type == "logits":
        expected = (*batch, num_outputs)
        if array.shape != expected or not np.issubdtype(array.dtype, np.number):
            raise UserError(
                f"action of shape {array.shape} ({array.dtype}); expected logits of "
                f"shape {expected}"
            )
        return jnp.asarray(array, jnp.float32)
    if array.shape != batch or not np.issubdtype(array.dtype, np.integer):
        raise UserError(
            f"action {action!r}: expected integer class indices of shape {batch}"
        )
    if np.any(array < 0) or np.any(array >= num_outputs):
        raise UserError(f"action {action!r}: classes lie in 0..{num_outputs - 1}")
    return jnp.asarray(array, jnp.int32)


def _catalogue_spec(
    task: str | Task, action_type: ActionType, overrides: dict[str, Any]
) -> gymnasium.envs.registration.EnvSpec | None:
    if not isinstance(task, str) or task not in TASKS:
        return None
    gym_id = TASKS[task].gym_id
    if gym_id not in gymnasium.registry:
        return None
    kwargs = {"task": task, "action_type": action_type, **overrides}
    return dataclasses.replace(gymnasium.spec(gym_id), kwargs=kwargs)


class VsmlBenchEnv(gymnasium.Env):
    """One task served one example per step (see the module docstring).

    Args:
        task: a name of `vsml_bench.tasks.catalog.TASKS` (e.g. "mnist-randproj") or a
            `Task`.
        action_type: "logits" (`Box(-1, 1, [C])`, reward log softmax(a)[y_t]) or
            "class" (`Discrete(C)`, reward 1 for a right answer).
        render_mode: only None; nothing is rendered.
        **overrides: `Task` fields, e.g. `episode_length=100` or `split="test"`.

    Attributes:
        task: the `Task`.
        episode_key: the JAX key of the current episode:
            `sample_episode(task, env.episode_key, task.load())` is its data (None
            while serving an episode given to `reset`).

    Built from a catalogue name, the environment carries the spec of its Gymnasium id
    (with the overrides as keyword arguments), so that `check_env` can make it again;
    built from a `Task`, it has no spec.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        task: str | Task = "mnist",
        action_type: ActionType = "logits",
        render_mode: str | None = None,
        **overrides: Any,
    ):
        _check_render_mode(render_mode)
        self.task = resolve_task(task, overrides)
        self.action_type = action_type
        self._functions = _functions(self.task, action_type)
        self._data = self.task.load()
        self.observation_space = observation_space(self.task, self._data)
        self.action_space = action_space(self.task, action_type)
        self.render_mode = None
        self.spec = _catalogue_spec(task, action_type, overrides)
        self.episode_key: jax.Array | None = None
        self._state: EnvState | None = None
        self._t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        """Start an episode; return its first observation and an empty info.

        Args:
            seed: seeds `np_random`, from which the episode's key is drawn.
            options: None, or one of `{"key": k}` (serve the episode of JAX key `k`,
                without drawing from `np_random`) and `{"episode": e}` (serve the
                given `Episode`, x: [T, *obs_shape], y: int [T], e.g. one of your
                own data).
        """
        super().reset(seed=seed)
        options = dict(options or {})
        key, episode = options.pop("key", None), options.pop("episode", None)
        _check_options(options)
        if key is not None and episode is not None:
            raise UserError("reset options: give either 'key' or 'episode', not both")
        if episode is not None:
            self.episode_key = None
            self._state = EnvState(
                episode=_check_episode(episode, self.task),
                t=jnp.zeros((), jnp.int32),
            )
            obs = self._functions.env.observation(self._state)
        else:
            if key is None:
                key = jax.random.PRNGKey(episode_seed(self.np_random))
            self.episode_key = jnp.asarray(key)
            obs, self._state = self._functions.env.reset(self.episode_key, self._data)
        self._t = 0
        return _numpy_observation(obs), {}

    def step(
        self, action: Any
    ) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """Answer x_t; return obs_{t+1}, reward, terminated, truncated, info.

        `info` holds `label` (y_t, int) and `correct` (whether the action's class is
        y_t).
        """
        if self._state is None:
            raise UserError("call reset() before step()")
        if self._t >= self.task.episode_length:
            raise UserError(
                f"the episode ended after {self.task.episode_length} steps; call "
                "reset() to start the next one"
            )
        action = _check_actions(action, self.task.num_outputs, self.action_type, ())
        obs, t, reward, terminated, truncated, info = self._functions.step(
            self._state, action
        )
        self._state = self._state.replace(t=t)
        self._t += 1
        reward, terminated, truncated, info = jax.device_get(
            (reward, terminated, truncated, info)
        )
        return (
            _numpy_observation(obs),
            float(reward),
            bool(terminated),
            bool(truncated),
            {"label": int(info["label"]), "correct": bool(info["correct"])},
        )


class VsmlBenchVectorEnv(VectorEnv):
    """`num_envs` episodes of one task stepped together in one jitted call.

    Autoreset follows Gymnasium's next-step mode (`metadata["autoreset_mode"]` is
    `AutoresetMode.NEXT_STEP`): the step that ends an episode returns its last
    observation with `truncated` set; the next `step` call ignores the actions and
    returns the first observations of new episodes, with reward 0, `terminated` and
    `truncated` False, and `info["_label"]` False. Every episode of a task has the
    same length and `reset` restarts all sub-environments, so they always end
    together, and that step is one jitted call that draws all the new episodes.

    Args:
        num_envs: number of episodes run side by side.
        task, action_type, render_mode, overrides: as for `VsmlBenchEnv`.

    Step info: `label` (int32 [num_envs]) and `correct` (bool [num_envs]), with the
    masks `_label` and `_correct` that say which sub-environments took a step.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        task: str | Task = "mnist",
        action_type: ActionType = "logits",
        render_mode: str | None = None,
        **overrides: Any,
    ):
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise UserError(f"num_envs={num_envs!r} must be a positive int")
        _check_render_mode(render_mode)
        self.num_envs = num_envs
        self.task = resolve_task(task, overrides)
        self.action_type = action_type
        self._functions = _functions(self.task, action_type)
        self._data = self.task.load()
        self.single_observation_space = observation_space(self.task, self._data)
        self.single_action_space = action_space(self.task, action_type)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = None
        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._states: EnvState | None = None
        self._autoreset = np.zeros(num_envs, bool)

    def _next_seeds(self, which: np.ndarray) -> np.ndarray:
        seeds = np.zeros(self.num_envs, np.uint32)
        for i in np.flatnonzero(which):
            if self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random()
            seeds[i] = episode_seed(self._rngs[i])
        return seeds

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[Observation, dict[str, Any]]:
        """Start a new episode in every sub-environment.

        Args:
            seed: None (continue each sub-environment's generator), an int s (seeds
                s, s + 1, ...) or one seed (or None) per sub-environment.
            options: not supported (None or empty).
        """
        _check_options(options)
        if isinstance(seed, int):
            super().reset(seed=seed)
            seed = [seed + i for i in range(self.num_envs)]
        if seed is not None:
            if len(seed) != self.num_envs:
                raise UserError(
                    f"{len(seed)} seeds given for {self.num_envs} environments"
                )
            for i, s in enumerate(seed):
                if s is not None:
                    self._rngs[i], _ = seeding.np_random(s)
        seeds = self._next_seeds(np.ones(self.num_envs, bool))
        obs, self._states = self._functions.vreset(jnp.asarray(seeds), self._data)
        self._autoreset = np.zeros(self.num_envs, bool)
        return _numpy_observation(obs), {}

    def step(
        self, actions: Any
    ) -> tuple[Observation, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Answer every sub-environment's x_t (see the class docstring for resets)."""
        if self._states is None:
            raise UserError("call reset() before step()")
        actions = _check_actions(
            actions, self.task.num_outputs, self.action_type, (self.num_envs,)
        )
        n = self.num_envs
        if self._autoreset.any():
            # Every episode of a task has the same length and reset() restarts them
            # all, so the sub-environments always end, and restart, together.
            assert self._autoreset.all()
            seeds = self._next_seeds(self._autoreset)
            obs, self._states = self._functions.vreset(jnp.asarray(seeds), self._data)
            reward = np.zeros(n, np.float32)
            terminated, truncated = np.zeros(n, bool), np.zeros(n, bool)
            label, correct, stepped = np.zeros(n, np.int32), np.zeros(n, bool), False
        else:
            obs, t, reward, terminated, truncated, info = self._functions.vstep(
                self._states, actions
            )
            self._states = self._states.replace(t=t)
            reward, terminated, truncated, label, correct = (
                np.array(a)
                for a in jax.device_get(
                    (reward, terminated, truncated, info["label"], info["correct"])
                )
            )
            stepped = True
        infos = {
            "label": label,
            "_label": np.full(n, stepped),
            "correct": correct,
            "_correct": np.full(n, stepped),
        }
        self._autoreset = terminated | truncated
        return _numpy_observation(obs), reward, terminated, truncated, infos
