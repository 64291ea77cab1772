"""The results file: one learner's meta-test results on one leaderboard track.

A results file is a JSON document (schema id `vsml-bench/results`, schema version 1)
describing the learner (name, options, meta-parameter count), how it was meta-trained
(method, episodes, steps, wall time, hardware), the meta-test protocol (seed, episodes,
steps) and, for each of the track's meta-test tasks, the online accuracy, last-10%
accuracy and cross-entropy with 95% intervals, a binned accuracy curve and the
difference to online Adam on identical streams. `docs/results.md` describes every
field.

Validation is strict, because result files are submitted by anyone: a file over 1 MiB
is refused before it is parsed, duplicate keys, NaN and infinities are refused by the
parser, every object must have exactly its documented fields, every number must be
finite and in range, and the track, suite and task names must be those of
`vsml_bench.tasks.suites`. A file is only ever parsed as JSON: nothing in it is
executed or unpickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from vsml_bench.errors import UserError

SCHEMA_ID = "vsml-bench/results"
SCHEMA_VERSION = 1
MAX_FILE_BYTES = 1 << 20
MAX_CURVE_POINTS = 100
MAX_TASKS = 64
METHODS = ("es", "gradient", "cloning", "none")
SOURCES = ("builtin", "plugin")

# Names that end up in file names, HTML ids and table headers.
_IDENTIFIER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")
_VERSION = re.compile(r"[0-9][0-9A-Za-z.+\-]{0,63}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
_HASH = re.compile(r"[0-9a-f]{16}")
_MAX_INT = 2**53
_MAX_FREE_DEPTH = 8
# An indented JSON list of numbers. The newlines make it structural: a JSON string
# never holds a raw newline, so text inside a string cannot match.
_JSON_NUMBER = r" *-?[0-9][0-9.eE+\-]*"
_NUMBER_LIST = re.compile(rf"\[\n((?:{_JSON_NUMBER},\n)*{_JSON_NUMBER})\n *\]")


@dataclass(frozen=True)
class Track:
    """A leaderboard track: its suites and the meta-test tasks they share.

    Attributes:
        name: e.g. `grid-cpu`.
        suites: the suites of the track, in registry order.
        tasks: task names (`dataset/split`) meta-tested by any of its suites, in order.
    """

    name: str
    suites: tuple[str, ...]
    tasks: tuple[str, ...]


@cache
def tracks() -> dict[str, Track]:
    """Every track of `vsml_bench.tasks.suites`, in registry order."""
    from vsml_bench.tasks.suites import suites

    found: dict[str, tuple[list[str], list[str]]] = {}
    for suite in suites().values():
        names, tasks = found.setdefault(suite.track, ([], []))
        names.append(suite.name)
        for task in suite.meta_test:
            name = f"{task.dataset}/{task.split}"
            if name not in tasks:
                tasks.append(name)
    return {
        track: Track(track, tuple(names), tuple(tasks))
        for track, (names, tasks) in found.items()
    }


@dataclass(frozen=True)
class TaskOutcome:
    """One meta-test task's outcome before binning: an input of `make_result`.

    Attributes:
        dataset, split: the task (its name in the file is `dataset/split`).
        summary: `vsml_bench.evaluation.summarise` of the task's per-step values.
        step_accuracy: mean accuracy over episodes at each step, [T].
        vs_adam: `paired_difference` against online Adam on the same streams, or None.
    """

    dataset: str
    split: str
    summary: Mapping[str, float]
    step_accuracy: np.ndarray
    vs_adam: Mapping[str, float] | None = None

    @classmethod
    def from_per_step(
        cls,
        dataset: str,
        split: str,
        loss: np.ndarray,
        correct: np.ndarray,
        adam_correct: np.ndarray | None = None,
    ) -> TaskOutcome:
        """The outcome of `meta_test`'s `loss` and `correct` arrays, [N, T] each.

        `adam_correct` ([N, T]) is online Adam's `correct` on the same episodes.
        """
        from vsml_bench.evaluation import summarise

        correct = np.asarray(correct, np.float64)
        vs_adam = None
        if adam_correct is not None:
            vs_adam = paired_difference(correct, adam_correct)
        return cls(
            dataset=dataset,
            split=split,
            summary=summarise(np.asarray(loss, np.float64), correct),
            step_accuracy=correct.mean(axis=0),
            vs_adam=vs_adam,
        )


def paired_difference(correct: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Accuracy minus a reference's accuracy on the same episodes, with a 95% interval.

    Args:
        correct, reference: [N, T] per-step correctness of two learners on identical
            episodes (N >= 2).
    Returns:
        `accuracy` (mean over episodes of the per-episode difference) and
        `accuracy_ci95` (1.96 standard errors of that mean). Pairing by episode removes
        the variance that both learners share through the episode's difficulty.
    """
    correct = np.asarray(correct, np.float64)
    reference = np.asarray(reference, np.float64)
    if correct.shape != reference.shape or correct.ndim != 2:
        raise UserError(
            f"paired difference: shapes {correct.shape} and {reference.shape} must "
            "be equal [episodes, steps]"
        )
    if correct.shape[0] < 2:
        raise UserError("paired difference: needs at least 2 episodes for an interval")
    diff = correct.mean(axis=1) - reference.mean(axis=1)
    sem = diff.std(ddof=1) / math.sqrt(len(diff))
    return {"accuracy": float(diff.mean()), "accuracy_ci95": float(1.96 * sem)}


def bin_curve(step_accuracy: np.ndarray, points: int = MAX_CURVE_POINTS) -> dict:
    """Mean accuracy over contiguous bins of steps.

    Args:
        step_accuracy: [T] accuracy at each step.
        points: the most bins; T steps give min(T, points) bins of nearly equal size.
    Returns:
        `steps`: the last step (1-based) of each bin; `accuracy`: the bin's mean,
        rounded to 4 decimals (the curve is for plotting).
    """
    values = np.asarray(step_accuracy, np.float64).reshape(-1)
    if values.size == 0:
        raise UserError("accuracy curve: no steps")
    bins = np.array_split(np.arange(values.size), min(values.size, points))
    return {
        "steps": [int(b[-1]) + 1 for b in bins],
        "accuracy": [round(float(values[b].mean()), 4) for b in bins],
    }


def hash_config(config: Mapping[str, Any]) -> str:
    """The hash `vsml_bench.config.config_hash` gives the config this dict came from."""
    text = json.dumps(config, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def utc_now() -> str:
    """The current time as ISO 8601 UTC with a `Z` suffix, to the second."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_SUMMARY_FIELDS = (
    "accuracy",
    "accuracy_ci95",
    "accuracy_last",
    "accuracy_last_ci95",
    "cross_entropy",
    "cross_entropy_ci95",
)


def _json_ready(value: Any, where: str) -> Any:
    """A copy of `value` as plain JSON data (tuples become lists)."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as e:
        raise UserError(f"{where}: not JSON data ({e})") from e


def make_result(
    *,
    learner_name: str,
    learner_options: Mapping[str, Any],
    num_meta_params: int,
    learner_source: str,
    config: Mapping[str, Any] | None,
    method: str,
    meta_episodes: int,
    meta_steps: int,
    wall_time_s: float,
    hardware: str,
    from_checkpoint: str | None,
    track: str,
    suite: str | None,
    seed: int,
    episodes: int,
    steps: int,
    tasks: Sequence[TaskOutcome],
    created: str | None = None,
    package_version: str | None = None,
) -> dict:
    """A validated results document.

    Args:
        learner_name: as given to `make_learner` (a built-in name, a plug-in name or
            `module:attribute`).
        learner_options: the learner's options (JSON-ready values).
        num_meta_params: the learner's meta-parameter count.
        learner_source: "builtin" or "plugin".
        config: the meta-training config (`vsml_bench.config.to_dict`), or None.
        method: "es", "gradient", "cloning" or "none" (no meta-training).
        meta_episodes: episodes run during meta-training (all population members).
        meta_steps: steps run during meta-training (the sum of the episode lengths).
        wall_time_s: meta-training wall time.
        hardware: the meta-training machine in one line.
        from_checkpoint: the checkpoint the meta-parameters came from, or None.
        track, suite: the leaderboard track, and the suite meta-trained on (or None).
        seed, episodes, steps: the meta-test protocol (episode length `steps`).
        tasks: one outcome per meta-test task.
        created: ISO 8601 UTC time (default: now).
        package_version: default: this package's version.
    Returns:
        The document, already checked by `validate_result`.
    """
    if package_version is None:
        from vsml_bench import __version__ as package_version
    entries = []
    for outcome in tasks:
        summary = outcome.summary
        for name in ("accuracy", "accuracy_last", "cross_entropy"):
            if not math.isfinite(summary[name + "_ci95"]):
                raise UserError(
                    f"task {outcome.dataset}/{outcome.split}: {name}_ci95 is "
                    f"{summary[name + '_ci95']}; a 95% interval needs >= 2 episodes"
                )
        metrics = {name: float(summary[name]) for name in _SUMMARY_FIELDS}
        metrics["curve"] = bin_curve(outcome.step_accuracy)
        metrics["vs_adam"] = (
            None
            if outcome.vs_adam is None
            else {
                "accuracy": float(outcome.vs_adam["accuracy"]),
                "accuracy_ci95": float(outcome.vs_adam["accuracy_ci95"]),
            }
        )
        entries.append(
            {
                "task": f"{outcome.dataset}/{outcome.split}",
                "dataset": outcome.dataset,
                "split": outcome.split,
                "metrics": metrics,
            }
        )
    config = None if config is None else _json_ready(config, "config")
    result = {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "package_version": package_version,
        "created": created or utc_now(),
        "learner": {
            "name": learner_name,
            "options": _json_ready(dict(learner_options), "learner_options"),
            "num_meta_params": int(num_meta_params),
            "source": learner_source,
        },
        "config": config,
        "config_hash": None if config is None else hash_config(config),
        "meta_training": {
            "method": method,
            "episodes": int(meta_episodes),
            "steps": int(meta_steps),
            "wall_time_s": float(wall_time_s),
            "hardware": hardware,
            "from_checkpoint": from_checkpoint,
        },
        "track": track,
        "suite": suite,
        "protocol": {"seed": int(seed), "episodes": int(episodes), "steps": int(steps)},
        "tasks": entries,
    }
    return validate_result(result)


# Checkers: each takes a value and where it is (e.g. `tasks[0].metrics.accuracy`) and
# raises a UserError saying what is wrong with it.
_Check = Callable[[Any, str], None]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _obj(fields: dict[str, _Check]) -> _Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected an object, got {_kind(value)}")
        unknown = sorted(set(value) - set(fields), key=str)
        if unknown:
            raise UserError(
                f"{where}: unknown field {_shown(unknown[0])}; the fields are "
                f"{', '.join(fields)}"
            )
        missing = [name for name in fields if name not in value]
        if missing:
            raise UserError(f"{where}: missing field {missing[0]!r}")
        for name, field_check in fields.items():
            field_check(value[name], f"{where}.{name}")

    return check


def _nullable(inner: _Check) -> _Check:
    def check(value: Any, where: str) -> None:
        if value is not None:
            inner(value, where)

    return check


def _integer(low: int = 0, high: int = _MAX_INT, what: str = "a count") -> _Check:
    def check(value: Any, where: str) -> None:
        if type(value) is not int:
            raise UserError(f"{where}: expected an integer, got {_kind(value)}")
        if not low <= value <= high:
            raise UserError(f"{where}: {value} is outside [{low}, {high}] ({what})")

    return check


def _number(low: float, high: float = math.inf, what: str = "") -> _Check:
    def check(value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected a number, got {_kind(value)}")
        if not math.isfinite(value):
            raise UserError(f"{where}: {value} is not a finite number")
        if not low <= value <= high:
            upper = "" if high == math.inf else f", {high}"
            bounds = f"[{low}{upper}]" if upper else f">= {low}"
            raise UserError(
                f"{where}: {value} is out of range; {what} must be {bounds}"
            )

    return check


def _text(max_length: int) -> _Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {_kind(value)}")
        if not value or not value.strip() or value != value.strip():
            raise UserError(
                f"{where}: {_shown(value)} must be non-empty, without leading or "
                "trailing spaces"
            )
        if len(value) > max_length:
            raise UserError(f"{where}: longer than {max_length} characters")
        if not value.isprintable():
            raise UserError(
                f"{where}: {_shown(value)} contains control characters; only "
                "printable text is accepted"
            )

    return check


def _pattern(regex: re.Pattern, what: str) -> _Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {_kind(value)}")
        if not regex.fullmatch(value):
            raise UserError(f"{where}: {_shown(value)} is not {what}")

    return check


def _choice(choices: Sequence[Any]) -> _Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, (str, int)) or value not in choices:
            accepted = ", ".join(repr(c) for c in choices)
            raise UserError(f"{where}: {_shown(value)} is not one of {accepted}")

    return check


def _list(item: _Check, min_length: int, max_length: int) -> _Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise UserError(f"{where}: expected a list, got {_kind(value)}")
        if not min_length <= len(value) <= max_length:
            raise UserError(
                f"{where}: has {len(value)} entries; between {min_length} and "
                f"{max_length} are accepted"
            )
        for i, entry in enumerate(value):
            item(entry, f"{where}[{i}]")

    return check


_NAME = _pattern(
    _IDENTIFIER, "a plain name (letters, digits, '_', '.', '-'; at most 64)"
)


def _free(value: Any, where: str, depth: int = 0) -> None:
    """Free-form JSON data (options, config): plain keys, finite numbers, short text."""
    if depth > _MAX_FREE_DEPTH:
        raise UserError(f"{where}: nested deeper than {_MAX_FREE_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        _number(-math.inf)(value, where)
        if isinstance(value, int) and abs(value) > _MAX_INT:
            raise UserError(f"{where}: {value} is larger than 2**53 in magnitude")
    elif isinstance(value, str):
        if len(value) > 1000 or not value.isprintable():
            raise UserError(
                f"{where}: strings must be printable and at most 1000 characters"
            )
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _free(item, f"{where}[{i}]", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _NAME(key, f"{where} key")
            _free(item, f"{where}.{key}", depth + 1)
    else:
        raise UserError(f"{where}: {_kind(value)} is not JSON data")


def _free_object(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected an object, got {_kind(value)}")
    _free(value, where)


def _timestamp(value: Any, where: str) -> None:
    what = "an ISO 8601 UTC time like 2025-01-31T12:00:00Z"
    _pattern(_TIMESTAMP, what)(value, where)
    try:
        datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError as e:
        raise UserError(f"{where}: {value!r} is not {what} ({e})") from e


_ACCURACY = _number(0.0, 1.0, "an accuracy")
_ACCURACY_CI = _number(0.0, 1.0, "an accuracy interval's half-width")
_TASK_NAME = re.compile(_IDENTIFIER.pattern + "/" + _IDENTIFIER.pattern)

_LEARNER = _obj(
    {
        "name": _text(100),
        "options": _free_object,
        "num_meta_params": _integer(what="a parameter count"),
        "source": _choice(SOURCES),
    }
)
_META_TRAINING = _obj(
    {
        "method": _choice(METHODS),
        "episodes": _integer(what="an episode count"),
        "steps": _integer(what="a step count"),
        "wall_time_s": _number(0.0, what="a wall time"),
        "hardware": _text(200),
        "from_checkpoint": _nullable(_text(300)),
    }
)
_PROTOCOL = _obj(
    {
        "seed": _integer(0, 2**32 - 1, "a seed"),
        "episodes": _integer(2, 10**7, "episodes; intervals need >= 2"),
        "steps": _integer(1, 10**8, "an episode length"),
    }
)
_CURVE = _obj(
    {
        "steps": _list(_integer(1, 10**8, "a step"), 1, MAX_CURVE_POINTS),
        "accuracy": _list(_ACCURACY, 1, MAX_CURVE_POINTS),
    }
)
_VS_ADAM = _obj(
    {
        "accuracy": _number(-1.0, 1.0, "an accuracy difference"),
        "accuracy_ci95": _number(0.0, 2.0, "a difference's half-width"),
    }
)
_METRICS = _obj(
    {
        "accuracy": _ACCURACY,
        "accuracy_ci95": _ACCURACY_CI,
        "accuracy_last": _ACCURACY,
        "accuracy_last_ci95": _ACCURACY_CI,
        "cross_entropy": _number(0.0, what="a cross-entropy"),
        "cross_entropy_ci95": _number(0.0, what="a cross-entropy's half-width"),
        "curve": _CURVE,
        "vs_adam": _nullable(_VS_ADAM),
    }
)
_TASK = _obj(
    {
        "task": _pattern(_TASK_NAME, "a task name dataset/split"),
        "dataset": _NAME,
        "split": _NAME,
        "metrics": _METRICS,
    }
)
_SCHEMA = _obj(
    {
        "schema": _choice([SCHEMA_ID]),
        "schema_version": _choice([SCHEMA_VERSION]),
        "package_version": _pattern(_VERSION, "a version like 0.1.0"),
        "created": _timestamp,
        "learner": _LEARNER,
        "config": _nullable(_free_object),
        "config_hash": _nullable(_pattern(_HASH, "16 lowercase hex digits")),
        "meta_training": _META_TRAINING,
        "track": _NAME,
        "suite": _nullable(_NAME),
        "protocol": _PROTOCOL,
        "tasks": _list(_TASK, 1, MAX_TASKS),
    }
)


def _check_consistency(data: dict, where: str) -> None:
    """Rules that relate fields to each other and to the task registry."""
    config, config_hash = data["config"], data["config_hash"]
    if config is None and config_hash is not None:
        raise UserError(f"{where}.config_hash: must be null when config is null")
    if config is not None and config_hash != hash_config(config):
        raise UserError(
            f"{where}.config_hash: {config_hash!r} is not the hash of config "
            f"({hash_config(config)!r})"
        )

    meta = data["meta_training"]
    if meta["method"] == "none" and (meta["episodes"] or meta["steps"]):
        raise UserError(
            f"{where}.meta_training: method 'none' must have 0 episodes and 0 steps"
        )
    if meta["method"] != "none" and not 1 <= meta["episodes"] <= meta["steps"]:
        raise UserError(
            f"{where}.meta_training: {meta['episodes']} episodes of "
            f"{meta['steps']} steps in all; method {meta['method']!r} needs at least "
            "one episode and at least one step per episode"
        )

    if data["learner"]["source"] == "builtin":
        from vsml_bench.registry import BUILTIN_LEARNERS

        name = data["learner"]["name"]
        if name not in BUILTIN_LEARNERS:
            raise UserError(
                f"{where}.learner.name: {name!r} is not a built-in learner "
                f"({', '.join(BUILTIN_LEARNERS)}); use source 'plugin' for others"
            )

    known = tracks()
    track = data["track"]
    if track not in known:
        raise UserError(
            f"{where}.track: unknown track {track!r}; known tracks: {', '.join(known)}"
        )
    suite = data["suite"]
    if suite is not None and suite not in known[track].suites:
        raise UserError(
            f"{where}.suite: {suite!r} is not a suite of track {track!r} "
            f"({', '.join(known[track].suites)})"
        )

    seen = set()
    for i, entry in enumerate(data["tasks"]):
        at = f"{where}.tasks[{i}]"
        name = entry["task"]
        if name != f"{entry['dataset']}/{entry['split']}":
            raise UserError(
                f"{at}.task: {name!r} must be dataset/split "
                f"({entry['dataset']}/{entry['split']})"
            )
        if name not in known[track].tasks:
            raise UserError(
                f"{at}.task: {name!r} is not a meta-test task of track {track!r} "
                f"({', '.join(known[track].tasks)})"
            )
        if name in seen:
            raise UserError(f"{at}.task: {name!r} appears twice")
        seen.add(name)

        curve = entry["metrics"]["curve"]
        if len(curve["steps"]) != len(curve["accuracy"]):
            raise UserError(
                f"{at}.metrics.curve: {len(curve['steps'])} steps but "
                f"{len(curve['accuracy'])} accuracies; the lengths must match"
            )
        steps = curve["steps"]
        if any(a >= b for a, b in zip(steps, steps[1:])):
            raise UserError(f"{at}.metrics.curve.steps: must be strictly increasing")
        if steps[-1] > data["protocol"]["steps"]:
            raise UserError(
                f"{at}.metrics.curve.steps: step {steps[-1]} is past the episode "
                f"length {data['protocol']['steps']}"
            )


def validate_result(data: Any, where: str = "result") -> dict:
    """Check a parsed results document; return it unchanged or raise `UserError`.

    Args:
        data: the parsed JSON.
        where: how messages name the document (e.g. its file name).
    """
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a JSON object, got {_kind(data)}")
    if data.get("schema") != SCHEMA_ID:
        raise UserError(
            f"{where}.schema: {_shown(data.get('schema'))} is not {SCHEMA_ID!r}; "
            "is this a vsml-bench results file?"
        )
    if data.get("schema_version") != SCHEMA_VERSION or isinstance(
        data.get("schema_version"), bool
    ):
        raise UserError(
            f"{where}.schema_version: {_shown(data.get('schema_version'))} is not "
            f"supported; this vsml-bench reads version {SCHEMA_VERSION}"
        )
    _SCHEMA(data, where)
    _check_consistency(data, where)
    return data


def _refuse_constant(name: str) -> None:
    raise UserError(f"{name} is not a finite number; JSON numbers must be finite")


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    result = {}
    for key, value in pairs:
        if key in result:
            raise UserError(f"the key {key!r} appears twice in one object")
        result[key] = value
    return result


def parse_result(text: bytes | str, where: str = "result") -> dict:
    """Parse and validate the bytes of a results file."""
    if len(text) > MAX_FILE_BYTES:
        raise UserError(f"{where}: larger than {MAX_FILE_BYTES} bytes")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{where}: not UTF-8 text ({e})") from e
    try:
        data = json.loads(
            text,
            parse_constant=_refuse_constant,
            object_pairs_hook=_refuse_duplicates,
        )
    except json.JSONDecodeError as e:
        raise UserError(f"{where}: invalid JSON ({e})") from e
    except UserError as e:
        raise UserError(f"{where}: {e}") from e
    except RecursionError as e:
        raise UserError(f"{where}: nested too deeply") from e
    return validate_result(data, where)


def load_result(path: str | Path) -> dict:
    """Read and validate a results file; the size is checked before it is read."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such results file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UserError(
            f"{path}: {size} bytes; results files are at most {MAX_FILE_BYTES} bytes"
        )
    with path.open("rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    return parse_result(data, str(path))


def dumps_result(result: dict) -> str:
    """The text of a results file (validated): indented JSON ending in a newline."""
    validate_result(result)
    text = json.dumps(result, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    # One line per list of numbers (the curves) instead of one line per number.
    text = _NUMBER_LIST.sub(lambda m: "[" + " ".join(m[1].split()) + "]", text)
    if len(text.encode()) > MAX_FILE_BYTES:
        raise UserError(f"result: the file would exceed {MAX_FILE_BYTES} bytes")
    return text


def write_result(path: str | Path, result: dict) -> None:
    """Validate `result`, then write it atomically (readers see old or new)."""
    from vsml_bench.training.checkpoint import atomic_write_text

    atomic_write_text(Path(path), dumps_result(result))
    # The temporary file was private (0600); a result is meant to be shared.
    Path(path).chmod(0o644)
