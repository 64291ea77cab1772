"""The example learner of docs/learners.md runs as printed, and it learns."""

import math
import pathlib
import re
import sys
import types

import jax
import jax.numpy as jnp
import pytest

from vsml_bench.learner import Learner, TaskSpec, online_metrics, rollout
from vsml_bench.registry import make_learner

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "learners.md"
MODULE = "docs_learners_example"
CLASSES, INPUTS, T, EPISODES = 3, 12, 60, 16


@pytest.fixture
def example_module(monkeypatch):
    """The page's one ```python block, executed as an importable module."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1, "docs/learners.md should hold exactly one python block"
    module = types.ModuleType(MODULE)
    monkeypatch.setitem(sys.modules, MODULE, module)
    exec(compile(blocks[0], str(DOC), "exec"), module.__dict__)
    return module


def _easy_episodes(key):
    """Each episode: 3 random class prototypes, examples = prototype + small noise.

    Returns x [E, T, INPUTS], y [E, T].
    """
    k_proto, k_y, k_noise = jax.random.split(key, 3)
    prototypes = jax.random.normal(k_proto, (EPISODES, CLASSES, INPUTS))
    y = jax.random.randint(k_y, (EPISODES, T), 0, CLASSES)
    noise = 0.3 * jax.random.normal(k_noise, (EPISODES, T, INPUTS))
    x = jnp.take_along_axis(prototypes, y[..., None], axis=1) + noise
    return x, y


def _halves(learner, meta_params):
    """Mean accuracy and cross-entropy over the first and the second half of T."""
    x, y = _easy_episodes(jax.random.PRNGKey(0))
    keys = jax.random.split(jax.random.PRNGKey(1), EPISODES)
    episodes = jax.vmap(rollout, in_axes=(None, None, 0, 0, 0))
    logits = jax.jit(episodes, static_argnums=0)(learner, meta_params, keys, x, y)
    metrics = online_metrics(logits, y)
    return {
        name: (float(v[:, : T // 2].mean()), float(v[:, T // 2 :].mean()))
        for name, v in metrics.items()
    }


def test_example_learner_learns_an_easy_stream(example_module):
    spec = TaskSpec((INPUTS,), CLASSES)
    learner = make_learner(f"{MODULE}:DeltaRule", spec, init_log_lr=-2.0)
    assert isinstance(learner, Learner)
    meta_params = learner.init(jax.random.PRNGKey(0))

    halves = _halves(learner, meta_params)

    first, second = halves["correct"]
    assert second > first
    assert second > 0.8  # chance is 1/3
    first, second = halves["loss"]
    assert second < 0.5 * first


def test_example_meta_parameter_controls_learning(example_module):
    # The delta rule's predictions (argmax) do not depend on the learning rate, its
    # confidence does: with a vanishing rate the logits stay near zero and the
    # cross-entropy at ln 3, the loss of a uniform guess.
    learner = make_learner(
        f"{MODULE}:DeltaRule", TaskSpec((INPUTS,), CLASSES), init_log_lr=-30.0
    )
    _, second = _halves(learner, learner.init(jax.random.PRNGKey(0)))["loss"]
    assert second == pytest.approx(math.log(CLASSES), abs=1e-4)
