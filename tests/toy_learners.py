"""Small learners the tests plug in by `module:attribute` (tests/ is on sys.path)."""

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from vsml_bench.learner import Learner, prev_error


@dataclass(frozen=True)
class DeltaRule(Learner):
    """A linear classifier trained online by the delta rule with a meta-learned rate.

    Meta-parameters: the log learning rate and an initial weight matrix.
    """

    description = "linear delta rule with a meta-learned rate (tests only)"

    def init(self, key):
        w = 0.01 * jax.random.normal(key, (self.spec.input_size, self.spec.num_classes))
        return {"log_lr": jnp.float32(-3.0), "w0": w}

    def reset(self, key, meta_params):
        return {
            "w": meta_params["w0"],
            "x": jnp.zeros(self.spec.input_size),
            "logits": jnp.zeros(self.spec.num_classes),
        }

    def step(self, meta_params, state, x, prev_label):
        x = x.reshape(-1)
        error = prev_error(state["logits"], prev_label)
        lr = jnp.exp(meta_params["log_lr"])
        w = state["w"] - lr * jnp.outer(state["x"], error)
        logits = x @ w
        return {"w": w, "x": x, "logits": logits}, logits


@dataclass(frozen=True)
class Exploding(DeltaRule):
    """DeltaRule whose logits are NaN for members with a positive log rate."""

    def step(self, meta_params, state, x, prev_label):
        state, logits = super().step(meta_params, state, x, prev_label)
        logits = jnp.where(meta_params["log_lr"] > -3.0, jnp.nan, logits)
        return state, logits
