"""Whole meta-training runs: run folders, killing and resuming, MPI, checkpoints."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from vsml_bench.errors import UserError
from vsml_bench.training.checkpoint import load_checkpoint, save_checkpoint

TESTS = Path(__file__).parent
BIN = Path(sys.executable).parent
SMALL = [
    "agent=toy_learners:DeltaRule",
    "es.population=4",
    "episode_length=8",
    "eval.episodes=2",
    "eval.episode_length=8",
    "eval.every=1000",
    "log.progress=false",
]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return env


def _train(out, *overrides, mpi_ranks=None, **kwargs):
    command = [str(BIN / "vsml-bench"), "train", "--out", str(out), *overrides]
    if mpi_ranks:
        command = [str(BIN / "mpiexec"), "-n", str(mpi_ranks), *command]
    return subprocess.run(
        command, env=_env(), capture_output=True, text=True, timeout=300, **kwargs
    )


def _final(out):
    return load_file(str(Path(out) / "meta_params.safetensors"))


def test_a_killed_run_resumes_to_the_same_result(tmp_path):
    args = [*SMALL, "generations=150", "checkpoint_every=5"]
    whole = _train(tmp_path / "whole", *args)
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "killed"
    command = [str(BIN / "vsml-bench"), "train", "--out", str(out), *args]
    process = subprocess.Popen(
        command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 240
    while not (out / "checkpoints" / "000005.safetensors").exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (out / "meta_params.safetensors").exists()

    resumed = subprocess.run(
        [str(BIN / "vsml-bench"), "train", "--resume", str(out)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    for name, value in _final(tmp_path / "whole").items():
        np.testing.assert_array_equal(_final(out)[name], value)

    generations = [
        json.loads(line)["generation"]
        for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert generations == list(range(1, 151))


def test_two_mpi_ranks_end_where_one_process_ends(tmp_path):
    args = [*SMALL, "generations=4"]
    single = _train(tmp_path / "single", *args)
    assert single.returncode == 0, single.stderr
    double = _train(tmp_path / "double", *args, mpi_ranks=2)
    assert double.returncode == 0, double.stderr
    for name, value in _final(tmp_path / "single").items():
        np.testing.assert_allclose(_final(tmp_path / "double")[name], value, rtol=1e-6)


def test_a_population_that_does_not_split_is_a_clear_error(tmp_path):
    result = _train(tmp_path / "odd", *SMALL, "es.population=6", mpi_ranks=4)
    assert result.returncode == 2
    assert "does not split evenly over 4" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_folder_refuses_to_overwrite_and_learners_without_meta_params(tmp_path):
    assert _train(tmp_path / "run", *SMALL, "generations=1").returncode == 0
    again = _train(tmp_path / "run", *SMALL, "generations=1")
    assert again.returncode == 2 and "--resume" in again.stderr
    sgd = _train(tmp_path / "sgd", "agent=sgd", "log.progress=false")
    assert sgd.returncode == 2 and "no meta-parameters" in sgd.stderr


def test_a_crash_while_saving_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    template = {"w": np.zeros(3, np.float32), "step": np.int32(0)}
    save_checkpoint(path, {"w": np.ones(3, np.float32), "step": np.int32(1)}, {"g": 1})

    def broken_replace(src, dst):
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_checkpoint(path, {"w": np.full(3, 2.0, np.float32), "step": 2}, {"g": 2})
    monkeypatch.undo()

    tree, meta = load_checkpoint(path, template)
    np.testing.assert_array_equal(tree["w"], np.ones(3))
    assert meta == {"g": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]


def test_a_damaged_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, {"w": np.ones(3, np.float32)}, {"g": 1})
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(UserError, match="cannot be read"):
        load_checkpoint(path, {"w": np.zeros(3, np.float32)})


def test_members_sharded_over_several_devices_give_the_same_result(tmp_path):
    args = [*SMALL, "generations=3"]
    single = _train(tmp_path / "one", *args)
    assert single.returncode == 0, single.stderr
    env = _env()
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    sharded = subprocess.run(
        [str(BIN / "vsml-bench"), "train", "--out", str(tmp_path / "two"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sharded.returncode == 0, sharded.stderr
    for name, value in _final(tmp_path / "one").items():
        np.testing.assert_allclose(_final(tmp_path / "two")[name], value, rtol=1e-5)


def test_a_non_finite_mean_stops_the_run_and_keeps_the_last_checkpoint(
    tmp_path, monkeypatch
):
    from vsml_bench.config import load_config
    from vsml_bench.training import es
    from vsml_bench.training.run import DivergedError, train

    sys.path.insert(0, str(TESTS))
    config = load_config(overrides=[*SMALL, "generations=6", "checkpoint_every=2"])
    original = es.ESTrainer.generation

    def diverging(self, state, key):
        state, metrics, times = original(self, state, key)
        if int(state.generation_counter) == 3:
            state = state.replace(mean=state.mean * np.nan)
        return state, metrics, times

    monkeypatch.setattr(es.ESTrainer, "generation", diverging)
    with pytest.raises(DivergedError, match="non-finite at generation 3"):
        train(config, tmp_path / "run")
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["000002.safetensors"]
    assert not (tmp_path / "run" / "meta_params.safetensors").exists()


def test_wandb_logs_offline_next_to_the_metrics_file(tmp_path):
    result = _train(tmp_path / "run", *SMALL, "generations=2", "log.wandb=true")
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2
