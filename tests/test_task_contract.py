"""One contract, checked for every named task of the catalogue.

Datasets that need a download read small in-memory arrays of the right shape and class
count instead (`offline_datasets` in conftest.py); MNIST, Fashion-MNIST and the
synthetic datasets are real. Each task is shortened to `LENGTH` steps (few-shot tasks
keep theirs), and every check reuses the task's one compiled sampler and step.
"""

from __future__ import annotations

import math
import warnings

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from scipy import stats

from vsml_bench.gym_env import VsmlBenchEnv
from vsml_bench.task import sample_episode
from vsml_bench.tasks.catalog import TASKS, make_task

LENGTH = 50
# Class balance is judged on the labels of several episodes pooled (2,000 labels):
# correct sampling makes the pooled counts multinomial, and episodes that favour some
# classes (even different ones per episode) widen their spread. Balanced counts fail
# the chi-square test at level P_MIN with probability 1e-4; the keys are fixed, so a
# pass is reproducible.
BALANCE_EPISODES = 40
P_MIN = 1e-4


def _overrides(name: str) -> dict:
    return {} if "ways" in TASKS[name].fields else {"episode_length": LENGTH}


def _balance_episodes(task) -> int:
    # Drawing a fresh 3072 x 3072 projection takes a good part of a second on a CPU;
    # 4 episodes (200 labels) keep those tasks quick and still catch a skewed sampler.
    if task.projection == "fresh" and math.prod(task.image_shape) > 1024:
        return 4
    return BALANCE_EPISODES


def _walk(env, steps: int, action, **reset):
    """Observations at t = 0..steps and the rewards and infos of steps 0..steps-1."""
    obs, _ = env.reset(**reset)
    observations, rewards, infos = [obs], [], []
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(action)
        assert not terminated
        observations.append(obs)
        rewards.append(reward)
        infos.append((info, truncated))
    return observations, rewards, infos


def _checked_gymnasium_env(name: str) -> VsmlBenchEnv:
    """`gymnasium.make` of the task's id, passed through `check_env` with no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gymnasium.make(TASKS[name].gym_id, **_overrides(name))
        check_env(env.unwrapped)
    assert isinstance(env.unwrapped, VsmlBenchEnv)
    return env.unwrapped


def _check_stream(env, task, data) -> None:
    """One episode step by step equals `sample_episode` of the episode's key."""
    length, size = task.episode_length, task.num_outputs
    action = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    log_probs = action - np.log(np.sum(np.exp(action.astype(np.float64))))
    observations, rewards, infos = _walk(env, length, action, seed=3)
    episode = sample_episode(task, env.episode_key, data)
    x, y = np.asarray(episode.x), np.asarray(episode.y)
    for t in range(length):
        obs = observations[t]
        assert obs["x"].dtype == np.float32 and obs["x"].shape == task.obs_shape
        assert obs["prev_label"].dtype == np.float32
        np.testing.assert_array_equal(obs["x"], x[t])
        expected = np.eye(size, dtype=np.float32)[y[t - 1]] if t else np.zeros(size)
        np.testing.assert_array_equal(obs["prev_label"], expected)
        info, truncated = infos[t]
        assert info["label"] == y[t]
        assert truncated == (t == length - 1)
        np.testing.assert_allclose(rewards[t], log_probs[y[t]], rtol=1e-5)


def _check_no_label_leak(env, task, data) -> None:
    """Changing y_t changes nothing observed before the step that answers x_t."""
    length, size = task.episode_length, task.num_outputs
    episode = sample_episode(task, jax.random.PRNGKey(11), data)
    action = np.arange(size, dtype=np.float32)
    before, rewards, _ = _walk(env, length, action, options={"episode": episode})
    for t in sorted({0, length // 2, length - 1}):
        y = episode.y.at[t].set((episode.y[t] + 1) % size)
        after, altered_rewards, _ = _walk(
            env, t + 1, action, options={"episode": episode.replace(y=y)}
        )
        for s in range(t + 1):
            for part in ("x", "prev_label"):
                np.testing.assert_array_equal(after[s][part], before[s][part])
        # The step answering x_t reveals y_t, and the next observation carries it.
        assert altered_rewards[t] != rewards[t]
        assert not np.array_equal(
            after[t + 1]["prev_label"], before[t + 1]["prev_label"]
        )


def _check_balance(task, data) -> None:
    if task.ways is not None:
        support_size = task.ways * task.shots
        for seed in range(20):
            episode = sample_episode(task, jax.random.PRNGKey(seed), data)
            y, x = np.asarray(episode.y), np.asarray(episode.x)
            counts = np.bincount(y[:support_size], minlength=task.ways)
            np.testing.assert_array_equal(counts, np.full(task.ways, task.shots))
            assert set(y[support_size:]) <= set(y[:support_size])
            # Every example of an episode is a different drawing.
            assert len(np.unique(x.reshape(len(x), -1), axis=0)) == len(x)
        return
    y = np.concatenate(
        [
            np.asarray(sample_episode(task, jax.random.PRNGKey(100 + i), data).y)
            for i in range(_balance_episodes(task))
        ]
    )
    counts = np.bincount(y, minlength=task.episode_classes)
    assert len(counts) == task.episode_classes
    assert stats.chisquare(counts).pvalue > P_MIN, counts


@pytest.mark.parametrize("name", list(TASKS))
def test_task_contract(name, offline_datasets):
    task = make_task(name, **_overrides(name))
    data = task.load()

    env = _checked_gymnasium_env(name)
    assert env.task == task

    key = jax.random.PRNGKey(7)
    episode = sample_episode(task, key, data)
    assert episode.x.shape == (task.episode_length, *task.obs_shape)
    assert episode.x.dtype == jnp.float32
    assert episode.y.shape == (task.episode_length,) and episode.y.dtype == jnp.int32
    assert int(episode.y.min()) >= 0 and int(episode.y.max()) < task.episode_classes
    again = sample_episode(task, key, data)
    np.testing.assert_array_equal(again.x, episode.x)
    np.testing.assert_array_equal(again.y, episode.y)
    other = sample_episode(task, jax.random.PRNGKey(8), data)
    assert not np.array_equal(other.x, episode.x)

    _check_stream(env, task, data)
    _check_no_label_leak(env, task, data)
    _check_balance(task, data)
