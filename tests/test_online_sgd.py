"""Online SGD and Adam against a plain optax loop: predict x_t, then learn from y_t."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vsml_bench.agents.online_sgd import OnlineAdam, OnlineSGD
from vsml_bench.errors import UserError
from vsml_bench.learner import TaskSpec, rollout
from vsml_bench.registry import make_learner

T = 12


def _linear(params, x):
    return x.reshape(-1) @ params["out"]["w"] + params["out"]["b"]


def _mlp(params, x):
    hidden = jnp.tanh(x.reshape(-1) @ params["hidden"]["w"] + params["hidden"]["b"])
    return hidden @ params["out"]["w"] + params["out"]["b"]


def _conv_layer(layer, h, stride=2):
    """3x3 SAME convolution by explicit patches: h [H, W, Cin] -> [H', W', Cout]."""
    height, width, _ = h.shape
    out_h, out_w = -(-height // stride), -(-width // stride)
    # SAME padding as XLA: total padding split with the extra on the bottom/right.
    pad_h = max((out_h - 1) * stride + 3 - height, 0)
    pad_w = max((out_w - 1) * stride + 3 - width, 0)
    h = jnp.pad(
        h, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
    )
    rows = []
    for i in range(out_h):
        row = []
        for j in range(out_w):
            patch = h[i * stride : i * stride + 3, j * stride : j * stride + 3]
            row.append(jnp.einsum("abc,abcd->d", patch, layer["w"]) + layer["b"])
        rows.append(jnp.stack(row))
    return jnp.tanh(jnp.stack(rows))


def _conv(params, x):
    h = _conv_layer(params["conv1"], _conv_layer(params["conv0"], x))
    return h.reshape(-1) @ params["out"]["w"] + params["out"]["b"]


FORWARD = {"linear": _linear, "mlp": _mlp, "conv": _conv}


def _reference_logits(forward, optimizer, params, x, y, num_classes):
    """The textbook online loop: predict x_t, then one optimiser step on (x_t, y_t)."""

    def loss(params, x_t, y_t):
        logp = jax.nn.log_softmax(forward(params, x_t))
        return -jnp.sum(jax.nn.one_hot(y_t, num_classes) * logp)

    @jax.jit
    def predict_then_learn(params, opt_state, x_t, y_t):
        logits = forward(params, x_t)
        grads = jax.grad(loss)(params, x_t, y_t)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return logits, optax.apply_updates(params, updates), opt_state

    opt_state = optimizer.init(params)
    logits = []
    for t in range(len(y)):
        logits_t, params, opt_state = predict_then_learn(params, opt_state, x[t], y[t])
        logits.append(logits_t)
    return np.stack(logits)


def _stream(input_shape, num_classes):
    k_x, k_y = jax.random.split(jax.random.PRNGKey(7))
    x = jax.random.normal(k_x, (T, *input_shape))
    y = jax.random.randint(k_y, (T,), 0, num_classes)
    return x, y


# Large learning rates so that the weights move far and any slip in the order of
# updates shows in the logits. The conv net runs with SGD only: the optimiser code is
# shared by every model.
SGD = (OnlineSGD, optax.sgd, 0.3)
ADAM = (OnlineAdam, optax.adam, 0.05)


@pytest.mark.parametrize(
    ("cls", "optimizer", "lr", "model", "input_shape"),
    [
        (*SGD, "linear", (10,)),
        (*ADAM, "linear", (10,)),
        (*SGD, "mlp", (10,)),
        (*ADAM, "mlp", (10,)),
        (*SGD, "conv", (5, 4, 2)),
    ],
    ids=["sgd-linear", "adam-linear", "sgd-mlp", "adam-mlp", "sgd-conv"],
)
def test_matches_plain_optax_loop(cls, optimizer, lr, model, input_shape):
    spec = TaskSpec(input_shape, 4)
    learner = cls(spec, model=model, learning_rate=lr, hidden_size=7)
    x, y = _stream(input_shape, spec.num_classes)
    key = jax.random.PRNGKey(3)

    logits = jax.jit(rollout, static_argnums=0)(learner, {}, key, x, y)

    params0 = learner.reset(key, {}).params
    forward = FORWARD[model]
    expected = _reference_logits(forward, optimizer(lr), params0, x, y, 4)
    assert logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)

    # The stream really moved the weights: the last prediction differs from what the
    # initial network says about the same input.
    untrained = np.asarray(forward(params0, x[-1]))
    assert np.abs(expected[-1] - untrained).max() > 0.1


def test_first_step_learns_nothing_and_adam_count_starts_at_first_label():
    spec = TaskSpec((5,), 3)
    learner = OnlineAdam(spec)
    state = learner.reset(jax.random.PRNGKey(0), {})
    x = jnp.ones(5)

    after, _ = learner.step({}, state, x, jnp.zeros(3))
    jax.tree.map(np.testing.assert_array_equal, after.params, state.params)
    assert int(after.opt_state[0].count) == 0

    after, _ = learner.step({}, after, x, jax.nn.one_hot(1, 3))
    assert int(after.opt_state[0].count) == 1


def test_reset_key_draws_the_initial_weights():
    learner = OnlineSGD(TaskSpec((5,), 3), model="mlp", hidden_size=4)
    a = learner.reset(jax.random.PRNGKey(0), {}).params
    b = learner.reset(jax.random.PRNGKey(0), {}).params
    c = learner.reset(jax.random.PRNGKey(1), {}).params
    np.testing.assert_array_equal(a["hidden"]["w"], b["hidden"]["w"])
    assert not np.allclose(a["hidden"]["w"], c["hidden"]["w"])
    np.testing.assert_array_equal(a["hidden"]["b"], 0.0)
    # LeCun normal: variance 1/fan_in.
    big = OnlineSGD(TaskSpec((400,), 3), model="mlp").reset(jax.random.PRNGKey(0), {})
    assert np.std(big.params["hidden"]["w"]) == pytest.approx(
        1 / np.sqrt(400), rel=0.05
    )


def test_defaults_follow_the_reference():
    spec = TaskSpec((5,), 3)
    assert OnlineSGD(spec).learning_rate == 0.01
    assert OnlineAdam(spec).learning_rate == 0.001
    assert OnlineSGD(spec).hidden_size == 160
    assert OnlineSGD(spec).init(jax.random.PRNGKey(0)) == {}


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match=r"'conv'.*\(12,\)"):
        make_learner("sgd", TaskSpec((12,), 3), model="conv")
    with pytest.raises(UserError, match="'resnet'"):
        make_learner("adam", TaskSpec((12,), 3), model="resnet")
    with pytest.raises(UserError, match="learning_rate"):
        make_learner("sgd", TaskSpec((12,), 3), learning_rate=-1.0)
