"""What the benchmark pipeline costs besides the learners: drawing episodes, and the
parts of a meta-training generation that are not the learners' episodes.

Both report ratios measured in one process, so that they hold on any machine:
`bench_episodes` compares drawing a batch of episodes with running one VSML episode
of the same length, and `bench_generation` splits an ES generation into asking,
drawing, evaluating (the learners' episodes), gathering and telling.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp

from vsml_bench.bench import matmul_gflops
from vsml_bench.learner import rollout
from vsml_bench.registry import make_learner
from vsml_bench.task import sample_episodes
from vsml_bench.tasks.catalog import make_task


def _median_seconds(run, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run())
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def bench_episodes(
    task: str = "mnist-randproj",
    episodes: int = 256,
    steps: int = 500,
    repeats: int = 3,
) -> dict[str, Any]:
    """Seconds to draw `episodes` episodes vs. one VSML episode of the same length.

    Args:
        task: a built-in task name (default: MNIST with a fresh random projection per
            episode, the costliest transformation).
        episodes: episodes drawn in one jitted call.
        steps: the episode length T.
        repeats: timed repetitions after a warm-up (median reported).
    """
    spec_task = make_task(task, episode_length=steps)
    data = spec_task.load()
    keys = jax.random.split(jax.random.PRNGKey(0), episodes)
    jax.block_until_ready(sample_episodes(spec_task, keys, data))
    draw = _median_seconds(lambda: sample_episodes(spec_task, keys, data), repeats)

    learner = make_learner("vsml", spec_task.spec)
    theta = learner.init(jax.random.PRNGKey(1))
    one = sample_episodes(spec_task, keys[:1], data)
    run = jax.jit(lambda th, x, y: rollout(learner, th, jax.random.PRNGKey(2), x, y))
    jax.block_until_ready(run(theta, one.x[0], one.y[0]))
    vsml = _median_seconds(lambda: run(theta, one.x[0], one.y[0]), repeats)
    return {
        "benchmark": "episodes",
        "task": task,
        "episodes": episodes,
        "steps": steps,
        "draw_s": draw,
        "draw_s_per_episode": draw / episodes,
        "vsml_episode_s": vsml,
        "draw_per_episode_over_vsml_episode": draw / episodes / vsml,
        "draw_all_over_vsml_episode": draw / vsml,
        "matmul_gflops": matmul_gflops(),
    }


def bench_generation(
    overrides: list[str] = (), generations: int = 5, warmup: int = 2
) -> dict[str, Any]:
    """Where an ES generation's time goes, on the CPU default unless overridden.

    Args:
        overrides: `key=value` config overrides (default config: VSML on
            randproj-mnist-cpu, population 64).
        generations: timed generations after `warmup` untimed ones (compilation).
    Returns:
        Median seconds of each part and `overhead`, the share of the generation not
        spent in the learners' episodes.
    """
    from vsml_bench.config import load_config
    from vsml_bench.training.distributed import Communicator
    from vsml_bench.training.es import ESTrainer
    from vsml_bench.training.run import build_learner, suite_tasks

    config = load_config(overrides=list(overrides))
    _, tasks, _ = suite_tasks(config)
    learner = build_learner(config, tasks[0].spec)
    trainer = ESTrainer(config, learner, tasks, Communicator())
    state = trainer.init(jax.random.PRNGKey(config.seed))
    parts = []
    for generation in range(warmup + generations):
        state, _, times = trainer.generation(state, jax.random.PRNGKey(generation))
        if generation >= warmup:
            parts.append(times)
    median = {
        name: statistics.median(getattr(t, name) for t in parts)
        for name in ("ask", "draw", "evaluate", "gather", "tell")
    }
    total = sum(median.values())
    return {
        "benchmark": "generation",
        "agent": config.agent,
        "suite": config.suite,
        "population": config.es.population,
        "episode_length": tasks[0].episode_length,
        **{f"{name}_s": value for name, value in median.items()},
        "generation_s": total,
        "overhead": 1.0 - median["evaluate"] / total,
        "matmul_gflops": matmul_gflops(),
        "finite": bool(jnp.all(jnp.isfinite(state.mean))),
    }
