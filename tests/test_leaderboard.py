"""The leaderboard pages: ranking, intervals, escaping, heat maps, stale-page checks."""

from __future__ import annotations

import html
import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from vsml_bench.cli import main
from vsml_bench.errors import UserError
from vsml_bench.leaderboard import (
    build_leaderboard,
    check_leaderboard,
    heat_map_values,
    load_entries,
)
from vsml_bench.registry import BUILTIN_LEARNERS
from vsml_bench.results import TaskOutcome, make_result, tracks, write_result

EVIL = "<script>alert(1)</script>"
EPISODES, STEPS = 4, 60


def _outcomes(name: str, accuracies: dict[str, float], seed: int):
    outcomes = []
    for i, task in enumerate(sorted(accuracies)):
        rng = np.random.default_rng(seed * 100 + i)
        # Episode difficulty varies, so that the intervals are not all alike.
        p = accuracies[task] + np.linspace(-0.05, 0.05, EPISODES)[:, None]
        correct = (rng.random((EPISODES, STEPS)) < p).astype(np.float32)
        loss = rng.random((EPISODES, STEPS)).astype(np.float32)
        # Adam's streams depend on the task only: identical for every learner.
        adam_rng = np.random.default_rng(1000 + i)
        adam = (adam_rng.random((EPISODES, STEPS)) < 0.5).astype(np.float32)
        dataset, split = task.split("/")
        if name == "adam":
            adam = correct
        outcomes.append(TaskOutcome.from_per_step(dataset, split, loss, correct, adam))
    return outcomes


def synthetic_result(
    name: str,
    track: str,
    suite: str | None,
    accuracies: dict[str, float],
    seed: int,
    options: dict | None = None,
) -> dict:
    """A result whose task accuracies are near `accuracies` (task -> accuracy)."""
    builtin = name in BUILTIN_LEARNERS
    return make_result(
        learner_name=name,
        learner_options=options or {},
        num_meta_params=0 if suite is None else 1000 + seed,
        learner_source="builtin" if builtin else "plugin",
        config=None,
        method="none" if suite is None else "es",
        meta_episodes=0 if suite is None else 128_000,
        meta_steps=0 if suite is None else 128_000 * 250,
        wall_time_s=0.0 if suite is None else 5400.0,
        hardware="Linux x86_64, 2 cores, jax cpu",
        from_checkpoint=None,
        track=track,
        suite=suite,
        seed=0,
        episodes=EPISODES,
        steps=STEPS,
        tasks=_outcomes(name, accuracies, seed),
        created="2025-01-31T12:00:00Z",
    )


def _grid(base: float) -> dict[str, float]:
    tasks = tracks()["grid-cpu"].tasks
    return {t: min(0.95, base + 0.05 * i) for i, t in enumerate(tasks)}


SYNTHETIC = {
    "adam.json": ("adam", "randproj-cpu", None, {"mnist/test": 0.55}, 1),
    "vsml.json": ("vsml", "randproj-cpu", "randproj-mnist-cpu", {}, 2),
    "evil.json": (EVIL, "randproj-cpu", "randproj-mnist-cpu", {}, 3),
    "partial.json": ("meta_rnn", "randproj-cpu", "randproj-mnist-cpu", {}, 4),
    "grid-vsml-mnist.json": ("vsml", "grid-cpu", "grid-mnist-cpu", _grid(0.5), 5),
    "grid-vsml-all.json": ("vsml", "grid-cpu", "grid-all-cpu", _grid(0.6), 6),
    "grid-hebbian.json": ("hebbian", "grid-cpu", "grid-mnist-cpu", _grid(0.3), 7),
}
RANDPROJ_ACCURACY = {
    "adam.json": {"mnist/test": 0.55, "fashion_mnist/test": 0.5},
    "vsml.json": {"mnist/test": 0.8, "fashion_mnist/test": 0.65},
    "evil.json": {"mnist/test": 0.3, "fashion_mnist/test": 0.35},
    # The best accuracy, but only one of the track's two tasks.
    "partial.json": {"mnist/test": 0.95},
}


def write_synthetic_results(folder: Path) -> None:
    """Seven result files: four on randproj-cpu (one incomplete), three on grid-cpu."""
    for file, (name, track, suite, accuracies, seed) in SYNTHETIC.items():
        accuracies = RANDPROJ_ACCURACY.get(file, accuracies)
        result = synthetic_result(name, track, suite, accuracies, seed)
        write_result(folder / "results" / file, result)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("leaderboard")
    write_synthetic_results(folder)
    build_leaderboard(folder)
    return folder


@pytest.fixture
def copy(built, tmp_path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(built, folder)
    return folder


def _files(folder: Path) -> dict[str, dict]:
    return {
        p.name: json.loads(p.read_text()) for p in (folder / "results").glob("*.json")
    }


def _table(page: str, track: str) -> str:
    start = page.index(f'<table class="ranking" data-track="{track}">')
    return page[start : page.index("</table>", start)]


def test_ranking_follows_mean_accuracy_and_incomplete_entries_come_last(built):
    results = _files(built)
    task_names = tracks()["randproj-cpu"].tasks
    complete, incomplete = [], []
    for file, result in results.items():
        if result["track"] != "randproj-cpu":
            continue
        accuracy = {t["task"]: t["metrics"]["accuracy"] for t in result["tasks"]}
        if all(t in accuracy for t in task_names):
            mean = sum(accuracy[t] for t in task_names) / len(task_names)
            complete.append((-mean, result["learner"]["name"]))
        else:
            incomplete.append(result["learner"]["name"])
    expected = [name for _, name in sorted(complete)] + incomplete
    assert expected == ["vsml", "adam", EVIL, "meta_rnn"]

    table = _table((built / "index.html").read_text(), "randproj-cpu")
    rows = re.findall(r'<tr><td class="num">([^<]*)</td><td>([^<]*)', table)
    assert [html.unescape(name) for _, name in rows] == expected
    assert [rank for rank, _ in rows] == ["1", "2", "3", "–"]

    readme = (built / "README.md").read_text()
    section = readme[readme.index("## Track randproj-cpu") :]
    positions = [section.index(f"| {n} |") for n in ("1", "2", "3")]
    assert positions == sorted(positions)


def test_every_accuracy_is_shown_with_its_interval_and_the_adam_difference(built):
    page = html.unescape((built / "index.html").read_text())
    readme = (built / "README.md").read_text()
    for result in _files(built).values():
        for task in result["tasks"]:
            metrics = task["metrics"]
            shown = f"{metrics['accuracy']:.3f} ± {metrics['accuracy_ci95']:.3f}"
            assert shown in page
            assert shown in readme
            vs = metrics["vs_adam"]
            # A difference that rounds to zero is shown as +0.000, never -0.000.
            difference = round(vs["accuracy"], 3) + 0.0
            assert f"vs Adam {difference:+.3f} ± {vs['accuracy_ci95']:.3f}" in page
    assert "-0.000" not in page
    assert "(incomplete)" in page
    assert "es: 128k episodes, 32M steps" in page
    assert "90 min on Linux x86_64, 2 cores, jax cpu" in page


def test_learner_names_are_escaped_everywhere(built):
    page = (built / "index.html").read_text()
    assert EVIL not in page
    assert "<script" not in page.lower()
    assert html.escape(EVIL) in page
    assert EVIL not in (built / "README.md").read_text()
    for svg in (built / "plots").glob("*.svg"):
        assert "<script" not in svg.read_text().lower()


def test_plots_are_made_and_referenced(built):
    plots = sorted(p.name for p in (built / "plots").glob("*.svg"))
    curves = [p for p in plots if p.startswith("curves-")]
    heat_maps = [p for p in plots if p.startswith("heatmap-")]
    assert curves == sorted(
        [
            "curves-randproj-cpu-mnist-test.svg",
            "curves-randproj-cpu-fashion_mnist-test.svg",
        ]
        + [f"curves-grid-cpu-{t.replace('/', '-')}.svg" for t in _grid(0)]
    )
    # One heat map per grid learner (vsml has two suites, hebbian one).
    assert len(heat_maps) == 2
    assert all(
        p.startswith(("heatmap-grid-cpu-vsml-", "heatmap-grid-cpu-hebb"))
        for p in heat_maps
    )
    page = (built / "index.html").read_text()
    readme = (built / "README.md").read_text()
    for name in plots:
        ET.parse(built / "plots" / name)
        assert f'src="plots/{name}"' in page
        assert f"(plots/{name})" in readme
        text = (built / "plots" / name).read_text()
        assert "<dc:date>" not in text


def test_heat_map_rows_are_suites_and_columns_datasets(built):
    track = tracks()["grid-cpu"]
    entries = [e for e in load_entries(built) if e.result["learner"]["name"] == "vsml"]
    entries = [e for e in entries if e.result["track"] == "grid-cpu"]
    suites, values = heat_map_values(track, entries)
    assert suites == ["grid-mnist-cpu", "grid-all-cpu"]
    results = _files(built)
    for i, file in enumerate(["grid-vsml-mnist.json", "grid-vsml-all.json"]):
        by_task = {t["task"]: t["metrics"]["accuracy"] for t in results[file]["tasks"]}
        np.testing.assert_allclose(values[i], [by_task[t] for t in track.tasks])


def test_a_fresh_build_is_byte_identical_wherever_it_runs(copy):
    # `copy` lies at another path than `built`: the pages must not depend on it.
    assert check_leaderboard(copy) == []


def test_stale_pages_are_detected_and_rebuilt(built, copy):
    readme = copy / "README.md"
    readme.write_text(readme.read_text().replace("vsml", "VSML"))
    (copy / "plots" / "curves-randproj-cpu-mnist-test.svg").unlink()
    (copy / "plots" / "curves-omniglot-cpu-omniglot-test.svg").write_text("<svg/>")
    assert check_leaderboard(copy) == [
        "README.md is out of date",
        "plots/curves-randproj-cpu-mnist-test.svg is missing",
        "plots/curves-omniglot-cpu-omniglot-test.svg is stale: no result file "
        "produces it",
    ]

    build_leaderboard(copy)
    files = sorted(p.relative_to(built) for p in built.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file())
    for name in files:
        assert (built / name).read_bytes() == (copy / name).read_bytes(), name


def test_a_new_result_makes_the_pages_out_of_date(copy):
    result = synthetic_result(
        "fwp", "omniglot-cpu", "omniglot-5way1shot-cpu", {"omniglot/test": 0.4}, 9
    )
    write_result(copy / "results" / "fwp.json", result)
    assert check_leaderboard(copy) == [
        "README.md is out of date",
        "index.html is out of date",
        "plots/curves-omniglot-cpu-omniglot-test.svg is missing",
    ]


def test_a_removed_result_leaves_stale_plots(copy):
    for file in ("grid-vsml-mnist.json", "grid-vsml-all.json", "grid-hebbian.json"):
        (copy / "results" / file).unlink()
    differences = check_leaderboard(copy)
    assert differences[:2] == ["README.md is out of date", "index.html is out of date"]
    assert len(differences) == 2 + 6 + 2
    assert all(
        d.endswith("is stale: no result file produces it") for d in differences[2:]
    )


def test_duplicate_entries_are_rejected_naming_both_files(copy):
    shutil.copy(copy / "results" / "vsml.json", copy / "results" / "vsml-again.json")
    with pytest.raises(UserError) as error:
        build_leaderboard(copy)
    message = str(error.value)
    assert "results/vsml-again.json and" in message
    assert "results/vsml.json both hold" in message
    assert "learner 'vsml'" in message and "keep one of them" in message


def test_same_learner_with_other_options_is_a_separate_entry(tmp_path):
    for file, options in (("fwp.json", {}), ("fwp-16.json", {"hidden": 16})):
        result = synthetic_result(
            "fwp",
            "omniglot-cpu",
            "omniglot-5way1shot-cpu",
            {"omniglot/test": 0.4},
            9,
            options=options,
        )
        write_result(tmp_path / "results" / file, result)
    build_leaderboard(tmp_path)
    table = _table((tmp_path / "index.html").read_text(), "omniglot-cpu")
    assert "<td>fwp (hidden=16)</td>" in table and "<td>fwp</td>" in table


def test_an_invalid_result_is_rejected_naming_the_file(copy):
    path = copy / "results" / "broken.json"
    data = json.loads((copy / "results" / "vsml.json").read_text())
    data["tasks"][0]["metrics"]["accuracy"] = 1.2
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"broken\.json\.tasks\[0\]\.metrics\.accuracy"):
        build_leaderboard(copy)


def test_an_empty_leaderboard_says_so(tmp_path):
    build_leaderboard(tmp_path)
    assert "No results yet" in (tmp_path / "README.md").read_text()
    assert "No results yet" in (tmp_path / "index.html").read_text()
    assert check_leaderboard(tmp_path) == []


def test_the_committed_leaderboard_is_up_to_date():
    folder = Path(__file__).resolve().parents[1] / "leaderboard"
    assert check_leaderboard(folder) == [], "run `vsml-bench leaderboard`"


def test_command_line_builds_and_checks(tmp_path, capsys):
    result = synthetic_result(
        "fwp", "omniglot-cpu", "omniglot-5way1shot-cpu", {"omniglot/test": 0.4}, 9
    )
    write_result(tmp_path / "results" / "fwp.json", result)
    assert main(["leaderboard", str(tmp_path), "--check"]) == 1
    assert "README.md is missing" in capsys.readouterr().out
    assert main(["leaderboard", str(tmp_path)]) == 0
    assert main(["leaderboard", str(tmp_path), "--check"]) == 0
    (tmp_path / "results" / "bad.json").write_text("{")
    assert main(["leaderboard", str(tmp_path)]) == 2
    assert "invalid JSON" in capsys.readouterr().err
