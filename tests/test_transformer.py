"""The in-context Transformer: stepping with the cache equals a full causal pass."""

import jax
import numpy as np
import pytest

from vsml_bench.agents.transformer import InContextTransformer
from vsml_bench.errors import UserError
from vsml_bench.learner import TaskSpec, rollout, shifted_labels
from vsml_bench.registry import make_learner


def _layer_norm(p, h):
    mean = h.mean(-1, keepdims=True)
    var = ((h - mean) ** 2).mean(-1, keepdims=True)
    return (h - mean) / np.sqrt(var + 1e-5) * p["scale"] + p["bias"]


def _gelu(h):
    return 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))


def _full_forward(params, tokens, num_heads, context):
    """All T positions at once, float64, with a banded causal mask of width `context`.

    tokens: [T, token_size] -> logits [T, C].
    """
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    steps = len(tokens)
    i, j = np.arange(steps)[:, None], np.arange(steps)[None, :]
    visible = (j <= i) & (j > i - context)

    h = tokens @ params["embed"]["w"] + params["embed"]["b"]
    for layer in params["layers"]:
        a = _layer_norm(layer["ln_attn"], h)
        qkv = a @ layer["qkv"]["w"] + layer["qkv"]["b"]
        q, k, v = np.split(qkv, 3, axis=-1)
        head_size = q.shape[-1] // num_heads
        heads = []
        for n in range(num_heads):
            cols = slice(n * head_size, (n + 1) * head_size)
            scores = q[:, cols] @ k[:, cols].T / np.sqrt(head_size)
            scores = np.where(visible, scores, -np.inf)
            weights = np.exp(scores - scores.max(-1, keepdims=True))
            weights /= weights.sum(-1, keepdims=True)
            heads.append(weights @ v[:, cols])
        attended = np.concatenate(heads, axis=-1)
        h = h + attended @ layer["attn_out"]["w"] + layer["attn_out"]["b"]

        m = _layer_norm(layer["ln_mlp"], h)
        hidden = _gelu(m @ layer["mlp_in"]["w"] + layer["mlp_in"]["b"])
        h = h + hidden @ layer["mlp_out"]["w"] + layer["mlp_out"]["b"]

    out = _layer_norm(params["ln_final"], h)
    return out @ params["readout"]["w"] + params["readout"]["b"]


@pytest.mark.parametrize(
    "context", [16, 4], ids=["whole-episode-in-cache", "sliding-window"]
)
def test_cached_steps_equal_full_causal_pass(context):
    steps = 11
    spec = TaskSpec((5,), 3)
    learner = InContextTransformer(
        spec, num_layers=2, d_model=16, num_heads=4, mlp_ratio=2, context=context
    )
    params = learner.init(jax.random.PRNGKey(0))
    k_x, k_y = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(k_x, (steps, 5))
    y = jax.random.randint(k_y, (steps,), 0, 3)

    logits = jax.jit(rollout, static_argnums=0)(
        learner, params, jax.random.PRNGKey(2), x, y
    )

    tokens = np.concatenate([np.asarray(x), np.asarray(shifted_labels(y, 3))], axis=1)
    expected = _full_forward(params, tokens, num_heads=4, context=context)
    np.testing.assert_allclose(logits, expected, rtol=2e-4, atol=2e-4)

    # The window really slid: a pass with unlimited context agrees before t = context
    # and differs from then on.
    if context < steps:
        unbounded = _full_forward(params, tokens, num_heads=4, context=steps)
        np.testing.assert_allclose(unbounded[:context], expected[:context], rtol=1e-9)
        assert np.abs(unbounded[context:] - expected[context:]).max() > 1e-3


def test_meta_params_layout_and_count():
    learner = InContextTransformer(
        TaskSpec((7,), 2), num_layers=3, d_model=8, num_heads=2, mlp_ratio=4
    )
    params = learner.init(jax.random.PRNGKey(0))
    assert len(params["layers"]) == 3
    assert params["embed"]["w"].shape == (9, 8)
    d, f = 8, 32
    per_layer = (
        2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d)
    )
    expected = (9 * d + d) + 3 * per_layer + 2 * d + (d * 2 + 2)
    assert learner.num_meta_params() == expected


def test_bad_options_are_user_errors():
    spec = TaskSpec((7,), 2)
    with pytest.raises(UserError, match="num_heads 3"):
        make_learner("transformer", spec, d_model=16, num_heads=3)
    with pytest.raises(UserError, match="context"):
        make_learner("transformer", spec, context=0)
