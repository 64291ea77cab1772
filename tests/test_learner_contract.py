"""The contract every registered learner keeps (see vsml_bench/learner.py).

One parametrised set of checks over `BUILTIN_LEARNERS`: a learner is tested by being
registered. Small shapes keep it fast: 12 inputs, 3 classes, 6 steps.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml_bench.errors import UserError
from vsml_bench.learner import Learner, TaskSpec, rollout, shifted_labels
from vsml_bench.registry import BUILTIN_LEARNERS, make_learner

SPEC = TaskSpec((12,), 3)
T = 6
NAMES = list(BUILTIN_LEARNERS)

jit_rollout = jax.jit(rollout, static_argnums=0)


@functools.cache
def _setup(name):
    """The learner with default options, its theta, and one episode."""
    learner = make_learner(name, SPEC)
    meta_params = learner.init(jax.random.PRNGKey(0))
    k_x, k_y = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(k_x, (T, *SPEC.input_shape))
    y = jax.random.randint(k_y, (T,), 0, SPEC.num_classes)
    return learner, meta_params, x, y


@pytest.mark.parametrize("name", NAMES)
def test_logits_shape_dtype_and_scan_match_a_python_loop(name):
    learner, meta_params, x, y = _setup(name)
    assert isinstance(learner, Learner)
    assert type(learner).name == name
    key = jax.random.PRNGKey(2)

    logits = jit_rollout(learner, meta_params, key, x, y)

    assert logits.shape == (T, SPEC.num_classes)
    assert logits.dtype == jnp.float32
    assert np.all(np.isfinite(logits))

    # The same episode step by step in a Python loop instead of `lax.scan`.
    step = jax.jit(learner.step)
    state = learner.reset(key, meta_params)
    prev = shifted_labels(y, SPEC.num_classes)
    for t in range(T):
        state, logits_t = step(meta_params, state, x[t], prev[t])
        assert logits_t.shape == (SPEC.num_classes,)
        assert logits_t.dtype == jnp.float32
        np.testing.assert_allclose(logits_t, logits[t], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_same_key_same_init_and_reset(name):
    learner, meta_params, _, _ = _setup(name)

    again = learner.init(jax.random.PRNGKey(0))
    jax.tree.map(np.testing.assert_array_equal, again, meta_params)

    key = jax.random.PRNGKey(5)
    first = learner.reset(key, meta_params)
    second = learner.reset(key, meta_params)
    jax.tree.map(np.testing.assert_array_equal, first, second)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_population_and_episodes(name):
    learner, meta_params, x, y = _setup(name)
    population, episodes = 2, 2

    # Perturbed copies of theta, as an evolution strategy makes them.
    leaves, treedef = jax.tree.flatten(meta_params)
    noise_keys = jax.random.split(jax.random.PRNGKey(3), max(len(leaves), 1))
    members = jax.tree.unflatten(
        treedef,
        [
            leaf + 0.01 * jax.random.normal(k, (population, *leaf.shape), leaf.dtype)
            for leaf, k in zip(leaves, noise_keys)
        ],
    )
    xs = jnp.stack([x, -x[::-1]])
    ys = jnp.stack([y, (y + 1) % SPEC.num_classes])
    keys = jax.random.split(jax.random.PRNGKey(4), population * episodes).reshape(
        population, episodes, -1
    )

    episode = functools.partial(rollout, learner)
    over_episodes = jax.vmap(episode, in_axes=(None, 0, 0, 0))
    over_population = jax.vmap(over_episodes, in_axes=(0, 0, None, None))
    logits = jax.jit(over_population)(members, keys, xs, ys)

    assert logits.shape == (population, episodes, T, SPEC.num_classes)
    for p in range(population):
        member = jax.tree.map(lambda leaf, p=p: leaf[p], members)
        for e in range(episodes):
            single = jit_rollout(learner, member, keys[p, e], xs[e], ys[e])
            np.testing.assert_allclose(logits[p, e], single, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_no_peeking_at_the_current_label(name):
    learner, meta_params, x, y = _setup(name)
    key = jax.random.PRNGKey(6)
    base = jit_rollout(learner, meta_params, key, x, y)

    for t in range(T):
        changed = y.at[t].set((y[t] + 1) % SPEC.num_classes)
        logits = jit_rollout(learner, meta_params, key, x, changed)
        # Everything up to and including the prediction of x_t is unchanged.
        np.testing.assert_array_equal(logits[: t + 1], base[: t + 1])


@pytest.mark.parametrize(
    ("name", "options", "named"),
    [
        ("no_such_learner", {}, ["'no_such_learner'", "sgd"]),
        ("vsml_bench.no_such_module:Thing", {}, ["'vsml_bench.no_such_module'"]),
        ("vsml_bench.learner:NoSuchThing", {}, ["'NoSuchThing'"]),
        ("vsml_bench.learner:", {}, ["module:attribute"]),
        ("vsml_bench.learner:TaskSpec", {}, ["TaskSpec", "not a subclass"]),
        ("sgd", {"momentum": 0.9}, ["'momentum'", "learning_rate"]),
        ("sgd", {"learning_rate": "fast"}, ["learning_rate", "'fast'", "float"]),
        ("sgd", {"model": "resnet"}, ["model", "'resnet'", "'mlp'"]),
    ],
    ids=[
        "unknown-name",
        "missing-module",
        "missing-attribute",
        "malformed-target",
        "not-a-learner",
        "unknown-option",
        "wrong-type",
        "not-a-choice",
    ],
)
def test_make_learner_rejects_bad_input_by_name(name, options, named):
    with pytest.raises(UserError) as error:
        make_learner(name, SPEC, **options)
    for fragment in named:
        assert fragment in str(error.value)
