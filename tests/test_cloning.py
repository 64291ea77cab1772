"""Backprop cloning: its targets, its training, and the shipped cloned VSML."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml_bench.agents.vsml import LOGIT_CHANNEL, VSML
from vsml_bench.config import load_config
from vsml_bench.errors import UserError
from vsml_bench.evaluation import meta_test
from vsml_bench.harness import load_meta_params, pretrained_path
from vsml_bench.learner import TaskSpec, prev_error, soft_clip
from vsml_bench.tasks.catalog import make_task
from vsml_bench.training.cloning import (
    CloningTrainer,
    cloning_targets,
    connection_messages,
    draw_streams,
)


def _hand_targets(u0, x, e, lr, bound, M):
    """The weight rule written out step by step, in plain numpy."""
    fwd, bwd, u, x_prev = np.zeros((len(x), M)), np.zeros((len(x), M)), u0, 0.0
    for t in range(len(x)):
        w_before = bound * math.tanh(u / bound)
        u = u - lr * x_prev * e[t]
        w = bound * math.tanh(u / bound)
        fwd[t, 0] = fwd[t, 1] = w * x[t]
        bwd[t, 0] = w_before * e[t]
        x_prev = x[t]
    return fwd, bwd


def test_targets_follow_the_weight_update_with_the_input_of_the_errors_step():
    rng = np.random.default_rng(0)
    x, e = rng.normal(size=40), rng.normal(size=40) * 0.4
    e[0] = 0.0
    for bound in (3.0, 1e6):  # saturating, and effectively the plain rule
        fwd, bwd, _ = cloning_targets(
            jnp.float32(0.7), jnp.asarray(x), jnp.asarray(e), 0.5, bound, 8
        )
        want_fwd, want_bwd = _hand_targets(0.7, x, e, 0.5, bound, 8)
        np.testing.assert_allclose(fwd, want_fwd, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(bwd, want_bwd, rtol=1e-4, atol=1e-4)


def test_connection_messages_reproduce_a_vsml_layer():
    """Every connection of VSML.step, run alone on its x_a and e_b, gives the same
    logits: the training streams simulate exactly what VSML computes."""
    A, C, T = 3, 4, 6
    learner = VSML(TaskSpec((A,), C))
    theta = learner.init(jax.random.PRNGKey(1))
    # Larger-than-init kernels so that the states move visibly in a few steps.
    theta = {**theta, "kernel": 3.0 * theta["kernel"], "fwd_w": 5 * theta["fwd_w"]}
    state = learner.reset(jax.random.PRNGKey(2), theta)
    c0 = state.c[0]
    x = jax.random.normal(jax.random.PRNGKey(3), (T, A))
    labels = jax.nn.one_hot(jnp.array([0, 3, 1, 1, 2, 0]), C)

    step = jax.jit(learner.step)
    logits, errors, prev = [], [], jnp.zeros(C)
    for t in range(T):
        errors.append(prev_error(state.logits, prev))
        state, out = step(theta, state, x[t], prev)
        logits.append(out)
        prev = labels[t]
    logits, errors = jnp.stack(logits), jnp.stack(errors)

    M = learner.message_size
    pairs = [(a, b) for a in range(A) for b in range(C)]
    fwd_in = jnp.stack([jnp.zeros((T, M)).at[:, 0].set(x[:, a]) for a, _ in pairs])
    bwd_in = jnp.stack([jnp.zeros((T, M)).at[:, 0].set(errors[:, b]) for _, b in pairs])
    cells = jnp.stack([c0[a, b] for a, b in pairs])
    fwd, _ = jax.vmap(
        lambda c, f, b: connection_messages(theta, c, f, b, learner.micro_ticks)
    )(cells, fwd_in, bwd_in)
    emitted = fwd[..., LOGIT_CHANNEL].reshape(A, C, T).transpose(2, 0, 1)
    np.testing.assert_allclose(
        soft_clip(emitted.mean(axis=1)), logits, rtol=1e-4, atol=1e-5
    )
    assert float(jnp.std(logits)) > 1e-3


def _trainer(**cloning):
    overrides = [f"cloning.{k}={v}" for k, v in cloning.items()]
    config = load_config([], ["method=cloning", "generations=4", *overrides])
    return CloningTrainer(config, VSML(TaskSpec((16,), 10)), (), None)


def test_a_few_cloning_steps_reduce_the_loss():
    trainer = _trainer(
        batch_size=32, sequence_length=16, steps_per_generation=40, learning_rate=0.03
    )
    state = trainer.init(jax.random.PRNGKey(0))
    held_out = draw_streams(jax.random.PRNGKey(99), 256, 16, 16, 8, 10.0)
    loss = jax.jit(lambda p: trainer.loss(p, held_out)[0])
    before = float(loss(state.mean))
    for generation in range(2):
        state, metrics, _ = trainer.generation(state, jax.random.PRNGKey(generation))
        assert np.isfinite(metrics["meta_loss"])
    after = float(loss(state.mean))
    assert after < 0.8 * before, (before, after)


def test_cloning_rejects_learners_it_cannot_train():
    config = load_config([], ["method=cloning"])
    with pytest.raises(UserError, match="label_input"):
        CloningTrainer(config, VSML(TaskSpec((4,), 2), label_input=True), (), None)
    with pytest.raises(UserError, match="cloning.batch_size"):
        _trainer(batch_size=0)


@pytest.fixture(scope="module")
def shipped():
    path = pretrained_path()
    assert path is not None, "vsml_bench/pretrained/vsml-cloned.safetensors missing"
    return path


@pytest.mark.parametrize("inputs", [784, 64])
def test_the_shipped_file_loads_into_vsml(shipped, inputs):
    learner = VSML(TaskSpec((inputs,), 10))
    theta, _ = load_meta_params(shipped, learner)
    state = learner.reset(jax.random.PRNGKey(0), theta)
    _, logits = learner.step(theta, state, jnp.ones(inputs), jnp.zeros(10))
    assert logits.shape == (10,) and bool(jnp.all(jnp.isfinite(logits)))


def test_the_shipped_vsml_learns_mnist_online_without_gradients(shipped):
    task = make_task("mnist-cpu", split="test", episode_length=300)
    learner = VSML(task.spec)
    theta, _ = load_meta_params(shipped, learner)
    correct = meta_test(learner, theta, task, num_episodes=8, seed=0)["correct"]
    first, second = correct[:, :150].mean(), correct[:, 150:].mean()
    assert second > first + 0.1, (first, second)
    assert second > 0.3, second  # chance is 0.1
