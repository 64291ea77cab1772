"""Gradient-based meta-training: backpropagation through whole episodes.

The alternative to evolution strategies in Kirsch and Schmidhuber (2021): the
meta-loss of a batch of episodes (online cross-entropy, averaged over the episode or
its last steps) is differentiated with respect to theta through every step of the
learner's rollout, and optax's Adam (learning rate 1e-3) applies the gradient after
clipping its global norm to 25. Batches hold 128 episodes by default, drawn as in the
ES trainer (episode j from meta-training task j mod n). One "generation" is one
gradient step.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from vsml_bench.config import TrainConfig
from vsml_bench.evaluation import learner_key
from vsml_bench.learner import Learner, online_metrics, rollout
from vsml_bench.training.es import (
    EpisodeTrainer,
    GenerationTimes,
    draw_training_episodes,
)


@struct.dataclass
class GradientState:
    """Meta-parameters and the optimiser's state."""

    mean: Any
    opt_state: Any


def _batch_loss(learner: Learner, steps: int, theta, x, y, keys):
    def episode(x, y, key):
        logits = rollout(learner, theta, learner_key(key), x, y)
        return online_metrics(logits[-steps:], y[-steps:])["loss"].mean()

    return jnp.mean(jax.vmap(episode)(x, y, keys))


class GradientTrainer(EpisodeTrainer):
    """Backpropagation-through-time meta-training with the `Trainer` interface.

    Args:
        config: the run's config (`config.gradient` holds the optimiser settings).
        learner: built for the meta-training spec.
        tasks: the meta-training tasks.
        comm: a Communicator; data-parallel over ranks (each rank a share of the batch,
            gradients averaged).
    """

    def __init__(self, config: TrainConfig, learner: Learner, tasks, comm):
        super().__init__(config, learner, tasks, comm, config.gradient.batch_size)
        self.num_episodes = config.gradient.batch_size
        self.lo, self.hi = comm.share(self.num_episodes)
        self.optimizer = optax.chain(
            optax.clip_by_global_norm(config.gradient.clip_norm),
            optax.adam(config.gradient.learning_rate),
        )
        self._grad = jax.jit(
            jax.value_and_grad(functools.partial(_batch_loss, learner, self.steps))
        )
        self._apply = jax.jit(self._apply_updates)

    def init(self, key: jax.Array, meta_params: Any = None) -> GradientState:
        """Initial meta-parameters (the learner's, or given) and optimiser state."""
        mean = self.learner.init(key) if meta_params is None else meta_params
        return GradientState(mean=mean, opt_state=self.optimizer.init(mean))

    def mean(self, state: GradientState) -> Any:
        """The current meta-parameters."""
        return state.mean

    def _apply_updates(self, state: GradientState, grads) -> GradientState:
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.mean)
        return GradientState(optax.apply_updates(state.mean, updates), opt_state)

    def generation(self, state: GradientState, key: jax.Array):
        """One gradient step on a fresh batch of episodes."""
        times = GenerationTimes()
        start = time.perf_counter()
        episodes, keys = draw_training_episodes(
            self.tasks, self.datas, key, self.num_episodes
        )
        jax.block_until_ready(episodes)
        times.draw = time.perf_counter() - start

        start = time.perf_counter()
        sl = slice(self.lo, self.hi)
        loss, grads = self._grad(state.mean, episodes.x[sl], episodes.y[sl], keys[sl])
        jax.block_until_ready(grads)
        times.evaluate = time.perf_counter() - start

        start = time.perf_counter()
        flat, unravel = jax.flatten_util.ravel_pytree(grads)
        flat = self.comm.allgather(np.asarray(flat)[None]).mean(axis=0)
        loss = float(self.comm.allgather(np.asarray([loss], np.float32)).mean())
        grads = unravel(jnp.asarray(flat))
        times.gather = time.perf_counter() - start

        start = time.perf_counter()
        non_finite = int(not np.all(np.isfinite(flat)))
        if not non_finite:
            state = self._apply(state, grads)
            jax.block_until_ready(state)
        times.tell = time.perf_counter() - start
        metrics = {
            "meta_loss": loss,
            "non_finite": non_finite,
            "grad_norm": float(np.linalg.norm(flat)),
        }
        return state, metrics, times
