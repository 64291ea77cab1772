"""Evolution strategies: the estimator, the generation loop, fitness sanitising."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vsml_bench.config import load_config
from vsml_bench.errors import UserError
from vsml_bench.training.distributed import Communicator
from vsml_bench.training.es import ESTrainer, make_strategy, sanitise_fitness
from vsml_bench.training.run import build_learner, suite_tasks

TOY = "toy_learners:DeltaRule"


def test_open_es_step_equals_the_reference_estimator_under_adam():
    config = load_config(overrides=["es.population=8"])
    solution = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
    strategy, params = make_strategy(config, solution)
    mean = {"a": jnp.array([0.1, -0.2, 0.3]), "b": jnp.array([[1.0, 2.0], [3.0, 4.0]])}
    state = strategy.init(jax.random.PRNGKey(0), mean, params)
    population, state = strategy.ask(jax.random.PRNGKey(1), state, params)

    flat = np.concatenate(
        [np.asarray(population["a"]), np.asarray(population["b"]).reshape(8, 4)], 1
    )
    flat_mean = np.array([0.1, -0.2, 0.3, 1.0, 2.0, 3.0, 4.0])
    eps = (flat - flat_mean) / 0.05
    np.testing.assert_allclose(eps[:4], -eps[4:], atol=1e-5)

    fitness = np.random.default_rng(0).normal(size=8).astype(np.float32)
    pairs_plus, pairs_minus = fitness[:4], fitness[4:]
    reference_grad = np.mean(
        (pairs_plus - pairs_minus)[:, None] / (2 * 0.05) * eps[:4], axis=0
    )
    adam = optax.adam(0.025, b1=0.9, b2=0.999)
    updates, _ = adam.update(
        jnp.asarray(reference_grad), adam.init(jnp.zeros(7)), jnp.asarray(flat_mean)
    )
    expected = flat_mean + np.asarray(updates)

    state, _ = strategy.tell(
        jax.random.PRNGKey(2), population, jnp.asarray(fitness), state, params
    )
    np.testing.assert_allclose(np.asarray(state.mean), expected, rtol=1e-5, atol=1e-6)


def test_antithetic_pairs_share_one_episode_and_key():
    config = load_config(
        overrides=[f"agent={TOY}", "es.population=6", "episode_length=5"]
    )
    _, tasks, _ = suite_tasks(config)
    trainer = ESTrainer(
        config, build_learner(config, tasks[0].spec), tasks, Communicator()
    )
    assert trainer.num_episodes == 3
    np.testing.assert_array_equal(np.asarray(trainer.episode_ids), [0, 1, 2, 0, 1, 2])

    state = trainer.init(jax.random.PRNGKey(0))
    population, _ = trainer.strategy.ask(jax.random.PRNGKey(1), state, trainer.params)
    mirrored = jax.tree.map(lambda a: a.at[3:].set(a[:3]), population)
    from vsml_bench.training.es import draw_training_episodes, population_fitness

    episodes, keys = draw_training_episodes(
        trainer.tasks, trainer.datas, jax.random.PRNGKey(2), 3
    )
    fitness = population_fitness(
        trainer.learner, trainer.steps, mirrored, episodes, keys, trainer.episode_ids
    )
    np.testing.assert_allclose(fitness[:3], fitness[3:], rtol=1e-6)


def test_non_finite_fitness_counts_as_the_worst_and_the_run_goes_on():
    fitness, bad = sanitise_fitness(np.array([1.0, np.nan, 3.0, np.inf], np.float32))
    np.testing.assert_array_equal(fitness, [1.0, 3.0, 3.0, 3.0])
    assert bad == 2

    config = load_config(
        overrides=[
            "agent=toy_learners:Exploding",
            "es.population=8",
            "es.std=0.5",
            "episode_length=5",
        ]
    )
    _, tasks, _ = suite_tasks(config)
    learner = build_learner(config, tasks[0].spec)
    trainer = ESTrainer(config, learner, tasks, Communicator())
    state = trainer.init(jax.random.PRNGKey(0))
    state, metrics, _ = trainer.generation(state, jax.random.PRNGKey(1))
    assert metrics["non_finite"] > 0
    assert np.isfinite(metrics["meta_loss"])
    assert bool(jnp.all(jnp.isfinite(state.mean)))


def test_population_must_split_evenly_over_ranks():
    with pytest.raises(UserError, match="does not split evenly over 3"):
        Communicator(rank=0, size=3).share(64)
    assert Communicator(rank=1, size=2).share(8) == (4, 8)


def test_other_evosax_strategies_are_chosen_by_name_with_their_options():
    solution = jnp.zeros(5)
    config = load_config(overrides=["es.strategy=SNES", "es.population=6"])
    strategy, params = make_strategy(config, solution)
    assert type(strategy).__name__ == "SNES"
    assert float(params.std_init) == pytest.approx(0.05)

    config = load_config(overrides=["es.strategy=NoSuchES"])
    with pytest.raises(UserError, match="NoSuchES"):
        make_strategy(config, solution)
    config = load_config(overrides=["es.strategy=SNES", "es.options.bogus=1"])
    with pytest.raises(UserError, match="bogus"):
        make_strategy(config, solution)


@pytest.mark.parametrize(
    "override, message",
    [
        ("es.populaton=8", "populaton"),
        ("es.population=many", "es.population"),
        ("method=evolution", "evolution"),
        ("es.population=7", "even"),
        ("generations=0", "generations"),
    ],
)
def test_config_rejects_unknown_keys_and_wrong_types(override, message):
    with pytest.raises(UserError, match=message):
        load_config(overrides=[override])
