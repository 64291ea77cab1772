"""The named built-in tasks and their Gymnasium ids.

Every dataset gives a base task and four variants:

| suffix | Gymnasium id suffix | what changes |
| --- | --- | --- |
| (none) | `-v0` | the dataset as it is, 500-step episodes of the training split |
| `-randproj` | `-RandProj-v0` | a fresh random projection of the input per episode |
| `-permpix` | `-PermPix-v0` | a fresh pixel permutation per episode |
| `-permlabels` | `-PermLabels-v0` | a fresh permutation of the labels per episode |
| `-cpu` | `-CPU-v0` | grayscale, resized to 8x8 (64 features): laptop-sized |

Omniglot's tasks are 5-way 1-shot episodes (five labelled examples, then one query).
Any field of `vsml_bench.task.Task` can be overridden by keyword, e.g.
`make_task("mnist", split="test", episode_length=2000)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vsml_bench.errors import UserError
from vsml_bench.options import build
from vsml_bench.task import Task

CPU_RESIZE = (8, 8)


@dataclass(frozen=True)
class TaskEntry:
    """A named task: its `Task` fields, Gymnasium id and a one-line description."""

    name: str
    gym_id: str
    description: str
    fields: dict[str, Any] = field(default_factory=dict)


_DATASETS = {
    "mnist": "MNIST",
    "fashion_mnist": "FashionMNIST",
    "kmnist": "KMNIST",
    "emnist": "EMNIST",
    "cifar10": "CIFAR10",
    "svhn": "SVHN",
    "omniglot": "Omniglot",
    "random": "Random",
    "sum": "Sum",
}

_VARIANTS = {
    "": ("", "", {}),
    "-randproj": (
        "-RandProj",
        "fresh random projection per episode",
        {"projection": "fresh"},
    ),
    "-permpix": (
        "-PermPix",
        "fresh pixel permutation per episode",
        {"permute_pixels": True},
    ),
    "-permlabels": (
        "-PermLabels",
        "fresh label permutation per episode",
        {"permute_labels": True},
    ),
    "-cpu": (
        "-CPU",
        "grayscale, resized to 8x8",
        {"grayscale": True, "resize": CPU_RESIZE},
    ),
}


def _base_fields(dataset: str) -> dict[str, Any]:
    if dataset == "omniglot":
        return {"ways": 5, "shots": 1, "queries": 1, "episode_length": 6}
    return {"episode_length": 500}


def _entries() -> dict[str, TaskEntry]:
    entries = {}
    for dataset, pretty in _DATASETS.items():
        for suffix, (gym_suffix, what, extra) in _VARIANTS.items():
            name = dataset + suffix
            description = pretty if not what else f"{pretty}, {what}"
            if dataset == "omniglot":
                description += " (5-way 1-shot)"
            entries[name] = TaskEntry(
                name=name,
                gym_id=f"vsml_bench/{pretty}{gym_suffix}-v0",
                description=description,
                fields={"dataset": dataset, **_base_fields(dataset), **extra},
            )
    return entries


TASKS: dict[str, TaskEntry] = _entries()


def task_names() -> list[str]:
    """Every built-in task name."""
    return list(TASKS)


def make_task(name: str, **overrides: Any) -> Task:
    """The built-in task `name`, with any `Task` field overridden by keyword."""
    if name not in TASKS:
        raise UserError(
            f"unknown task {name!r}; known tasks: {', '.join(TASKS)} "
            "(see `vsml-bench tasks`)"
        )
    fields = {**TASKS[name].fields, **overrides}
    return build(Task, f"task {name!r}", **fields)
