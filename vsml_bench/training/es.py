"""Meta-training with evolution strategies from evosax.

The default is OpenAI-ES (Salimans et al. 2017, arXiv:1703.03864) with the settings of
Kirsch and Schmidhuber (2021): antithetic pairs (theta + s eps, theta - s eps) that run
on the same episode (same data, same key), s = 0.05, no fitness shaping, Adam with
learning rate 0.025. evosax's OpenAI-ES then computes
sum_i f_i z_i / (P s) = mean over pairs of (L+ - L-) z / (2 s), the reference
estimator. Any other distribution-based evosax strategy is chosen by its name.

Fitness is the meta-loss (evosax minimises): the online cross-entropy averaged over the
episode, or over the last step(s) for few-shot tasks. One generation:

1. every rank asks the strategy with the same key, so all hold the same population;
2. episodes are drawn from the suite's meta-training tasks, pair j from task j mod n;
3. each rank evaluates its share of the population (vmap over members);
4. fitness is gathered; non-finite values count as the worst finite value;
5. every rank tells the strategy the same fitness.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vsml_bench.config import TrainConfig
from vsml_bench.errors import UserError
from vsml_bench.evaluation import learner_key
from vsml_bench.learner import Learner, online_metrics, rollout
from vsml_bench.population import map_members
from vsml_bench.task import Episode, Task, sample_episodes

logger = logging.getLogger(__name__)

FITNESS_SHAPING = {
    "none": "identity_fitness_shaping_fn",
    "centered_rank": "centered_rank_fitness_shaping_fn",
    "standardize": "standardize_fitness_shaping_fn",
    "normalize": "normalize_fitness_shaping_fn",
}


def make_strategy(config: TrainConfig, solution: Any) -> tuple[Any, Any]:
    """The evosax strategy and its params for `config.es`, around `solution`."""
    import evosax.algorithms as algorithms
    from evosax.core import fitness_shaping

    es = config.es
    known = algorithms.distribution_based_algorithms
    if es.strategy not in known:
        raise UserError(
            f"es.strategy={es.strategy!r} is not a distribution-based evosax strategy; "
            f"use one of {', '.join(sorted(known))}"
        )
    if es.fitness_shaping not in FITNESS_SHAPING:
        raise UserError(
            f"es.fitness_shaping={es.fitness_shaping!r}; use one of "
            f"{', '.join(FITNESS_SHAPING)}"
        )
    cls = known[es.strategy]
    accepted = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {
        "fitness_shaping_fn": getattr(
            fitness_shaping, FITNESS_SHAPING[es.fitness_shaping]
        )
    }
    if "use_antithetic_sampling" in accepted:
        kwargs["use_antithetic_sampling"] = es.antithetic
    if "optimizer" in accepted:
        kwargs["optimizer"] = optax.adam(es.learning_rate, b1=0.9, b2=0.999)
    if "std_schedule" in accepted:
        kwargs["std_schedule"] = optax.constant_schedule(es.std)

    param_options = {}
    for name, value in es.options.items():
        if name in accepted and name not in ("population_size", "solution"):
            kwargs[name] = value
        else:
            param_options[name] = value
    try:
        strategy = cls(population_size=es.population, solution=solution, **kwargs)
    except (TypeError, AssertionError) as e:
        raise UserError(f"es.strategy={es.strategy!r} rejected its options: {e}") from e

    params = strategy.default_params
    fields = {f.name for f in dataclasses.fields(params)}
    if "std_init" in fields:
        params = params.replace(std_init=jnp.float32(es.std))
    unknown = sorted(set(param_options) - fields)
    if unknown:
        options = sorted(fields | (set(accepted) - {"self", "solution"}))
        raise UserError(
            f"es.options {', '.join(unknown)} unknown to {es.strategy}; its options: "
            f"{', '.join(options)}"
        )
    params = params.replace(**{k: jnp.asarray(v) for k, v in param_options.items()})
    return strategy, params


def loss_steps(tasks: tuple[Task, ...], meta_loss: str) -> int:
    """How many final steps of an episode the meta-loss averages over."""
    if meta_loss == "all":
        return tasks[0].episode_length
    if meta_loss == "last":
        return 1
    return tasks[0].loss_steps


def draw_training_episodes(
    tasks: tuple[Task, ...], datas: tuple[Any, ...], key: jax.Array, count: int
) -> tuple[Episode, jax.Array]:
    """`count` episodes, episode j from task j mod len(tasks); also their keys.

    Returns:
        episodes (`x: [count, T, ...]`, `y: [count, T]`) and keys [count, 2].
    """
    keys = jax.random.split(key, count)
    groups = [np.arange(i, count, len(tasks)) for i in range(len(tasks))]
    parts = [
        sample_episodes(task, keys[idx], data)
        for task, data, idx in zip(tasks, datas, groups)
        if len(idx)
    ]
    order = np.argsort(np.concatenate(groups))
    x = jnp.concatenate([p.x for p in parts])[order]
    y = jnp.concatenate([p.y for p in parts])[order]
    return Episode(x=x, y=y), keys


@functools.partial(jax.jit, static_argnums=(0, 1, 6))
def population_fitness(
    learner: Learner,
    steps: int,
    population: Any,
    episodes: Episode,
    keys: jax.Array,
    episode_ids: jax.Array,
    together: int = 0,
) -> jax.Array:
    """Meta-loss of each member: mean cross-entropy over the last `steps` steps.

    Args:
        population: meta-parameters with a leading member axis [P_share, ...].
        episodes: `x: [E, T, ...]`, `y: [E, T]`.
        keys: episode keys [E, 2].
        episode_ids: int [P_share], the episode of each member.
        together: members run at once (`vsml_bench.population.map_members`).
    Returns:
        float32 [P_share].
    """

    def member(theta, eid):
        x, y = episodes.x[eid], episodes.y[eid]
        logits = rollout(learner, theta, learner_key(keys[eid]), x, y)
        return online_metrics(logits[-steps:], y[-steps:])["loss"].mean()

    return map_members(member, (population, episode_ids), together)


def shard_members(tree: Any) -> Any:
    """Spread the leading (member) axis over this process's devices, where several.

    With one device, or a member count the devices do not divide, the tree is returned
    as it is; otherwise `jit` then partitions the population's evaluation over them.
    """
    devices = jax.local_devices()
    count = jax.tree.leaves(tree)[0].shape[0]
    if len(devices) < 2 or count % len(devices):
        return tree
    mesh = jax.sharding.Mesh(np.array(devices), ("members",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("members"))
    return jax.device_put(tree, sharding)


def sanitise_fitness(fitness: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace non-finite fitness by the worst finite value; count them."""
    fitness = np.asarray(fitness, np.float32)
    bad = ~np.isfinite(fitness)
    if bad.all():
        return np.zeros_like(fitness), int(bad.sum())
    worst = fitness[~bad].max()
    return np.where(bad, worst, fitness), int(bad.sum())


@dataclass
class GenerationTimes:
    """Seconds spent in each part of one generation (for the overhead report)."""

    ask: float = 0.0
    draw: float = 0.0
    evaluate: float = 0.0
    gather: float = 0.0
    tell: float = 0.0

    @property
    def total(self) -> float:
        """Sum of the parts."""
        return self.ask + self.draw + self.evaluate + self.gather + self.tell

    @property
    def overhead(self) -> float:
        """Fraction of the generation not spent running the learners' episodes."""
        return 1.0 - self.evaluate / self.total if self.total else 0.0


class EpisodeTrainer:
    """What trainers that run episodes of the suite's tasks share.

    Args:
        config: the run's config.
        learner: built for the meta-training spec.
        tasks: the meta-training tasks (same spec).
        comm: a `vsml_bench.training.distributed.Communicator`.
        episodes_per_generation: episodes run per generation over all ranks.
    """

    def __init__(
        self,
        config: TrainConfig,
        learner: Learner,
        tasks,
        comm,
        episodes_per_generation,
    ):
        self.config = config
        self.learner = learner
        self.tasks = tuple(tasks)
        self.comm = comm
        self.datas = tuple(task.load() for task in self.tasks)
        self.steps = loss_steps(self.tasks, config.meta_loss)
        self.episodes_per_generation = episodes_per_generation
        self.steps_per_generation = (
            episodes_per_generation * self.tasks[0].episode_length
        )


class ESTrainer(EpisodeTrainer):
    """One ES meta-training run's moving parts (no files, no printing).

    Args:
        config: the run's config.
        learner: built for the suite's meta-training spec.
        tasks: the meta-training tasks (same spec).
        comm: a `vsml_bench.training.distributed.Communicator`.
    """

    def __init__(self, config: TrainConfig, learner: Learner, tasks, comm):
        super().__init__(config, learner, tasks, comm, config.es.population)
        self.population_size = config.es.population
        self.lo, self.hi = comm.share(self.population_size)
        template = learner.init(jax.random.PRNGKey(0))
        self.strategy, self.params = make_strategy(config, template)
        if config.es.antithetic and config.es.strategy == "Open_ES":
            self.num_episodes = self.population_size // 2
        else:
            self.num_episodes = self.population_size
        ids = np.arange(self.population_size) % self.num_episodes
        self.episode_ids = jnp.asarray(ids[self.lo : self.hi])

    def init(self, key: jax.Array, meta_params: Any = None) -> Any:
        """The strategy state centred on `meta_params` (default: the learner's init)."""
        k_init, k_strategy = jax.random.split(key)
        mean = self.learner.init(k_init) if meta_params is None else meta_params
        return self.strategy.init(k_strategy, mean, self.params)

    def mean(self, state: Any) -> Any:
        """The current meta-parameters (the search distribution's mean)."""
        return self.strategy.get_mean(state)

    def generation(
        self, state: Any, key: jax.Array
    ) -> tuple[Any, dict[str, float], GenerationTimes]:
        """Run one generation; return the new state, metrics and timings."""
        times = GenerationTimes()
        k_ask, k_episodes, k_tell = jax.random.split(key, 3)

        start = time.perf_counter()
        population, state = self.strategy.ask(k_ask, state, self.params)
        jax.block_until_ready(population)
        times.ask = time.perf_counter() - start

        start = time.perf_counter()
        episodes, keys = draw_training_episodes(
            self.tasks, self.datas, k_episodes, self.num_episodes
        )
        jax.block_until_ready(episodes)
        times.draw = time.perf_counter() - start

        start = time.perf_counter()
        share = jax.tree.map(lambda a: a[self.lo : self.hi], population)
        share = shard_members(share)
        fitness = population_fitness(
            self.learner,
            self.steps,
            share,
            episodes,
            keys,
            self.episode_ids,
            self.config.es.members_together,
        )
        fitness = np.asarray(fitness)
        times.evaluate = time.perf_counter() - start

        start = time.perf_counter()
        fitness = self.comm.allgather(fitness)
        fitness, non_finite = sanitise_fitness(fitness)
        times.gather = time.perf_counter() - start

        start = time.perf_counter()
        state, _ = self.strategy.tell(
            k_tell, population, jnp.asarray(fitness), state, self.params
        )
        jax.block_until_ready(state)
        times.tell = time.perf_counter() - start

        metrics = {
            "meta_loss": float(fitness.mean()),
            "meta_loss_best": float(fitness.min()),
            "non_finite": non_finite,
            "mean_norm": float(jnp.linalg.norm(state.mean)),
        }
        return state, metrics, times
