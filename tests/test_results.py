"""The results file: building, strict validation, round trips and atomic writes."""

from __future__ import annotations

import copy
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from vsml_bench.config import config_hash, load_config, to_dict
from vsml_bench.errors import UserError
from vsml_bench.results import (
    MAX_FILE_BYTES,
    TaskOutcome,
    bin_curve,
    dumps_result,
    hash_config,
    load_result,
    make_result,
    paired_difference,
    parse_result,
    validate_result,
    write_result,
)

N, T = 5, 250


def _arrays(seed: int, p: float):
    rng = np.random.default_rng(seed)
    correct = (rng.random((N, T)) < p).astype(np.float32)
    loss = rng.random((N, T)).astype(np.float32) * 2
    return loss, correct


def _result(**changes) -> dict:
    loss, correct = _arrays(0, 0.7)
    _, adam = _arrays(1, 0.5)
    fields = dict(
        learner_name="vsml",
        learner_options={"hidden": 8, "resize": (8, 8)},
        num_meta_params=1234,
        learner_source="builtin",
        config=to_dict(load_config()),
        method="es",
        meta_episodes=640,
        meta_steps=640 * 250,
        wall_time_s=12.5,
        hardware="Linux x86_64, 2 cores, jax cpu",
        from_checkpoint="runs/x/meta_params.safetensors",
        track="randproj-cpu",
        suite="randproj-mnist-cpu",
        seed=3,
        episodes=N,
        steps=T,
        tasks=[
            TaskOutcome.from_per_step("mnist", "test", loss, correct, adam),
            TaskOutcome.from_per_step("fashion_mnist", "test", loss, adam, adam),
        ],
        created="2025-01-31T12:00:00Z",
    )
    fields.update(changes)
    return make_result(**fields)


GOOD = _result()


def test_metrics_match_an_independent_computation():
    loss, correct = _arrays(0, 0.7)
    _, adam = _arrays(1, 0.5)
    metrics = GOOD["tasks"][0]["metrics"]

    per_episode = [sum(row) / T for row in correct.tolist()]
    mean = sum(per_episode) / N
    sd = math.sqrt(sum((a - mean) ** 2 for a in per_episode) / (N - 1))
    assert metrics["accuracy"] == pytest.approx(mean, abs=1e-6)
    assert metrics["accuracy_ci95"] == pytest.approx(1.96 * sd / math.sqrt(N))
    last = [sum(row[-25:]) / 25 for row in correct.tolist()]
    assert metrics["accuracy_last"] == pytest.approx(sum(last) / N, abs=1e-6)
    assert metrics["cross_entropy"] == pytest.approx(float(loss.mean()), abs=1e-5)

    diffs = [a - b for a, b in zip(per_episode, (sum(r) / T for r in adam.tolist()))]
    d_mean = sum(diffs) / N
    d_sd = math.sqrt(sum((d - d_mean) ** 2 for d in diffs) / (N - 1))
    assert metrics["vs_adam"]["accuracy"] == pytest.approx(d_mean, abs=1e-6)
    assert metrics["vs_adam"]["accuracy_ci95"] == pytest.approx(
        1.96 * d_sd / math.sqrt(N), abs=1e-6
    )
    # Adam against itself: exactly zero difference.
    assert GOOD["tasks"][1]["metrics"]["vs_adam"] == {
        "accuracy": 0.0,
        "accuracy_ci95": 0.0,
    }


@pytest.mark.parametrize("steps", [1, 7, 100, 250, 1001])
def test_curve_bins_are_contiguous_means(steps):
    values = np.random.default_rng(steps).random(steps)
    curve = bin_curve(values)

    # Independent binning: the first `extra` bins get one step more.
    bins = min(steps, 100)
    size, extra = divmod(steps, bins)
    ends, means, start = [], [], 0
    for b in range(bins):
        stop = start + size + (1 if b < extra else 0)
        ends.append(stop)
        means.append(round(sum(values[start:stop].tolist()) / (stop - start), 4))
        start = stop
    assert curve["steps"] == ends
    assert curve["accuracy"] == pytest.approx(means, abs=1e-12)


def test_config_hash_is_the_config_modules_hash():
    config = load_config()
    assert hash_config(to_dict(config)) == config_hash(config)
    assert GOOD["config_hash"] == config_hash(config)


def test_good_file_round_trips(tmp_path):
    path = tmp_path / "vsml.json"
    write_result(path, GOOD)
    assert load_result(path) == GOOD
    assert json.loads(path.read_text()) == GOOD


def test_strings_survive_the_compact_number_lists(tmp_path):
    # The writer puts lists of numbers on one line; text that looks like such a list
    # must come back unchanged.
    result = _result(
        learner_name="pkg.mod:Learner [1,  2]",
        learner_source="plugin",
        learner_options={"note": "[ 1,   2 ]", "nested": [[1, 2], [3]]},
    )
    path = tmp_path / "plugin.json"
    write_result(path, result)
    assert load_result(path) == result
    steps = result["tasks"][0]["metrics"]["curve"]["steps"]
    assert f'"steps": {json.dumps(steps)},' in path.read_text()


def _set(path: str, value):
    """A mutation that sets a dotted path (`tasks.0.metrics.accuracy`) to a value."""

    def mutate(data):
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _delete(path: str):
    def mutate(data):
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]

    return mutate


def _long_curve(data):
    curve = data["tasks"][0]["metrics"]["curve"]
    curve["steps"] = list(range(1, 102))
    curve["accuracy"] = [0.5] * 101


def _duplicate_task(data):
    data["tasks"].append(copy.deepcopy(data["tasks"][0]))


BAD_DOCUMENTS = {
    "schema id": (_set("schema", "other/results"), "is not 'vsml-bench/results'"),
    "schema version": (_set("schema_version", 2), "2 is not supported"),
    "schema version bool": (_set("schema_version", True), "True is not supported"),
    "unknown top field": (_set("extra", 1), "result: unknown field 'extra'"),
    "unknown nested field": (
        _set("tasks.0.metrics.accuracy_first", 0.5),
        "result.tasks[0].metrics: unknown field 'accuracy_first'",
    ),
    "unknown curve field": (
        _set("tasks.0.metrics.curve.loss", [1.0]),
        "metrics.curve: unknown field 'loss'",
    ),
    "missing field": (_delete("protocol.seed"), "protocol: missing field 'seed'"),
    "missing tasks": (_delete("tasks"), "missing field 'tasks'"),
    "string count": (
        _set("learner.num_meta_params", "10"),
        "num_meta_params: expected an integer, got a string",
    ),
    "bool count": (
        _set("meta_training.episodes", True),
        "episodes: expected an integer, got a boolean",
    ),
    "float count": (_set("protocol.steps", 250.0), "steps: expected an integer"),
    "list for object": (_set("learner", []), "learner: expected an object, got a list"),
    "no schema": (lambda d: d.pop("schema"), "result.schema: None is not"),
    "accuracy above 1": (
        _set("tasks.0.metrics.accuracy", 1.5),
        "accuracy: 1.5 is out of range; an accuracy must be [0.0, 1.0]",
    ),
    "accuracy below 0": (_set("tasks.0.metrics.accuracy_last", -0.1), "out of range"),
    "negative ci": (
        _set("tasks.1.metrics.accuracy_ci95", -0.01),
        "tasks[1].metrics.accuracy_ci95: -0.01 is out of range",
    ),
    "negative cross-entropy": (
        _set("tasks.0.metrics.cross_entropy", -0.5),
        "a cross-entropy must be >= 0.0",
    ),
    "nan accuracy": (
        _set("tasks.0.metrics.accuracy", float("nan")),
        "accuracy: nan is not a finite number",
    ),
    "infinite wall time": (
        _set("meta_training.wall_time_s", float("inf")),
        "wall_time_s: inf is not a finite number",
    ),
    "nan in config": (
        _set("config.es.std", float("nan")),
        "config.es.std: nan is not a finite number",
    ),
    "curve length mismatch": (
        _set("tasks.0.metrics.curve.accuracy", [0.5, 0.5]),
        "steps but 2 accuracies; the lengths must match",
    ),
    "curve too long": (_long_curve, "has 101 entries; between 1 and 100"),
    "curve not increasing": (
        _set("tasks.0.metrics.curve.steps.1", 1),
        "curve.steps: must be strictly increasing",
    ),
    "curve past the episode": (_set("protocol.steps", 200), "past the episode length"),
    "curve accuracy above 1": (
        _set("tasks.0.metrics.curve.accuracy.3", 2.0),
        "curve.accuracy[3]: 2.0 is out of range",
    ),
    "negative meta episodes": (
        _set("meta_training.episodes", -1),
        "episodes: -1 is outside [0,",
    ),
    "negative parameter count": (_set("learner.num_meta_params", -5), "-5 is outside"),
    "one meta-test episode": (
        _set("protocol.episodes", 1),
        "intervals need >= 2",
    ),
    "seed too large": (_set("protocol.seed", 2**40), "(a seed)"),
    "path as track": (_set("track", "../etc"), "'../etc' is not a plain name"),
    "unknown track": (_set("track", "atari"), "unknown track 'atari'; known tracks:"),
    "suite of another track": (
        _set("suite", "grid-mnist-cpu"),
        "'grid-mnist-cpu' is not a suite of track 'randproj-cpu'",
    ),
    "task of another track": (
        lambda d: d["tasks"][0].update(
            task="omniglot/test", dataset="omniglot", split="test"
        ),
        "'omniglot/test' is not a meta-test task of track 'randproj-cpu'",
    ),
    "task name mismatch": (
        _set("tasks.0.dataset", "kmnist"),
        "'mnist/test' must be dataset/split (kmnist/test)",
    ),
    "task with a slash in its dataset": (
        _set("tasks.0.task", "a/b/c"),
        "is not a task name dataset/split",
    ),
    "duplicate task": (_duplicate_task, "'mnist/test' appears twice"),
    "no tasks": (_set("tasks", []), "has 0 entries; between 1 and 64"),
    "option key": (
        _set("learner.options", {"a b": 1}),
        "learner.options key: 'a b' is not a plain name",
    ),
    "control characters in name": (
        _set("learner.name", "vsml\x1b[31m"),
        "contains control characters",
    ),
    "empty name": (_set("learner.name", ""), "must be non-empty"),
    "long name": (_set("learner.name", "x" * 101), "longer than 100 characters"),
    "unknown builtin": (
        _set("learner.name", "my_learner"),
        "'my_learner' is not a built-in learner",
    ),
    "source": (_set("learner.source", "pip"), "'pip' is not one of 'builtin'"),
    "method": (_set("meta_training.method", "magic"), "'magic' is not one of 'es'"),
    "method none with episodes": (
        _set("meta_training.method", "none"),
        "method 'none' must have 0 episodes and 0 steps",
    ),
    "episodes without steps": (
        _set("meta_training.steps", 10),
        "needs at least one episode and at least one step per episode",
    ),
    "config hash": (
        _set("config_hash", "0123456789abcdef"),
        "'0123456789abcdef' is not the hash of config",
    ),
    "config hash without config": (
        _set("config", None),
        "config_hash: must be null when config is null",
    ),
    "bad timestamp": (_set("created", "yesterday"), "is not an ISO 8601 UTC time"),
    "impossible date": (
        _set("created", "2025-13-01T00:00:00Z"),
        "is not an ISO 8601 UTC time",
    ),
    "version": (_set("package_version", "latest"), "is not a version"),
    "vs adam out of range": (
        _set("tasks.0.metrics.vs_adam.accuracy", 1.5),
        "an accuracy difference must be [-1.0, 1.0]",
    ),
}


@pytest.mark.parametrize("case", list(BAD_DOCUMENTS))
def test_validation_rejects_with_a_reason(case):
    mutate, message = BAD_DOCUMENTS[case]
    data = copy.deepcopy(GOOD)
    mutate(data)
    with pytest.raises(UserError) as error:
        validate_result(data)
    assert message in str(error.value)


def test_validation_accepts_the_good_document_and_null_fields():
    data = copy.deepcopy(GOOD)
    assert validate_result(data) == GOOD
    data.update(config=None, config_hash=None, suite=None)
    data["meta_training"].update(
        method="none", episodes=0, steps=0, from_checkpoint=None
    )
    data["tasks"][0]["metrics"]["vs_adam"] = None
    validate_result(data)


def _text() -> str:
    return dumps_result(GOOD)


BAD_TEXTS = {
    "invalid JSON": (lambda t: t[:-3], "invalid JSON"),
    "NaN": (
        lambda t: t.replace('"wall_time_s": 12.5', '"wall_time_s": NaN'),
        "NaN is not a finite number",
    ),
    "Infinity": (
        lambda t: t.replace('"wall_time_s": 12.5', '"wall_time_s": -Infinity'),
        "-Infinity is not a finite number",
    ),
    "overflowing number": (
        lambda t: t.replace('"wall_time_s": 12.5', '"wall_time_s": 1e999'),
        "wall_time_s: inf is not a finite number",
    ),
    "duplicate key": (
        lambda t: t.replace('"track":', '"track": "grid-cpu", "track":'),
        "the key 'track' appears twice",
    ),
    "a list": (lambda t: "[" + t + "]", "expected a JSON object, got a list"),
    "deep nesting": (lambda t: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
}


@pytest.mark.parametrize("case", list(BAD_TEXTS))
def test_parsing_rejects_with_a_reason(case, tmp_path):
    change, message = BAD_TEXTS[case]
    path = tmp_path / "bad.json"
    path.write_text(change(_text()))
    with pytest.raises(UserError) as error:
        load_result(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_non_utf8_is_rejected(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(_text().replace('"vsml"', '"vsml\xe9"').encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        load_result(path)


def test_oversized_file_is_rejected_before_parsing(tmp_path):
    path = tmp_path / "big.json"
    # Invalid JSON: if it were parsed first the message would say so.
    path.write_bytes(b"{" * (MAX_FILE_BYTES + 1))
    with pytest.raises(UserError, match="results files are at most 1048576 bytes"):
        load_result(path)
    with pytest.raises(UserError, match="larger than 1048576 bytes"):
        parse_result(b"{" * (MAX_FILE_BYTES + 1))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match="no such results file"):
        load_result(tmp_path / "nope.json")


def test_write_refuses_an_invalid_document(tmp_path):
    data = copy.deepcopy(GOOD)
    data["tasks"][0]["metrics"]["accuracy"] = 2.0
    with pytest.raises(UserError, match="out of range"):
        write_result(tmp_path / "bad.json", data)
    assert list(tmp_path.iterdir()) == []


def test_failed_replace_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "vsml.json"
    write_result(path, GOOD)
    before = path.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    changed = _result(wall_time_s=99.0)
    with pytest.raises(OSError, match="disk full"):
        write_result(path, changed)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["vsml.json"]
    write_result(path, changed)
    assert load_result(path)["meta_training"]["wall_time_s"] == 99.0


def test_one_episode_gives_no_interval_and_is_refused():
    loss, correct = _arrays(0, 0.7)
    outcome = TaskOutcome.from_per_step("mnist", "test", loss[:1], correct[:1])
    with pytest.raises(UserError, match="a 95% interval needs >= 2 episodes"):
        _result(tasks=[outcome], episodes=1)


def test_paired_difference_needs_matching_shapes():
    with pytest.raises(UserError, match="must be equal"):
        paired_difference(np.zeros((4, 10)), np.zeros((4, 11)))


def test_make_result_refuses_non_json_options():
    with pytest.raises(UserError, match="learner_options: not JSON data"):
        _result(learner_options={"f": object()})


def _shape(data, skip=("options", "config")):
    """The nested field names of a document (free-form parts and list items merged)."""
    if isinstance(data, dict):
        return {k: None if k in skip else _shape(v) for k, v in data.items()}
    if isinstance(data, list):
        shapes = [_shape(item) for item in data]
        return shapes[0] if shapes and all(x == shapes[0] for x in shapes) else shapes
    return None


def test_the_documented_example_is_valid_and_complete():
    doc = Path(__file__).resolve().parents[1] / "docs" / "results.md"
    text = doc.read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 1
    example = parse_result(blocks[0], "docs/results.md")
    assert _shape(example) == _shape(GOOD)
    # Every field is named in the table (as `name` or as part of a dotted path).
    for name in _flat_names(GOOD):
        assert f"`{name}" in text or f".{name}" in text, name


def _flat_names(data, skip=("options", "config")) -> set[str]:
    names = set()
    if isinstance(data, dict):
        for key, value in data.items():
            names.add(key)
            if key not in skip:
                names |= _flat_names(value)
    elif isinstance(data, list):
        for item in data:
            names |= _flat_names(item)
    return names
