"""Meta-testing: running a learner with frozen meta-parameters on a task's episodes.

Episode i of a meta-test always comes from the key `fold_in(PRNGKey(seed), i)`, whatever
the learner, so every learner sees identical streams. The learner's own initial state
uses a key derived from the same episode key, so results are reproducible.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from vsml_bench.learner import Learner, PyTree, online_metrics, rollout
from vsml_bench.population import map_members
from vsml_bench.task import Task, sample_episodes


def episode_keys(seed: int, count: int, start: int = 0) -> jax.Array:
    """Keys of meta-test episodes start..start+count-1: [count, 2]."""
    base = jax.random.PRNGKey(seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(
        jnp.arange(start, start + count)
    )


def learner_key(episode_key: jax.Array) -> jax.Array:
    """The key of a learner's initial state for an episode (shared by all learners)."""
    return jax.random.fold_in(episode_key, 0x5EED)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run_chunk(learner: Learner, task: Task, meta_params, keys, data):
    episodes = sample_episodes(task, keys, data)
    logits = map_members(
        lambda k, x, y: rollout(learner, meta_params, learner_key(k), x, y),
        (keys, episodes.x, episodes.y),
    )
    return online_metrics(logits, episodes.y)


def meta_test(
    learner: Learner,
    meta_params: PyTree,
    task: Task,
    num_episodes: int,
    seed: int = 0,
    chunk: int = 8,
) -> dict[str, np.ndarray]:
    """Online cross-entropy and correctness of every step of every episode.

    Args:
        learner: built for `task.spec`.
        meta_params: frozen theta.
        task: the episode distribution.
        num_episodes: N.
        seed: the meta-test seed (identical streams for identical seeds).
        chunk: episodes run together (bounds memory).
    Returns:
        `loss` and `correct`, float32 [N, T].
    """
    data = task.load()
    parts = {"loss": [], "correct": []}
    for start in range(0, num_episodes, chunk):
        count = min(chunk, num_episodes - start)
        keys = episode_keys(seed, count, start)
        metrics = _run_chunk(learner, task, meta_params, keys, data)
        for name in parts:
            parts[name].append(np.asarray(metrics[name]))
    return {name: np.concatenate(values) for name, values in parts.items()}


def summarise(loss: np.ndarray, correct: np.ndarray, last: int | None = None) -> dict:
    """Mean online accuracy, last-10% accuracy and cross-entropy with 95% intervals.

    Args:
        loss, correct: [N, T] per-step values.
        last: steps counted by `accuracy_last` (default: the last 10%, at least one).
    Returns:
        A dict of floats: each metric's mean over episodes and the half-width of its
        95% confidence interval (normal approximation over episodes).
    """
    steps = correct.shape[1]
    last = last or max(1, math.ceil(steps / 10))
    per_episode = {
        "accuracy": correct.mean(axis=1),
        "accuracy_last": correct[:, -last:].mean(axis=1),
        "cross_entropy": loss.mean(axis=1),
    }
    summary = {"episodes": int(correct.shape[0]), "steps": int(steps)}
    for name, values in per_episode.items():
        summary[name] = float(values.mean())
        if len(values) > 1:
            sem = values.std(ddof=1) / math.sqrt(len(values))
            summary[name + "_ci95"] = float(1.96 * sem)
        else:
            summary[name + "_ci95"] = float("nan")
    return summary
