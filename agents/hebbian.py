"""Hebbian fast weights: one plastic linear layer updated with Oja's rule.

[1] E. Oja (1982), "Simplified neuron model as a principal component analyzer", J. Math.
    Biology 15. https://doi.org/10.1007/BF00275687
[2] T. Miconi, J. Clune, K. O. Stanley (2018), "Differentiable plasticity: training
    plastic neural networks with backpropagation", ICML (the form W + C * F).
    https://arxiv.org/abs/1804.02464
[3] L. Kirsch, J. Schmidhuber (2021), "Meta Learning Backpropagation And Improving It",
    the baseline configuration. https://arxiv.org/abs/2012.14905
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from vsml_bench.learner import Learner, PyTree, prev_error, soft_clip


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class HebbianState:
    """Episode state of the Hebbian learner.

    Attributes:
        trace: F, the Hebbian fast weights, [A, C].
        prev_x: x_{t-1} (flattened), kept until its feedback arrives; [A].
        prev_logits: o_{t-1}; [C].
    """

    trace: jax.Array
    prev_x: jax.Array
    prev_logits: jax.Array


@dataclass(frozen=True)
class Hebbian(Learner):
    """A linear layer with Hebbian fast weights: o = x (W + C * F) + b.

    Step t first learns from example t-1, whose feedback has just arrived, then
    predicts x_t:

        e = softmax(o_{t-1}) - y_{t-1}
        z = x_{t-1} (W + C * F) + b + [e, y_{t-1}] U    second pass, post-synaptic
        F_aj <- F_aj + eta z_j (x_{t-1,a} - z_j F_aj)   Oja's rule, every a and j
        o_t = 100 tanh((x_t (W + C * F) + b) / 100)

    with eta = sigmoid(rate_logit). At t = 0 there is no feedback and F stays 0.

    Choices where the spec is silent, and why:
    - Pre- and post-synaptic activity belong to the same example: the second pass
      re-reads x_{t-1} together with its own feedback (e_{t-1}, y_{t-1}), as a Hebbian
      learner with a teacher would; pairing x_t with the previous label would
      associate unrelated examples.
    - The second pass is the same layer extended by non-plastic meta-learnt rows U for
      [e, y], so the feedback acts as a teaching input on the post-synaptic units.
    - The neuron is linear, as in Oja's rule; eta is one scalar for the whole layer.
    - C starts at 1 (the trace acts at full strength, W + F); W and U are truncated
      normal with std 1/sqrt(fan_in) (A for W, 2C for U); b is zero.
    - The logits are soft-clipped like VSML's.

    Meta-parameters: "w" [A, C], "plasticity" C [A, C], "b" [C], "feedback" U [2C, C],
    "rate_logit" [] (starts at `initial_rate_logit`). F starts at 0 in every episode
    (the reset key is unused).

    Attributes:
        initial_rate_logit: the initial value of rate_logit (-4.5: eta = 0.011).
    """

    name = "hebbian"
    description = "plastic linear layer, Oja's rule on a feedback pass (Hebbian)"

    initial_rate_logit: float = -4.5

    def init(self, key: jax.Array) -> PyTree:
        """Slow weights, plasticity, feedback rows and the rate's logit."""
        k_w, k_u = jax.random.split(key)
        inputs, classes = self.spec.input_size, self.spec.num_classes
        lecun = jax.nn.initializers.lecun_normal()
        return {
            "w": lecun(k_w, (inputs, classes), jnp.float32),
            "plasticity": jnp.ones((inputs, classes), jnp.float32),
            "b": jnp.zeros((classes,), jnp.float32),
            "feedback": lecun(k_u, (2 * classes, classes), jnp.float32),
            "rate_logit": jnp.asarray(self.initial_rate_logit, jnp.float32),
        }

    def reset(self, key: jax.Array, meta_params: PyTree) -> HebbianState:
        """F = 0, no previous example."""
        inputs, classes = self.spec.input_size, self.spec.num_classes
        return HebbianState(
            trace=jnp.zeros((inputs, classes), jnp.float32),
            prev_x=jnp.zeros((inputs,), jnp.float32),
            prev_logits=jnp.zeros((classes,), jnp.float32),
        )

    def step(
        self,
        meta_params: PyTree,
        state: HebbianState,
        x: jax.Array,
        prev_label: jax.Array,
    ) -> tuple[HebbianState, jax.Array]:
        """Oja update from (x_{t-1}, e_{t-1}, y_{t-1}), then predict x_t."""
        p = meta_params
        error = prev_error(state.prev_logits, prev_label)
        weights = p["w"] + p["plasticity"] * state.trace
        feedback = jnp.concatenate([error, prev_label])
        post = state.prev_x @ weights + p["b"] + feedback @ p["feedback"]

        rate = jax.nn.sigmoid(p["rate_logit"])
        hebb = jnp.outer(state.prev_x, post) - state.trace * jnp.square(post)
        has_label = jnp.sum(prev_label) > 0
        trace = jnp.where(has_label, state.trace + rate * hebb, state.trace)

        x = jnp.ravel(x).astype(jnp.float32)
        weights = p["w"] + p["plasticity"] * trace
        logits = soft_clip(x @ weights + p["b"])
        return HebbianState(trace=trace, prev_x=x, prev_logits=logits), logits
