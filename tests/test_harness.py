"""The meta-test harness and the `run` / `eval` commands, end to end but small."""

import json

import numpy as np
import pytest

from vsml_bench.cli import main
from vsml_bench.harness import evaluate_learner
from vsml_bench.results import load_result
from vsml_bench.tasks.catalog import make_task

SMALL_EVAL = ["--episodes", "2", "--steps", "40"]


def test_every_learner_sees_identical_streams_and_adam_is_its_own_baseline():
    task = make_task("mnist-cpu", split="test", episode_length=30)
    adam = evaluate_learner("adam", {}, None, [task], episodes=3, seed=7)[0]
    np.testing.assert_array_equal(adam.correct, adam.baseline_correct)
    assert adam.outcome().vs_adam["accuracy"] == 0.0

    sgd = evaluate_learner("sgd", {}, None, [task], episodes=3, seed=7)[0]
    again = evaluate_learner("sgd", {}, None, [task], episodes=3, seed=7)[0]
    np.testing.assert_array_equal(sgd.correct, again.correct)
    np.testing.assert_array_equal(sgd.baseline_correct, adam.correct)
    other_seed = evaluate_learner("sgd", {}, None, [task], episodes=3, seed=8)[0]
    assert not np.array_equal(other_seed.correct, sgd.correct)


def test_eval_writes_a_valid_results_file_and_a_plot(tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(
        ["eval", "--agent", "sgd", "--task", "mnist", *SMALL_EVAL, "--out", str(out)]
    )
    assert code == 0
    result = load_result(out / "results.json")
    assert result["learner"]["name"] == "sgd"
    assert result["track"] == "randproj-cpu"
    assert [t["task"] for t in result["tasks"]] == ["mnist/test"]
    assert result["protocol"] == {"seed": 1234, "episodes": 2, "steps": 40}
    assert (out / "curves.png").stat().st_size > 1000
    assert "mnist/test" in capsys.readouterr().out


def test_run_meta_trains_a_learner_with_meta_parameters_then_tests_it(tmp_path):
    out = tmp_path / "run"
    code = main(
        [
            "run",
            "--agent",
            "toy_learners:DeltaRule",
            "--task",
            "fashion_mnist",
            "--out",
            str(out),
            "--steps",
            "30",
            "generations=2",
            "es.population=4",
            "episode_length=10",
            "eval.episodes=2",
            "eval.every=100",
            "log.progress=false",
        ]
    )
    assert code == 0
    assert (out / "meta-train" / "checkpoints" / "000002.safetensors").exists()
    result = load_result(out / "results.json")
    assert result["meta_training"]["method"] == "es"
    assert result["meta_training"]["episodes"] == 2 * 4
    assert result["meta_training"]["steps"] == 2 * 4 * 10
    assert result["config_hash"] is not None
    assert (out / "meta_params.safetensors").exists()


def test_run_skips_meta_training_for_learners_without_meta_parameters(tmp_path):
    out = tmp_path / "adam"
    assert (
        main(
            [
                "run",
                "--agent",
                "adam",
                "--task",
                "mnist",
                "--steps",
                "20",
                "--out",
                str(out),
                "eval.episodes=2",
            ]
        )
        == 0
    )
    assert not (out / "meta-train").exists()
    assert load_result(out / "results.json")["meta_training"]["method"] == "none"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "--agent", "sgd", "--task", "mnits"], "unknown task 'mnits'"),
        (["eval", "--agent", "sgd", "--suite", "nope"], "unknown suite 'nope'"),
        (["eval", "--agent", "sdg"], "unknown learner 'sdg'"),
        (["eval", "--agent", "sgd", "--option", "learning_rate=fast"], "learning_rate"),
        (["run", "--agent", "sgd", "--task", "mnist", "es.popsize=3"], "popsize"),
        (["eval", "--checkpoint", "/nonexistent/run"], "does not say which learner"),
        (["bench", "--shape", "784"], "--shape"),
    ],
)
def test_bad_input_exits_2_with_a_message_naming_it(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_results_file_is_json_a_person_can_read(tmp_path):
    out = tmp_path / "eval"
    main(["eval", "--agent", "adam", "--task", "mnist", *SMALL_EVAL, "--out", str(out)])
    text = (out / "results.json").read_text()
    assert json.loads(text)["schema"] == "vsml-bench/results"
