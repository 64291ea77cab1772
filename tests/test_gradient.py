"""Gradient-based meta-training: backpropagation through whole episodes."""

import jax
import numpy as np
import optax

from vsml_bench.config import load_config
from vsml_bench.training.distributed import Communicator
from vsml_bench.training.es import draw_training_episodes
from vsml_bench.training.gradient import GradientTrainer, _batch_loss
from vsml_bench.training.run import build_learner, suite_tasks


def _trainer(*overrides):
    config = load_config(
        overrides=[
            "agent=toy_learners:DeltaRule",
            "method=gradient",
            "gradient.batch_size=8",
            "episode_length=30",
            *overrides,
        ]
    )
    _, tasks, _ = suite_tasks(config)
    learner = build_learner(config, tasks[0].spec)
    return GradientTrainer(config, learner, tasks, Communicator())


def test_one_step_is_clipped_adam_on_the_batch_gradient():
    trainer = _trainer("gradient.clip_norm=0.5", "gradient.learning_rate=0.01")
    state = trainer.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    new_state, metrics, _ = trainer.generation(state, key)

    episodes, keys = draw_training_episodes(trainer.tasks, trainer.datas, key, 8)
    grads = jax.grad(
        lambda th: _batch_loss(
            trainer.learner, trainer.steps, th, episodes.x, episodes.y, keys
        )
    )(state.mean)
    flat, unravel = jax.flatten_util.ravel_pytree(grads)
    norm = float(np.linalg.norm(flat))
    assert metrics["grad_norm"] == np.float32(norm) or np.isclose(
        metrics["grad_norm"], norm, rtol=1e-5
    )
    clipped = unravel(flat * min(1.0, 0.5 / norm))
    adam = optax.adam(0.01)
    updates, _ = adam.update(clipped, adam.init(state.mean), state.mean)
    expected = optax.apply_updates(state.mean, updates)
    for got, want in zip(jax.tree.leaves(new_state.mean), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_meta_loss_falls_on_held_out_episodes():
    trainer = _trainer("gradient.learning_rate=0.05")
    state = trainer.init(jax.random.PRNGKey(0))
    held_out, keys = draw_training_episodes(
        trainer.tasks, trainer.datas, jax.random.PRNGKey(99), 16
    )

    def loss(theta):
        return float(
            _batch_loss(
                trainer.learner, trainer.steps, theta, held_out.x, held_out.y, keys
            )
        )

    before = loss(state.mean)
    for g in range(25):
        state, _, _ = trainer.generation(state, jax.random.PRNGKey(g))
    assert loss(state.mean) < before - 0.05
