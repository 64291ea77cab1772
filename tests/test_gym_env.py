"""The Gymnasium layer: registration, seeding, the step protocol and the vector env.

Every test uses MNIST (bundled) with 4-step episodes, so that the compiled sampler and
steps are shared; the whole-catalogue checks live in test_task_contract.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium
import jax
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from vsml_bench.errors import UserError
from vsml_bench.gym_env import VsmlBenchEnv, VsmlBenchVectorEnv, input_bounds
from vsml_bench.registration import register_gymnasium_envs
from vsml_bench.task import sample_episode
from vsml_bench.tasks.catalog import TASKS, make_task

GYM_ID = "vsml_bench/MNIST-v0"
LENGTH = 4


@pytest.fixture(scope="module")
def task():
    return make_task("mnist", episode_length=LENGTH)


def _env(**kwargs) -> VsmlBenchEnv:
    return VsmlBenchEnv("mnist", episode_length=LENGTH, **kwargs)


def test_every_catalogue_task_is_registered_with_both_entry_points():
    for name, entry in TASKS.items():
        spec = gymnasium.spec(entry.gym_id)
        assert spec.entry_point == "vsml_bench.gym_env:VsmlBenchEnv"
        assert spec.vector_entry_point == "vsml_bench.gym_env:VsmlBenchVectorEnv"
        assert spec.kwargs == {"task": name}


def test_registering_again_changes_nothing_and_warns_nothing():
    before = {e.gym_id: gymnasium.spec(e.gym_id) for e in TASKS.values()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_gymnasium_envs()
    assert all(gymnasium.spec(i) is spec for i, spec in before.items())


def test_importing_vsml_bench_loads_no_data_and_compiles_nothing():
    code = (
        "import sys, vsml_bench, gymnasium\n"
        "from vsml_bench import datasets\n"
        f"assert {GYM_ID!r} in gymnasium.registry\n"
        "assert datasets._load_split.cache_info().currsize == 0\n"
        "assert datasets._raw_split.cache_info().currsize == 0\n"
        "assert 'vsml_bench.gym_env' not in sys.modules\n"
        "print('IMPORTED', file=sys.stderr, flush=True)\n"
        # A compile after the marker shows that compiles would be seen in the log.
        "import jax; jax.jit(lambda x: x + 1)(1)\n"
    )
    env = {**os.environ, "JAX_LOG_COMPILES": "1", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    at_import, after = result.stderr.split("IMPORTED")
    assert "Compiling" not in at_import and "Compiling" in after


@pytest.mark.parametrize("action_type", ["logits", "class"])
def test_check_env_passes_without_warnings(action_type):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(_env(action_type=action_type))
        made = gymnasium.make(GYM_ID, episode_length=LENGTH, action_type=action_type)
        check_env(made.unwrapped)


def test_spaces(task):
    env = _env()
    assert env.observation_space["x"].shape == (784,)
    assert env.observation_space["prev_label"] == gymnasium.spaces.Box(
        0.0, 1.0, (10,), np.float32
    )
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (10,), np.float32)
    assert _env(action_type="class").action_space == gymnasium.spaces.Discrete(10)
    # MNIST pixels are in [0, 1] with mean 0.1307 and std 0.3081.
    low, high = input_bounds(task, task.load())
    assert low == pytest.approx((0 - 0.1307) / 0.3081, abs=2e-3)
    assert high == pytest.approx((1 - 0.1307) / 0.3081, abs=2e-3)


def test_reset_seed_draws_the_episode_key_from_np_random(task):
    env = _env()
    rng = np.random.default_rng(42)
    first, _ = env.reset(seed=42)
    np.testing.assert_array_equal(
        env.episode_key, jax.random.PRNGKey(int(rng.integers(0, 2**32)))
    )
    env.reset()
    np.testing.assert_array_equal(
        env.episode_key, jax.random.PRNGKey(int(rng.integers(0, 2**32)))
    )
    again, _ = env.reset(seed=42)
    np.testing.assert_array_equal(again["x"], first["x"])
    other, _ = env.reset(seed=43)
    assert not np.array_equal(other["x"], first["x"])


def test_reset_with_a_key_serves_that_keys_episode(task):
    env = _env()
    key = jax.random.PRNGKey(123)
    obs, _ = env.reset(options={"key": key})
    episode = sample_episode(task, key, task.load())
    np.testing.assert_array_equal(obs["x"], episode.x[0])
    np.testing.assert_array_equal(env.episode_key, key)


def test_class_actions_are_rewarded_one_when_right(task):
    env = _env(action_type="class")
    env.reset(seed=0)
    episode = sample_episode(task, env.episode_key, task.load())
    for t, label in enumerate(np.asarray(episode.y)):
        guess = int(label) if t % 2 == 0 else (int(label) + 1) % 10
        _, reward, terminated, truncated, info = env.step(guess)
        assert reward == (1.0 if t % 2 == 0 else 0.0)
        assert info == {"label": int(label), "correct": t % 2 == 0}
        assert truncated == (t == LENGTH - 1) and not terminated


def test_step_after_the_last_step_asks_for_reset():
    env = _env()
    env.reset(seed=0)
    for _ in range(LENGTH):
        env.step(np.zeros(10, np.float32))
    with pytest.raises(UserError, match="reset"):
        env.step(np.zeros(10, np.float32))
    env.reset()
    env.step(np.zeros(10, np.float32))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda e: e.step(np.zeros(10)), "reset"),
        (lambda e: (e.reset(), e.step(np.zeros(9))), r"\(9,\)"),
        (lambda e: e.reset(options={"colour": 1}), "colour"),
        (lambda e: e.reset(options={"episode": 3}), "episode"),
    ],
)
def test_bad_calls_raise_user_errors(call, match):
    with pytest.raises(UserError, match=match):
        call(_env())


def test_bad_arguments_raise_user_errors():
    with pytest.raises(UserError, match="probs"):
        _env(action_type="probs")
    with pytest.raises(UserError, match="human"):
        _env(render_mode="human")
    with pytest.raises(UserError, match="nonsense"):
        VsmlBenchEnv("nonsense")
    with pytest.raises(UserError, match="episode_lenght"):
        VsmlBenchEnv("mnist", episode_lenght=3)
    env = _env(action_type="class")
    env.reset(seed=0)
    with pytest.raises(UserError, match="0..9"):
        env.step(10)
    with pytest.raises(UserError, match="num_envs"):
        VsmlBenchVectorEnv(num_envs=0, task="mnist")


def test_make_vec_gives_the_jitted_vector_env():
    envs = gymnasium.make_vec(
        GYM_ID,
        num_envs=3,
        vectorization_mode="vector_entry_point",
        episode_length=LENGTH,
    )
    assert isinstance(envs, VsmlBenchVectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    single = _env()
    assert envs.single_observation_space == single.observation_space
    assert envs.single_action_space == single.action_space
    assert envs.observation_space == batch_space(single.observation_space, 3)
    assert envs.action_space == batch_space(single.action_space, 3)
    obs, _ = envs.reset(seed=0)
    assert obs in envs.observation_space


@pytest.mark.parametrize("action_type", ["logits", "class"])
def test_vector_env_matches_gymnasiums_sync_vector_env(action_type):
    """Same seeds, same actions: the same stream, autoresets included."""
    kwargs = {"num_envs": 3, "episode_length": LENGTH, "action_type": action_type}
    ours = gymnasium.make_vec(GYM_ID, vectorization_mode="vector_entry_point", **kwargs)
    reference = gymnasium.make_vec(GYM_ID, vectorization_mode="sync", **kwargs)
    assert reference.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    ours.action_space.seed(1)
    obs, _ = ours.reset(seed=9)
    expected, _ = reference.reset(seed=9)
    resets = 0
    for _ in range(3 * (LENGTH + 1) - 1):
        for part in ("x", "prev_label"):
            np.testing.assert_array_equal(obs[part], expected[part])
        actions = ours.action_space.sample()
        obs, reward, terminated, truncated, info = ours.step(actions)
        expected, ref_reward, ref_terminated, ref_truncated, ref_info = reference.step(
            actions
        )
        np.testing.assert_allclose(reward, ref_reward, rtol=1e-6)
        np.testing.assert_array_equal(terminated, ref_terminated)
        np.testing.assert_array_equal(truncated, ref_truncated)
        if "label" in ref_info:
            np.testing.assert_array_equal(info["_label"], ref_info["_label"])
            np.testing.assert_array_equal(info["label"], ref_info["label"])
            np.testing.assert_array_equal(info["correct"], ref_info["correct"])
        else:
            # Gymnasium's next-step autoreset: every sub-env reset, nothing stepped.
            assert not info["_label"].any() and not reward.any()
            resets += 1
    assert resets == 2


def test_vector_env_per_env_seeds_match_single_envs(task):
    envs = VsmlBenchVectorEnv(num_envs=2, task="mnist", episode_length=LENGTH)
    obs, _ = envs.reset(seed=[5, 17])
    for i, seed in enumerate((5, 17)):
        single, _ = _env().reset(seed=seed)
        np.testing.assert_array_equal(obs["x"][i], single["x"])
    with pytest.raises(UserError, match="2 environments"):
        envs.reset(seed=[1, 2, 3])
    with pytest.raises(UserError, match=r"\(2, 10\)"):
        envs.step(np.zeros((3, 10), np.float32))


def test_the_tasks_page_lists_every_gymnasium_id():
    page = (Path(__file__).resolve().parents[1] / "docs" / "tasks.md").read_text()
    missing = [e.gym_id for e in TASKS.values() if f"`{e.gym_id}`" not in page]
    assert not missing
