"""The meta-test harness: every learner on identical streams, next to online Adam.

`evaluate_learner` meta-tests one learner (built-in, plugged in, or loaded from a
checkpoint) on a list of tasks with a fixed seed, N episodes per task and T steps, and
runs online `adam` (the reference learning rate, the same model family as the reference
baselines: a linear model) on exactly the same episodes, so that every number can be
reported as a difference to Adam with its own confidence interval.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from vsml_bench.errors import UserError
from vsml_bench.evaluation import meta_test
from vsml_bench.learner import Learner, PyTree
from vsml_bench.registry import BUILTIN_LEARNERS, make_learner
from vsml_bench.results import TaskOutcome
from vsml_bench.task import Task
from vsml_bench.training.checkpoint import load_checkpoint

logger = logging.getLogger(__name__)

BASELINE = "adam"


@dataclass
class TaskRun:
    """A learner's per-step results on one task, and Adam's on the same streams.

    Attributes:
        task: the meta-test task.
        loss, correct: [N, T] per-step cross-entropy and correctness.
        baseline_correct: Adam's [N, T] correctness on the same episodes, or None.
    """

    task: Task
    loss: np.ndarray
    correct: np.ndarray
    baseline_correct: np.ndarray | None

    @property
    def name(self) -> str:
        """`dataset/split`, how results name a task."""
        return f"{self.task.dataset}/{self.task.split}"

    def outcome(self) -> TaskOutcome:
        """The summary that goes into a results file."""
        return TaskOutcome.from_per_step(
            self.task.dataset,
            self.task.split,
            self.loss,
            self.correct,
            self.baseline_correct,
        )


def hardware() -> str:
    """A one-line description of where this process computes."""
    devices = jax.devices()
    kind = devices[0].device_kind if devices else "unknown"
    return (
        f"{platform.system()} {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{_cpu_count()} cores, jax {jax.__version__} on {len(devices)} x {kind}"
    )


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


def load_meta_params(path: str | Path, learner: Learner) -> tuple[PyTree, dict]:
    """Meta-parameters from a run folder or a `.safetensors` file, checked by shape."""
    path = Path(path)
    if path.is_dir():
        path = path / "meta_params.safetensors"
    if not path.is_file():
        raise UserError(
            f"checkpoint {path} does not exist (give a run folder or a "
            "meta_params.safetensors file)"
        )
    template = learner.init(jax.random.PRNGKey(0))
    meta_params, metadata = load_checkpoint(path, template)
    for got, want in zip(jax.tree.leaves(meta_params), jax.tree.leaves(template)):
        if np.shape(got) != np.shape(want):
            raise UserError(
                f"checkpoint {path} holds meta-parameters of shape {np.shape(got)} "
                f"where learner {learner.name!r} with these options needs "
                f"{np.shape(want)}"
            )
    return jax.tree.map(np.asarray, meta_params), metadata


def checkpoint_learner(path: str | Path) -> tuple[str, dict[str, Any]]:
    """The learner name and options a checkpoint was trained with (its metadata)."""
    import json

    path = Path(path)
    if path.is_dir():
        path = path / "meta_params.safetensors"
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        meta = json.loads(header["__metadata__"]["vsml_bench"])
        return meta["agent"], dict(meta.get("agent_options", {}))
    except (OSError, KeyError, ValueError) as e:
        raise UserError(
            f"checkpoint {path} does not say which learner it holds ({e}); give --agent"
        ) from e


def evaluate_learner(
    agent: str,
    options: dict[str, Any],
    meta_params: PyTree | None,
    tasks: list[Task],
    episodes: int,
    seed: int,
    with_baseline: bool = True,
    init_seed: int = 0,
) -> list[TaskRun]:
    """Meta-test `agent` on every task (and Adam on the same streams).

    Args:
        agent: learner name or module:attribute.
        options: the learner's options.
        meta_params: frozen theta; None uses the learner's own `init` (untrained, or
            the only choice for learners without meta-parameters).
        tasks: the meta-test tasks.
        episodes: N per task.
        seed: the meta-test seed; every learner sees identical streams for a seed.
        with_baseline: also run online Adam on the same episodes.
        init_seed: seed of `init` when `meta_params` is None.
    """
    outcomes = []
    for task in tasks:
        learner = make_learner(agent, task.spec, **options)
        theta = meta_params
        if theta is None:
            theta = learner.init(jax.random.PRNGKey(init_seed))
        logger.info("meta-testing %s on %s/%s", agent, task.dataset, task.split)
        result = meta_test(learner, theta, task, episodes, seed=seed)
        baseline = None
        if with_baseline:
            if agent == BASELINE and not options:
                baseline = result["correct"]
            else:
                adam = make_learner(BASELINE, task.spec)
                baseline = meta_test(adam, {}, task, episodes, seed=seed)["correct"]
        outcomes.append(TaskRun(task, result["loss"], result["correct"], baseline))
    return outcomes


def with_length(tasks: list[Task], steps: int | None) -> list[Task]:
    """The tasks with episode length `steps` (unchanged where None or few-shot)."""
    if steps is None:
        return list(tasks)
    return [
        t if t.ways is not None else dataclasses.replace(t, episode_length=steps)
        for t in tasks
    ]


def learner_source(agent: str) -> str:
    """ "builtin" for the built-in names, else "plugin"."""
    return "builtin" if agent in BUILTIN_LEARNERS else "plugin"


def plot_curves(outcomes: list[TaskRun], agent: str, path: Path) -> None:
    """Online accuracy against examples seen, one panel per task, Adam drawn too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(outcomes))
    rows = math.ceil(len(outcomes) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False
    )
    for ax, outcome in zip(axes.flat, outcomes):
        steps = outcome.correct.shape[1]
        window = max(1, steps // 25)
        for label, correct in (
            (agent, outcome.correct),
            ("adam (online)", outcome.baseline_correct),
        ):
            if correct is None or (label != agent and agent == BASELINE):
                continue
            curve = _smooth(correct.mean(axis=0), window)
            ax.plot(np.arange(1, steps + 1), curve, label=label)
        chance = 1.0 / outcome.task.episode_classes
        ax.axhline(chance, color="grey", lw=0.8, ls=":", label="chance")
        ax.set_title(outcome.name)
        ax.set_xlabel("examples seen")
        ax.set_ylabel(f"online accuracy (mean of {window})")
        ax.set_ylim(0, 1)
        ax.legend(loc="lower right", fontsize=8)
    for ax in list(axes.flat)[len(outcomes) :]:
        ax.set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (shorter windows at the start)."""
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(1, len(values) + 1)
    start = np.maximum(index - window, 0)
    return (cumulative[index] - cumulative[start]) / (index - start)


PRETRAINED_VSML = "vsml-cloned.safetensors"


def pretrained_path(name: str = PRETRAINED_VSML) -> Path | None:
    """A meta-parameter file shipped with the package, if present."""
    from importlib import resources

    try:
        path = Path(str(resources.files("vsml_bench") / "pretrained" / name))
    except ModuleNotFoundError:
        return None
    return path if path.is_file() else None


def sized_task(name: str, suite) -> Task:
    """Task `name` on its test split, sized like the suite's meta-test tasks.

    The suite's own meta-test task of the same dataset is used where the name is a
    plain dataset; other names (variants) take the suite's input size, output padding
    and episode length.
    """
    from vsml_bench.tasks.catalog import TASKS, make_task

    if name in TASKS and TASKS[name].fields["dataset"] == name:
        for task in suite.meta_test:
            if task.dataset == name:
                return task
    template = suite.meta_test[0]
    fields = {
        "split": "test",
        "grayscale": template.grayscale,
        "resize": template.resize,
        "pad_image": template.pad_image,
        "pad_classes": template.pad_classes,
    }
    base = make_task(name)
    if base.ways is None:
        fields["episode_length"] = template.episode_length
    if template.pad_classes is not None and base.episode_classes > template.pad_classes:
        raise UserError(
            f"task {name!r} has {base.episode_classes} classes, more than the "
            f"{template.pad_classes} outputs of suite {suite.name!r}"
        )
    return make_task(name, **fields)


@dataclass
class Training:
    """How the meta-parameters being tested came about (for the results file)."""

    method: str = "none"
    episodes: int = 0
    steps: int = 0
    wall_time_s: float = 0.0
    config: dict | None = None
    from_checkpoint: str | None = None


def report(
    agent: str,
    options: dict[str, Any],
    meta_params: PyTree | None,
    suite,
    tasks: list[Task],
    episodes: int,
    seed: int,
    out: Path,
    training: Training,
) -> tuple[dict, list[TaskRun]]:
    """Meta-test, then write `results.json` and `curves.png` into `out`.

    Returns:
        The results document and the per-task runs.
    """
    from vsml_bench.results import make_result, write_result

    runs = evaluate_learner(agent, options, meta_params, tasks, episodes, seed)
    learner = make_learner(agent, tasks[0].spec, **options)
    result = make_result(
        learner_name=agent,
        learner_options=options,
        num_meta_params=learner.num_meta_params(),
        learner_source=learner_source(agent),
        config=training.config,
        method=training.method,
        meta_episodes=training.episodes,
        meta_steps=training.steps,
        wall_time_s=training.wall_time_s,
        hardware=hardware(),
        from_checkpoint=training.from_checkpoint,
        track=suite.track,
        suite=suite.name,
        seed=seed,
        episodes=episodes,
        steps=max(t.episode_length for t in tasks),
        tasks=[run.outcome() for run in runs],
    )
    out.mkdir(parents=True, exist_ok=True)
    write_result(out / "results.json", result)
    plot_curves(runs, agent, out / "curves.png")
    logger.info("results in %s", out)
    return result, runs
