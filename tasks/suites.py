"""Named suites: the meta-training and meta-test tasks of the reference experiments.

Kirsch and Schmidhuber (2021), arXiv:2012.14905, meta-train VSML on MNIST with random
projections and meta-test on MNIST and Fashion-MNIST; meta-train on one, all, or all but
one of five datasets and meta-test on six (the dataset generalisation grid); and run
Omniglot 5-way 1-shot. Each suite has a CPU-sized twin (suffix `-cpu`) whose inputs
are at most 64 features (grayscale, resized to 8x8) and whose episodes are at most 500
steps, so that a laptop meta-trains it in minutes.

- `randproj-mnist`: meta-train on MNIST, raw and under 64 fixed random projections
  (T = 500); meta-test on the MNIST and Fashion-MNIST test splits (T = 2,000).
- `grid-<d>` for d in mnist, fashion_mnist, random, emnist, kmnist; `grid-all`;
  `grid-all-but-<d>`: meta-train on one, all five, or four of the grid's datasets;
  meta-test on the six grid datasets (the five and `sum`).
- `omniglot-5way1shot`: background alphabets for meta-training, evaluation alphabets
  for the meta-test.

The full grid pads outputs to 62 classes (EMNIST's count) so that learners with a fixed
output size run on every dataset; the CPU grid keeps 10 outputs and draws 10 of EMNIST's
62 classes per episode.
"""

from __future__ import annotations

from dataclasses import dataclass

from vsml_bench.errors import UserError
from vsml_bench.task import Task

GRID_TRAIN = ("mnist", "fashion_mnist", "random", "emnist", "kmnist")
GRID_TEST = ("mnist", "fashion_mnist", "random", "emnist", "kmnist", "sum")

FULL_TRAIN_LENGTH = 500
FULL_TEST_LENGTH = 2000
CPU_TRAIN_LENGTH = 250
CPU_TEST_LENGTH = 500
CPU_RESIZE = (8, 8)
NUM_FIXED_PROJECTIONS = 64


@dataclass(frozen=True)
class Suite:
    """A meta-training distribution and the held-out tasks of a meta-test.

    Attributes:
        name: registry name.
        description: one line.
        meta_train: tasks episodes are drawn from during meta-training (uniformly).
        meta_test: held-out tasks, each reported on its own.
        track: the leaderboard track this suite belongs to.
    """

    name: str
    description: str
    meta_train: tuple[Task, ...]
    meta_test: tuple[Task, ...]
    track: str


def _sized(cpu: bool, **fields) -> dict:
    if cpu:
        fields.update(grayscale=True, resize=CPU_RESIZE)
    return fields


def _randproj(cpu: bool) -> Suite:
    train_length = CPU_TRAIN_LENGTH if cpu else FULL_TRAIN_LENGTH
    test_length = CPU_TEST_LENGTH if cpu else FULL_TEST_LENGTH
    base = _sized(cpu, dataset="mnist", episode_length=train_length)
    meta_train = (
        Task(**base),
        Task(**base, projection="fixed", num_projections=NUM_FIXED_PROJECTIONS),
    )
    meta_test = tuple(
        Task(**_sized(cpu, dataset=d, split="test", episode_length=test_length))
        for d in ("mnist", "fashion_mnist")
    )
    size = "CPU-sized: 8x8 inputs, " if cpu else ""
    return Suite(
        name="randproj-mnist" + ("-cpu" if cpu else ""),
        description=f"{size}MNIST with random projections -> MNIST, Fashion-MNIST",
        meta_train=meta_train,
        meta_test=meta_test,
        track="randproj" + ("-cpu" if cpu else ""),
    )


def _grid_task(dataset: str, split: str, length: int, cpu: bool) -> Task:
    fields = _sized(cpu, dataset=dataset, split=split, episode_length=length)
    if cpu:
        if dataset == "emnist":
            fields["num_classes"] = 10
        fields["pad_classes"] = 10
    else:
        fields["pad_classes"] = 62
    return Task(**fields)


def _grid(name: str, train: tuple[str, ...], cpu: bool) -> Suite:
    train_length = CPU_TRAIN_LENGTH if cpu else FULL_TRAIN_LENGTH
    test_length = CPU_TEST_LENGTH if cpu else FULL_TEST_LENGTH
    suffix = "-cpu" if cpu else ""
    return Suite(
        name=f"grid-{name}{suffix}",
        description=(
            ("CPU-sized: " if cpu else "")
            + f"meta-train on {', '.join(train)}; "
            + f"meta-test on {len(GRID_TEST)} datasets"
        ),
        meta_train=tuple(_grid_task(d, "train", train_length, cpu) for d in train),
        meta_test=tuple(_grid_task(d, "test", test_length, cpu) for d in GRID_TEST),
        track="grid" + suffix,
    )


def _omniglot(cpu: bool) -> Suite:
    fields = _sized(
        cpu, dataset="omniglot", ways=5, shots=1, queries=1, episode_length=6
    )
    return Suite(
        name="omniglot-5way1shot" + ("-cpu" if cpu else ""),
        description=("CPU-sized: " if cpu else "")
        + "Omniglot 5-way 1-shot, loss on the query",
        meta_train=(Task(**fields),),
        meta_test=(Task(**{**fields, "split": "test"}),),
        track="omniglot" + ("-cpu" if cpu else ""),
    )


def _suites() -> dict[str, Suite]:
    suites = []
    for cpu in (False, True):
        suites.append(_randproj(cpu))
        for d in GRID_TRAIN:
            suites.append(_grid(d, (d,), cpu))
        suites.append(_grid("all", GRID_TRAIN, cpu))
        for d in GRID_TRAIN:
            others = tuple(x for x in GRID_TRAIN if x != d)
            suites.append(_grid(f"all-but-{d}", others, cpu))
        suites.append(_omniglot(cpu))
    return {s.name: s for s in suites}


_SUITES: dict[str, Suite] | None = None


def suites() -> dict[str, Suite]:
    """Every named suite (built on first use: building checks the datasets exist)."""
    global _SUITES
    if _SUITES is None:
        _SUITES = _suites()
    return _SUITES


def suite_names() -> list[str]:
    """Every suite name."""
    return list(suites())


def get_suite(name: str) -> Suite:
    """The suite `name`; a `UserError` lists the known ones."""
    if name not in suites():
        raise UserError(
            f"unknown suite {name!r}; known suites: {', '.join(suites())} "
            "(see `vsml-bench tasks`)"
        )
    return suites()[name]
