"""VSML against a direct per-connection reference written here in plain numpy.

The reference follows docs/vsml.md literally: one LSTM per connection fed the full
[m_fwd_a, m_bwd_b, h_ab] (no split of the gate pre-activation), the message heads
applied per connection before the means, convolutions as loops over positions and
kernel entries, and the backward pass run right after the forward sweep with y_t.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml_bench.errors import UserError
from vsml_bench.learner import TaskSpec, rollout, shifted_labels
from vsml_bench.registry import make_learner

jit_rollout = jax.jit(rollout, static_argnums=0)


# The reference ---------------------------------------------------------------------


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def ref_lstm(theta, u, h, c):
    """One LSTM update of one connection: u [2M], h, c [N]."""
    N = h.shape[0]
    z = np.concatenate([u, h]) @ theta["kernel"] + theta["bias"]
    i = sigmoid(z[:N] - 5.0)
    g = np.tanh(z[N : 2 * N])
    f = sigmoid(z[2 * N : 3 * N] + 5.0)
    o = sigmoid(z[3 * N :])
    c = f * c + i * g
    return o * np.tanh(c), c


def ref_connection(theta, m_fwd, m_bwd, h, c, ticks):
    """K ticks of one connection, then its two messages."""
    u = np.concatenate([m_fwd, m_bwd])
    for _ in range(ticks):
        h, c = ref_lstm(theta, u, h, c)
    return (
        h,
        c,
        h @ theta["fwd_w"] + theta["fwd_b"],
        h @ theta["bwd_w"] + theta["bwd_b"],
    )


def ref_dense(theta, h, c, fwd, bwd, ticks):
    """h, c [A, B, N]; fwd [A, M]; bwd [B, M]."""
    A, B, _ = h.shape
    M = fwd.shape[1]
    h, c = h.copy(), c.copy()
    fwd_out, bwd_out = np.zeros((B, M)), np.zeros((A, M))
    for a in range(A):
        for b in range(B):
            h[a, b], c[a, b], f, g = ref_connection(
                theta, fwd[a], bwd[b], h[a, b], c[a, b], ticks
            )
            fwd_out[b] += f / A
            bwd_out[a] += g / B
    return h, c, fwd_out, bwd_out


def ref_conv(theta, h, c, fwd, bwd, ticks, stride, pad):
    """h, c [k, k, C_in, C_out, N]; fwd [H, W, C_in, M]; bwd [H', W', C_out, M]."""
    k, _, C_in, C_out, _ = h.shape
    H, W, _, M = fwd.shape
    H_out, W_out = bwd.shape[:2]
    new_h, new_c = np.zeros_like(h), np.zeros_like(c)
    fwd_out = np.zeros((H_out, W_out, C_out, M))
    bwd_sum, bwd_count = np.zeros((H, W, C_in, M)), np.zeros((H, W))
    for p in range(H_out):
        for q in range(W_out):
            for di in range(k):
                for dj in range(k):
                    row, col = p * stride + di - pad[0], q * stride + dj - pad[1]
                    inside = 0 <= row < H and 0 <= col < W
                    for ci in range(C_in):
                        m_fwd = fwd[row, col, ci] if inside else np.zeros(M)
                        for co in range(C_out):
                            hh, cc, f, g = ref_connection(
                                theta, m_fwd, bwd[p, q, co], h[di, dj, ci, co],
                                c[di, dj, ci, co], ticks,
                            )  # fmt: skip
                            new_h[di, dj, ci, co] += hh / (H_out * W_out)
                            new_c[di, dj, ci, co] += cc / (H_out * W_out)
                            fwd_out[p, q, co] += f / (k * k * C_in)
                            if inside:
                                bwd_sum[row, col, ci] += g
                                bwd_count[row, col] += 1.0 / C_in
    bwd_out = bwd_sum / np.maximum(bwd_count, 1.0)[:, :, None, None]
    return new_h, new_c, fwd_out, bwd_out


def ref_episode(learner, theta, state, x, y):
    """Logits [T, C] and the states after each step's forward sweep (numpy)."""
    opts = learner.options()
    theta = {k: np.asarray(v, np.float64) for k, v in theta.items()}
    layers = learner.layers()
    ticks, M = opts["micro_ticks"], opts["message_size"]
    C = learner.spec.num_classes
    h = [np.asarray(a, np.float64) for a in state.h]
    c = [np.asarray(a, np.float64) for a in state.c]
    from_above = [np.zeros((*layer.out_shape, M)) for layer in layers]
    received = [None] * len(layers)
    feedback = np.zeros((C, M))
    all_logits, states = [], []

    def run(i, fwd, bwd):
        layer = layers[i]
        params = theta
        if opts["lstm_per_layer"]:
            params = {k: v[i] for k, v in theta.items()}
        if layer.kind == "dense":
            out = ref_dense(params, h[i], c[i], fwd.reshape(-1, M), bwd, ticks)
        else:
            args = (params, h[i], c[i], fwd, bwd, ticks, layer.stride, layer.pad)
            out = ref_conv(*args)
        h[i], c[i] = out[0], out[1]
        if i > 0:
            from_above[i - 1] = out[3].reshape(from_above[i - 1].shape)
        return out[2]

    for t in range(len(y)):
        fwd = np.zeros((*layers[0].in_shape, M))
        fwd[..., 0] = np.asarray(x[t]).reshape(layers[0].in_shape)
        for i in range(len(layers)):
            received[i] = fwd
            last = i == len(layers) - 1
            fwd = run(i, fwd, feedback if last else from_above[i])
            if not last:
                fwd = fwd.reshape(*layers[i + 1].in_shape, M)
        logits = 100.0 * np.tanh(fwd[:, 1] / 100.0)
        all_logits.append(logits)
        states.append(([a.copy() for a in h], [a.copy() for a in c]))

        onehot = np.eye(C)[y[t]]
        error = np.exp(logits) / np.exp(logits).sum() - onehot
        feedback = np.zeros((C, M))
        feedback[:, 0] = error
        if opts["label_input"]:
            feedback[:, 1] = onehot
        if opts["backward_pass"]:
            for i in reversed(range(len(layers))):
                last = i == len(layers) - 1
                run(i, received[i], feedback if last else from_above[i])
            feedback = np.zeros((C, M))
    return np.stack(all_logits), states


def lively_theta(learner, seed):
    """Known parameters large enough that every gate moves (not near the offsets)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(learner.init, jax.random.PRNGKey(0))
    theta = {k: 0.5 * rng.standard_normal(v.shape) for k, v in shapes.items()}
    N = learner.state_size
    theta["bias"][..., :N] += 5.0  # cancels the input-gate offset
    return {k: jnp.asarray(v, jnp.float32) for k, v in theta.items()}


def lively_state(learner, seed):
    """A start state with random h and c (random numbers from numpy: JAX's random
    kernels are slow to compile); `reset` itself is tested in test_initial_state."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(learner.reset, jax.random.PRNGKey(0), {})
    state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def draw(arrays):
        return tuple(
            jnp.asarray(0.5 * rng.standard_normal(a.shape), jnp.float32) for a in arrays
        )

    return dataclasses.replace(state, h=draw(state.h), c=draw(state.c))


def run_learner(learner, theta, state, x, y):
    """Logits [T, C] and the state after each step, stepping in a Python loop."""
    step = jax.jit(learner.step)
    prev = shifted_labels(jnp.asarray(y), learner.spec.num_classes)
    logits, states = [], []
    for t in range(len(y)):
        state, o = step(theta, state, x[t], prev[t])
        logits.append(o)
        states.append(state)
    return np.stack(logits), states


def episode(spec, T, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, *spec.input_shape)).astype(np.float32)
    return x, rng.integers(0, spec.num_classes, T)


# Tests -----------------------------------------------------------------------------

DENSE_CASES = {
    "one-layer": (TaskSpec((3,), 2), {}),
    "one-layer-K1-label": (TaskSpec((3,), 2), {"micro_ticks": 1, "label_input": True}),
    "one-layer-K3-N5-M3": (
        TaskSpec((3,), 2),
        {"micro_ticks": 3, "state_size": 5, "message_size": 3},
    ),
    "two-layers-backward-label": (
        TaskSpec((3,), 2),
        {"hidden": (4,), "backward_pass": True, "label_input": True},
    ),
    "two-layers": (TaskSpec((3,), 2), {"hidden": (4,)}),
    "three-layers-lstm-per-layer": (
        TaskSpec((3,), 2),
        {"hidden": (4, 3), "lstm_per_layer": True, "backward_pass": True},
    ),
}


@pytest.mark.parametrize("case", list(DENSE_CASES))
def test_dense_network_matches_the_per_connection_reference(case):
    spec, options = DENSE_CASES[case]
    learner = make_learner("vsml", spec, **options)
    theta = lively_theta(learner, seed=1)
    state = lively_state(learner, seed=2)
    x, y = episode(spec, T=3, seed=3)

    logits, states = run_learner(learner, theta, state, x, y)
    ref_logits, ref_states = ref_episode(learner, theta, state, x, y)

    # Logits depend on everything upstream; states are compared too since the
    # logits read only one channel of the last layer.
    np.testing.assert_allclose(logits, ref_logits, rtol=2e-5, atol=1e-5)
    for state, (ref_h, ref_c) in zip(states, ref_states):
        for got, want in zip(state.h + state.c, ref_h + ref_c):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    # The parameters are lively enough for the feedback to matter.
    assert np.abs(np.diff(ref_logits, axis=0)).max() > 1e-2


def test_conv_network_matches_the_per_connection_reference():
    # 5 x 4 input, kernel 3, stride 2: SAME gives 3 x 2 outputs, padding 1 before
    # the rows and none before the columns; a different count per input position.
    spec = TaskSpec((5, 4, 2), 3)
    learner = make_learner("vsml", spec, conv=((2, 3, 2),), backward_pass=True)
    conv_layer = learner.layers()[0]
    assert conv_layer.out_shape == (3, 2, 2)
    assert conv_layer.pad == (1, 0)
    theta = lively_theta(learner, seed=4)
    state = lively_state(learner, seed=5)
    x, y = episode(spec, T=2, seed=6)

    logits, states = run_learner(learner, theta, state, x, y)
    ref_logits, ref_states = ref_episode(learner, theta, state, x, y)

    np.testing.assert_allclose(logits, ref_logits, rtol=2e-5, atol=1e-5)
    for got, want in zip(
        states[-1].h + states[-1].c, ref_states[-1][0] + ref_states[-1][1]
    ):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)


def test_conv_1x1_on_a_single_pixel_is_the_dense_layer():
    # A 1x1 convolution on a 1x1 image connects every input channel to every output
    # channel once: the same computation as a dense layer C_in -> C_out.
    dense = make_learner("vsml", TaskSpec((5,), 3), hidden=(4,), backward_pass=True)
    conv = make_learner(
        "vsml", TaskSpec((1, 1, 5), 3), conv=((4, 1, 1),), backward_pass=True
    )
    theta = lively_theta(dense, seed=7)
    x, y = episode(dense.spec, T=4, seed=8)

    state = lively_state(dense, seed=9)
    conv_state = dataclasses.replace(
        lively_state(conv, seed=9),
        h=(state.h[0].reshape(1, 1, 5, 4, -1), state.h[1]),
        c=(state.c[0].reshape(1, 1, 5, 4, -1), state.c[1]),
    )
    prev = shifted_labels(jnp.asarray(y), 3)
    dense_step, conv_step = jax.jit(dense.step), jax.jit(conv.step)
    for t in range(len(y)):
        state, logits = dense_step(theta, state, x[t], prev[t])
        conv_state, conv_logits = conv_step(
            theta, conv_state, x[t].reshape(1, 1, 5), prev[t]
        )
        np.testing.assert_allclose(conv_logits, logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        conv_state.c[0].reshape(state.c[0].shape), state.c[0], rtol=1e-5, atol=1e-5
    )


def test_conv_stack_shapes():
    spec = TaskSpec((7, 7, 2), 4)
    learner = make_learner("vsml", spec, conv=((3, 3, 2), (2, 2, 1)), hidden=(5,))
    theta = jax.eval_shape(learner.init, jax.random.PRNGKey(0))
    state = jax.eval_shape(learner.reset, jax.random.PRNGKey(1), theta)

    assert [layer.out_shape for layer in learner.layers()] == [
        (4, 4, 3),
        (4, 4, 2),
        (5,),
        (4,),
    ]
    assert [h.shape for h in state.h] == [
        (3, 3, 2, 3, 16),
        (2, 2, 3, 2, 16),
        (32, 5, 16),
        (5, 4, 16),
    ]
    assert [m.shape for m in state.bwd_msg] == [(4, 4, 3, 8), (4, 4, 2, 8), (5, 8)]
    x = jax.ShapeDtypeStruct((7, 7, 2), jnp.float32)
    prev = jax.ShapeDtypeStruct((4,), jnp.float32)
    new_state, logits = jax.eval_shape(learner.step, theta, state, x, prev)
    assert logits.shape == (4,)
    assert jax.tree.map(lambda a: a.shape, new_state) == jax.tree.map(
        lambda a: a.shape, state
    )


def test_theta_is_the_same_for_every_layer_size():
    small = make_learner("vsml", TaskSpec((49,), 10))
    large = make_learner("vsml", TaskSpec((784,), 10))
    deep = make_learner("vsml", TaskSpec((784,), 10), hidden=(32, 7))
    theta = lively_theta(small, seed=0)

    assert small.num_meta_params() == large.num_meta_params() == deep.num_meta_params()
    for learner in (small, large):
        x, y = episode(learner.spec, T=2, seed=0)
        logits = jit_rollout(learner, theta, jax.random.PRNGKey(1), x, y)
        assert logits.shape == (2, 10)
        assert np.all(np.isfinite(logits))
    state = jax.eval_shape(deep.reset, jax.random.PRNGKey(1), theta)
    x = jax.ShapeDtypeStruct((784,), jnp.float32)
    prev = jax.ShapeDtypeStruct((10,), jnp.float32)
    _, logits = jax.eval_shape(deep.step, theta, state, x, prev)
    assert logits.shape == (10,)

    # One LSTM per layer: the count grows with the depth only.
    per_layer = dict(lstm_per_layer=True, hidden=(32,))
    assert (
        make_learner("vsml", TaskSpec((49,), 10), **per_layer).num_meta_params()
        == make_learner("vsml", TaskSpec((784,), 2), **per_layer).num_meta_params()
        == 2 * small.num_meta_params()
    )


@pytest.mark.parametrize(("N", "M"), [(16, 8), (4, 3)])
def test_theta_count(N, M):
    learner = make_learner("vsml", TaskSpec((9,), 3), state_size=N, message_size=M)
    lstm = (2 * M + N) * 4 * N + 4 * N
    heads = 2 * (N * M + M)
    assert learner.num_meta_params() == lstm + heads
    if (N, M) == (16, 8):
        assert learner.num_meta_params() == 2384  # "about 2.4k" in the paper


def test_initial_state():
    learner = make_learner("vsml", TaskSpec((784,), 10), init_fraction=0.25)
    theta = lively_theta(learner, seed=0)
    reset = jax.jit(learner.reset)
    state = reset(jax.random.PRNGKey(1), theta)
    other = reset(jax.random.PRNGKey(2), theta)
    c = np.asarray(state.c[0])

    assert np.all(np.asarray(state.h[0]) == 0)
    assert np.all(c[..., 4:] == 0)
    assert np.std(c[..., :4]) == pytest.approx(1 / np.sqrt(784), rel=0.05)
    assert np.abs(c[..., :4]).max() <= 2 / 0.8796 / np.sqrt(784) + 1e-6
    assert not np.allclose(c, np.asarray(other.c[0]))


def test_mini_batch_shares_the_first_half_of_the_units():
    spec = TaskSpec((3,), 2)
    learner = make_learner("vsml", spec, hidden=(4,), state_size=6)
    theta = lively_theta(learner, seed=10)
    batch, T = 3, 3
    rng = np.random.default_rng(11)
    x = rng.standard_normal((T, batch, 3)).astype(np.float32)
    y = rng.integers(0, 2, (T, batch))
    prev = np.zeros((T, batch, 2), np.float32)
    prev[1:] = np.eye(2)[y[:-1]]
    start = lively_state(learner, seed=12)
    state = jax.tree.map(lambda a: jnp.broadcast_to(a, (batch, *a.shape)), start)
    copies = [start] * batch
    assert jax.tree.map(lambda a: a.shape, state) == jax.tree.map(
        lambda a: a.shape,
        jax.eval_shape(
            functools.partial(learner.reset_batch, batch_size=batch),
            jax.random.PRNGKey(0),
            theta,
        ),
    )
    step_batch = jax.jit(learner.step_batch)
    step = jax.jit(learner.step)
    for t in range(T):
        state, logits = step_batch(theta, state, x[t], prev[t])
        # The reference: each example on its own, then the mean of units 0..2.
        outs = [step(theta, s, x[t, b], prev[t, b]) for b, s in enumerate(copies)]
        copies = [s for s, _ in outs]
        np.testing.assert_allclose(
            logits, np.stack([o for _, o in outs]), rtol=1e-5, atol=1e-5
        )
        shared = []
        for field in ("h", "c"):
            for layer in range(2):
                leaves = np.stack([getattr(s, field)[layer] for s in copies])
                leaves[..., :3] = leaves[..., :3].mean(axis=0)
                np.testing.assert_allclose(
                    getattr(state, field)[layer], leaves, rtol=1e-5, atol=1e-5
                )
                shared.append(leaves)
        copies = [
            dataclasses.replace(
                s,
                h=(shared[0][b], shared[1][b]),
                c=(shared[2][b], shared[3][b]),
            )
            for b, s in enumerate(copies)
        ]

    # Shared units agree across the batch, private ones do not.
    h = np.asarray(state.h[0])
    assert np.allclose(h[:, ..., :3], h[:1, ..., :3])
    assert not np.allclose(h[:, ..., 3:], h[:1, ..., 3:])


@pytest.mark.parametrize(
    "options",
    [{}, {"hidden": (4,), "backward_pass": True, "label_input": True}],
    ids=["default", "backward-label"],
)
def test_no_peeking_at_the_current_label(options):
    spec = TaskSpec((6,), 3)
    learner = make_learner("vsml", spec, **options)
    theta = lively_theta(learner, seed=13)
    x, y = episode(spec, T=4, seed=14)
    key = jax.random.PRNGKey(15)
    base = jit_rollout(learner, theta, key, x, y)

    for t in range(len(y)):
        changed = y.copy()
        changed[t] = (y[t] + 1) % 3
        logits = jit_rollout(learner, theta, key, x, changed)
        np.testing.assert_array_equal(logits[: t + 1], base[: t + 1])
        if t + 1 < len(y):
            assert not np.allclose(logits[t + 1], base[t + 1])


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"message_size": 1}, "message_size=1"),
        ({"micro_ticks": 0}, "micro_ticks=0"),
        ({"hidden": (0,)}, "hidden=(0,)"),
        ({"conv": ((4, 0, 1),)}, "(4, 0, 1)"),
        ({"init_fraction": 1.5}, "init_fraction=1.5"),
    ],
)
def test_bad_options_are_user_errors(options, named):
    with pytest.raises(UserError) as error:
        make_learner("vsml", TaskSpec((4,), 2), **options)
    assert named in str(error.value)


def test_conv_needs_images():
    with pytest.raises(UserError, match="H, W, C"):
        make_learner("vsml", TaskSpec((16,), 2), conv=((4, 3, 1),))
