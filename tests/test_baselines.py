"""The meta-learned baselines: Meta RNN, fast weight memory, Hebbian, FWP.

Each learner is compared step by step with a plain numpy (float64) re-implementation
written from the equations in its docstring, on tiny shapes, with its own initial
meta-parameters and with randomly perturbed ones (so that zero biases and unit scales
cannot hide a swapped term).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml_bench.agents.fw_memory import FastWeightMemory
from vsml_bench.agents.fwp import FastWeightProgrammer
from vsml_bench.agents.hebbian import Hebbian
from vsml_bench.agents.meta_rnn import MetaRNN
from vsml_bench.errors import UserError
from vsml_bench.learner import TaskSpec, rollout
from vsml_bench.registry import make_learner

TINY = TaskSpec(input_shape=(2, 3), num_classes=3)
STEPS = 4

# One jitted rollout for all tests: learners are static, so each learner compiles once
# for the episode shape [STEPS, ...] and every test with that shape reuses it.
run = jax.jit(rollout, static_argnums=0)
init = jax.jit(lambda learner, key: learner.init(key), static_argnums=0)


TINY_LEARNERS = {
    "meta_rnn": MetaRNN(TINY, hidden_size=5, micro_ticks=2),
    "fw_memory": FastWeightMemory(TINY, hidden_size=4, key_size=3, value_size=2),
    "hebbian": Hebbian(TINY),
    "fwp_previous": FastWeightProgrammer(TINY, key_size=4, value_size=3),
    "fwp_current": FastWeightProgrammer(
        TINY, key_size=4, value_size=3, write_key="current"
    ),
}


def _episode(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(STEPS, *TINY.input_shape)).astype(np.float32)
    y = rng.integers(0, TINY.num_classes, size=STEPS)
    return x, y


@functools.cache
def _params(name: str, variant: str, seed: int = 11):
    """The initial meta-parameters of TINY_LEARNERS[name], or those plus noise.

    Perturbing theta with Gaussian noise is also how an evolution strategy forms its
    population, so the perturbed variants double as population members.
    """
    params = init(TINY_LEARNERS[name], jax.random.PRNGKey(7))
    if variant == "initial":
        return params
    scale = {"perturbed": 0.5, "large": 3.0}[variant]
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda leaf: np.float32(leaf + scale * rng.normal(size=leaf.shape)), params
    )


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


# --- plain numpy references -----------------------------------------------------------


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z):
    z = np.exp(z - z.max())
    return z / z.sum()


def clip(o):
    return 100.0 * np.tanh(o / 100.0)


def feedback(t, x, y, logits_prev, num_classes):
    """[x_t, e_{t-1}, y_{t-1}] with zeros at t = 0."""
    if t == 0:
        e = np.zeros(num_classes)
        label = np.zeros(num_classes)
    else:
        label = np.eye(num_classes)[y[t - 1]]
        e = softmax(logits_prev) - label
    return np.concatenate([x[t].ravel(), e, label]), e, label


def lstm(w, b, u, h, c):
    """Standard LSTM, gate columns (i, g, f, o), forget-gate offset +1."""
    hidden = h.shape[0]
    z = np.concatenate([u, h]) @ w + b
    i = sigmoid(z[:hidden])
    g = np.tanh(z[hidden : 2 * hidden])
    f = sigmoid(z[2 * hidden : 3 * hidden] + 1.0)
    o = sigmoid(z[3 * hidden :])
    c = f * c + i * g
    return o * np.tanh(c), c


def ref_meta_rnn(learner, p, x, y):
    hidden, num_classes = learner.hidden_size, TINY.num_classes
    h, c, logits = np.zeros(hidden), np.zeros(hidden), np.zeros(num_classes)
    out = []
    for t in range(len(x)):
        u, _, _ = feedback(t, x, y, logits, num_classes)
        for _ in range(learner.micro_ticks):
            h, c = lstm(p["lstm"]["w"], p["lstm"]["b"], u, h, c)
        logits = clip(h @ p["readout"]["w"] + p["readout"]["b"])
        out.append(logits)
    return np.stack(out)


def ref_fw_memory(learner, p, x, y, rescaled=None):
    """`rescaled`, if a list, receives whether each write hit the norm bound."""
    hidden, num_classes = learner.hidden_size, TINY.num_classes
    d, v_size = learner.key_size, learner.value_size
    h, c, logits = np.zeros(hidden), np.zeros(hidden), np.zeros(num_classes)
    memory = np.zeros((v_size, d, d))  # memory[v, i, j]: value v for key k1_i k2_j
    out = []
    for t in range(len(x)):
        u, _, _ = feedback(t, x, y, logits, num_classes)
        h, c = lstm(p["lstm"]["w"], p["lstm"]["b"], u, h, c)

        z = h @ p["write"]["w"] + p["write"]["b"]
        k1, k2, v = np.tanh(z[:d]), np.tanh(z[d : 2 * d]), np.tanh(z[2 * d : -1])
        beta = sigmoid(z[-1])
        old = np.einsum("vij,i,j->v", memory, k1, k2)
        memory = memory + beta * np.einsum("v,i,j->vij", v - old, k1, k2)
        norm = np.sqrt(np.sum(memory**2))
        if norm > 1.0:
            memory = memory / norm
        if rescaled is not None:
            rescaled.append(norm > 1.0)

        q = np.tanh(h @ p["query"]["w"] + p["query"]["b"])
        r = np.einsum("vij,i,j->v", memory, q[:d], q[d:])
        r = (r - r.mean()) / np.sqrt(r.var() + 1e-5)
        r = r * p["norm"]["scale"] + p["norm"]["offset"]

        logits = clip((h + r @ p["proj"]["w"]) @ p["readout"]["w"] + p["readout"]["b"])
        out.append(logits)
    return np.stack(out)


def ref_hebbian(learner, p, x, y):
    num_inputs, num_classes = TINY.input_size, TINY.num_classes
    trace = np.zeros((num_inputs, num_classes))
    rate = sigmoid(p["rate_logit"])
    logits = np.zeros(num_classes)
    out = []
    for t in range(len(x)):
        if t > 0:
            _, e, label = feedback(t, x, y, logits, num_classes)
            pre = x[t - 1].ravel()
            weights = p["w"] + p["plasticity"] * trace
            post = pre @ weights + p["b"] + np.concatenate([e, label]) @ p["feedback"]
            new = trace.copy()
            for a in range(num_inputs):
                for j in range(num_classes):
                    new[a, j] += rate * post[j] * (pre[a] - post[j] * trace[a, j])
            trace = new
        weights = p["w"] + p["plasticity"] * trace
        logits = clip(x[t].ravel() @ weights + p["b"])
        out.append(logits)
    return np.stack(out)


def ref_fwp(learner, p, x, y):
    d, v_size, num_classes = learner.key_size, learner.value_size, TINY.num_classes

    def phi(z):
        z = np.where(z > 0, z + 1.0, np.exp(z))
        return z / z.sum()

    fast = np.zeros((v_size, d))
    prev_key = np.zeros(d)
    logits = np.zeros(num_classes)
    out = []
    for t in range(len(x)):
        u, _, _ = feedback(t, x, y, logits, num_classes)
        z = u @ p["slow"]["w"] + p["slow"]["b"]
        key, value, query = z[:d], z[d : d + v_size], z[d + v_size : 2 * d + v_size]
        beta = sigmoid(z[-1])
        key = phi(key)
        written = prev_key if learner.write_key == "previous" else key
        fast = fast + beta * np.outer(value - fast @ written, written)
        prev_key = key
        logits = clip((fast @ phi(query)) @ p["readout"]["w"] + p["readout"]["b"])
        out.append(logits)
    return np.stack(out)


REFERENCES = {
    "meta_rnn": ref_meta_rnn,
    "fw_memory": ref_fw_memory,
    "hebbian": ref_hebbian,
    "fwp_previous": ref_fwp,
    "fwp_current": ref_fwp,
}


@pytest.mark.parametrize("variant", ["initial", "perturbed", "large"])
@pytest.mark.parametrize("name", list(TINY_LEARNERS))
def test_rollout_matches_numpy_reference(name, variant):
    learner = TINY_LEARNERS[name]
    params = _params(name, variant)
    x, y = _episode(seed=3)

    logits = run(learner, params, jax.random.PRNGKey(0), jnp.asarray(x), jnp.asarray(y))
    expected = REFERENCES[name](learner, _np(params), x.astype(np.float64), y)

    assert logits.shape == (STEPS, TINY.num_classes)
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=2e-4, atol=2e-5)


def test_fw_memory_comparison_exercises_the_norm_bound():
    """The "large" variant must hit the memory's norm bound, "initial" must not."""
    learner = TINY_LEARNERS["fw_memory"]
    x, y = _episode(seed=3)
    for variant, expect_rescale in (("initial", False), ("large", True)):
        rescaled = []
        params = _np(_params("fw_memory", variant))
        ref_fw_memory(learner, params, x.astype(np.float64), y, rescaled)
        assert any(rescaled) == expect_rescale, variant


def test_fw_memory_gradients_stay_finite_when_the_memory_is_zero():
    """A zero value leaves F = 0 after the write; the norm bound must not give NaN."""
    learner = TINY_LEARNERS["fw_memory"]
    params = _params("fw_memory", "perturbed")
    d, v_size = learner.key_size, learner.value_size
    values = slice(2 * d, 2 * d + v_size)
    write = dict(params["write"])
    write["w"] = write["w"].copy()
    write["w"][:, values] = 0.0
    write["b"] = write["b"].copy()
    write["b"][values] = 0.0
    params = {**params, "write": write}
    x, y = _episode(seed=3)

    def loss(params):
        logits = rollout(learner, params, jax.random.PRNGKey(0), x, y)
        return jnp.mean(jax.nn.logsumexp(logits, axis=-1))

    grads = jax.jit(jax.grad(loss))(params)
    for leaf in jax.tree.leaves(grads):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert np.any(np.asarray(grads["write"]["w"]) != 0)


# --- meta-parameter counts ------------------------------------------------------------


def lstm_count(inputs: int, hidden: int) -> int:
    return 4 * hidden * (inputs + hidden) + 4 * hidden


def dense_count(inputs: int, outputs: int) -> int:
    return inputs * outputs + outputs


@pytest.mark.parametrize("input_shape", [(28, 28, 1), (49,)])
def test_meta_parameter_counts_follow_the_sizes(input_shape):
    spec = TaskSpec(input_shape=input_shape, num_classes=10)
    a, c = math.prod(input_shape), 10
    inputs = a + 2 * c  # [x, e, y]

    meta_rnn = lstm_count(inputs, 128) + dense_count(128, c)
    fw_memory = (
        lstm_count(inputs, 32)
        + dense_count(32, 2 * 16 + 16 + 1)  # k1, k2, v, beta
        + dense_count(32, 2 * 16)  # q1, q2
        + 2 * 16  # layer-norm scale and offset
        + 16 * 32  # read projection into the LSTM output
        + dense_count(32, c)
    )
    hebbian = 2 * a * c + c + 2 * c * c + 1  # W, C, b, U, rate
    fwp = dense_count(inputs, 2 * 64 + 32 + 1) + dense_count(32, c)

    expected = {
        "meta_rnn": meta_rnn,
        "fw_memory": fw_memory,
        "hebbian": hebbian,
        "fwp": fwp,
    }
    for name, count in expected.items():
        assert make_learner(name, spec).num_meta_params() == count, name

    fw_memory_state = jax.eval_shape(
        make_learner("fw_memory", spec).reset, jax.random.PRNGKey(0), {}
    )
    assert fw_memory_state.memory.shape == (16, 256)


def test_hebbian_rate_logit_starts_at_minus_4_5():
    params = init(TINY_LEARNERS["hebbian"], jax.random.PRNGKey(0))
    assert float(params["rate_logit"]) == -4.5


# --- the online protocol --------------------------------------------------------------


@pytest.mark.parametrize("name", list(TINY_LEARNERS))
def test_no_peeking_and_reads_the_previous_label(name):
    learner = TINY_LEARNERS[name]
    params = _params(name, "perturbed")
    x, y = _episode(seed=5)
    t = 1
    y_changed = y.copy()
    y_changed[t] = (y[t] + 1) % TINY.num_classes

    key = jax.random.PRNGKey(0)
    a = np.asarray(run(learner, params, key, jnp.asarray(x), jnp.asarray(y)))
    b = np.asarray(run(learner, params, key, jnp.asarray(x), jnp.asarray(y_changed)))

    np.testing.assert_array_equal(a[: t + 1], b[: t + 1])  # y_t unseen up to step t
    assert np.max(np.abs(a[t + 1] - b[t + 1])) > 1e-4  # y_t read at step t + 1


@pytest.mark.parametrize("name", list(TINY_LEARNERS))
def test_population_under_jit_vmap_scan_matches_single_runs(name):
    learner = TINY_LEARNERS[name]
    members = [_params(name, "perturbed", seed) for seed in (1, 2, 3)]
    population = jax.tree.map(lambda *leaves: np.stack(leaves), *members)
    x, y = _episode(seed=9)
    x, y = jnp.asarray(x), jnp.asarray(y)
    key = jax.random.PRNGKey(2)

    batched = jax.jit(jax.vmap(lambda p: rollout(learner, p, key, x, y)))(population)

    assert batched.shape == (3, STEPS, TINY.num_classes)
    assert np.all(np.isfinite(np.asarray(batched)))
    for i, member in enumerate(members):
        single = run(learner, member, key, x, y)
        np.testing.assert_allclose(batched[i], single, rtol=1e-5, atol=1e-6)
    assert not np.allclose(batched[0], batched[1])


# --- learning with hand-set meta-parameters -------------------------------------------


def _one_hot_stream(steps: int, seed: int) -> tuple[jax.Array, jax.Array]:
    """Inputs e_y: three orthogonal inputs, each always with its own label."""
    y = np.random.default_rng(seed).integers(0, 3, size=steps)
    return jnp.asarray(np.eye(3)[y], jnp.float32), jnp.asarray(y)


def _accuracy_after_first_sightings(logits, y) -> float:
    y = np.asarray(y)
    seen_all = max(int(np.argmax(y == k)) for k in range(3)) + 1
    correct = np.argmax(np.asarray(logits), axis=-1) == y
    return float(correct[seen_all:].mean())


def test_hebbian_with_a_teaching_signal_learns_an_association():
    """W = 0, C = 1, U feeds y_{t-1} into the second pass: Oja then stores x -> y."""
    spec = TaskSpec(input_shape=(3,), num_classes=3)
    learner = Hebbian(spec)
    params = {
        "w": jnp.zeros((3, 3)),
        "plasticity": jnp.ones((3, 3)),
        "b": jnp.zeros(3),
        "feedback": jnp.concatenate([jnp.zeros((3, 3)), jnp.eye(3)]),
        "rate_logit": jnp.asarray(-2.0),
    }
    x, y = _one_hot_stream(40, seed=0)
    logits = run(learner, params, jax.random.PRNGKey(0), x, y)
    assert _accuracy_after_first_sightings(logits, y) == 1.0


def test_fwp_previous_key_pairs_each_input_with_its_own_label():
    """Key = query = 5 x, value = y_{t-1}, beta ~ 1: an associative memory of x -> y.

    With write_key "previous" it is perfect once every input has been seen; with
    "current" it stores x_t -> y_{t-1} and does no better than chance.
    """
    spec = TaskSpec(input_shape=(3,), num_classes=3)
    w = np.zeros((3 + 6, 2 * 3 + 3 + 1))
    w[0:3, 0:3] = 5 * np.eye(3)  # key from x
    w[6:9, 3:6] = np.eye(3)  # value from the previous label
    w[0:3, 6:9] = 5 * np.eye(3)  # query from x
    b = np.zeros(10)
    b[-1] = 10.0  # beta = sigmoid(10)
    params = {
        "slow": {"w": jnp.asarray(w, jnp.float32), "b": jnp.asarray(b, jnp.float32)},
        "readout": {"w": 10 * jnp.eye(3), "b": jnp.zeros(3)},
    }
    x, y = _one_hot_stream(60, seed=1)

    accuracy = {}
    for write_key in ("previous", "current"):
        learner = FastWeightProgrammer(
            spec, key_size=3, value_size=3, write_key=write_key
        )
        logits = run(learner, params, jax.random.PRNGKey(0), x, y)
        accuracy[write_key] = _accuracy_after_first_sightings(logits, y)

    assert accuracy["previous"] == 1.0
    assert accuracy["current"] < 0.6


# --- options --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("meta_rnn", {"hidden_size": 0}),
        ("meta_rnn", {"micro_ticks": "2"}),
        ("fw_memory", {"key_size": -1}),
        ("fwp", {"write_key": "next"}),
        ("hebbian", {"initial_rate_logit": "low"}),
        ("hebbian", {"rate": 0.1}),
    ],
)
def test_bad_options_raise_user_error(name, options):
    with pytest.raises(UserError):
        make_learner(name, TINY, **options)


def test_options_from_a_command_line_are_typed():
    learner = make_learner("fwp", TINY, key_size=8, write_key="current")
    assert learner.options() == {
        "key_size": 8,
        "value_size": 32,
        "write_key": "current",
    }
    assert (
        make_learner("hebbian", TINY, initial_rate_logit=-3).initial_rate_logit == -3.0
    )
