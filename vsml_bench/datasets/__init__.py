"""Datasets as device arrays: a registry of loaders, loaded once per process.

A dataset is registered by a module of `vsml_bench.tasks` with a `DatasetInfo` whose
`load` returns the raw arrays of a split. `load_dataset` turns them into a `Dataset` of
device arrays, standardised later (at gather time) with the dataset's own pixel mean and
std over its training split, and keeps it for the life of the process.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
from flax import struct

from vsml_bench.errors import UserError

BUILTIN_DATASET_MODULES = (
    "vsml_bench.tasks.mnist",
    "vsml_bench.tasks.kmnist",
    "vsml_bench.tasks.emnist",
    "vsml_bench.tasks.cifar10",
    "vsml_bench.tasks.svhn",
    "vsml_bench.tasks.omniglot",
    "vsml_bench.tasks.synthetic",
)


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is and how to read it.

    Attributes:
        name: registry name, e.g. "mnist".
        num_classes: number of classes C.
        image_shape: (H, W, C_channels) of one example.
        source: one line on where the data comes from.
        load: split -> (images [N, H, W, channels] uint8 or float32, labels int [N]).
        splits: the split names `load` accepts.
        bundled: True when the files ship inside the package (no download needed).
    """

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    source: str
    load: Callable[[str], tuple[np.ndarray, np.ndarray]]
    splits: tuple[str, ...] = ("train", "test")
    bundled: bool = False


@struct.dataclass
class Dataset:
    """One split of a dataset on the device, ready for jitted gathers.

    Attributes:
        images: [N, H, W, channels], uint8 or float32, not yet standardised.
        labels: int32 [N].
        class_index: int32 [C, max_count]: row c lists the examples of class c
            (padded with repeats); sampling a class, then a column below
            `class_count[c]`, draws an example of that class uniformly.
        class_count: int32 [C].
        mean, std: float32 scalars, the pixel statistics of the training split.
    """

    images: jnp.ndarray
    labels: jnp.ndarray
    class_index: jnp.ndarray
    class_count: jnp.ndarray
    mean: jnp.ndarray
    std: jnp.ndarray


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add a dataset to the registry (a later registration of a name replaces it).

    Loaded splits are cached per registration, so a replacement (e.g. a test's small
    stand-in) serves its own arrays, and registering the original again serves the
    original's without reloading them.
    """
    _REGISTRY[info.name] = info
    return info


@functools.cache
def _load_builtins() -> None:
    for module in BUILTIN_DATASET_MODULES:
        importlib.import_module(module)


def dataset_names() -> list[str]:
    """Names of every registered dataset."""
    _load_builtins()
    return list(_REGISTRY)


def dataset_info(name: str) -> DatasetInfo:
    """The `DatasetInfo` of a registered dataset; a `UserError` names unknown ones."""
    _load_builtins()
    if name not in _REGISTRY:
        known = ", ".join(_REGISTRY)
        raise UserError(f"unknown dataset {name!r}; known datasets: {known}")
    return _REGISTRY[name]


@functools.cache
def _raw_split(info: DatasetInfo, split: str) -> tuple[np.ndarray, np.ndarray]:
    name = info.name
    if split not in info.splits:
        raise UserError(
            f"dataset {name!r} has no split {split!r}; its splits: "
            + ", ".join(info.splits)
        )
    images, labels = info.load(split)
    if images.ndim != 4 or images.shape[1:] != info.image_shape:
        raise UserError(
            f"dataset {name!r} split {split!r}: loader returned images of shape "
            f"{images.shape}, expected [N, {', '.join(map(str, info.image_shape))}]"
        )
    if labels.shape != (images.shape[0],):
        raise UserError(
            f"dataset {name!r} split {split!r}: {labels.shape[0]} labels for "
            f"{images.shape[0]} images"
        )
    return images, labels.astype(np.int32)


def pixel_stats(name: str) -> tuple[float, float]:
    """Mean and std of all pixel values of the training split (after /255 for uint8)."""
    return _pixel_stats(dataset_info(name))


@functools.cache
def _pixel_stats(info: DatasetInfo) -> tuple[float, float]:
    images, _ = _raw_split(info, info.splits[0])
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    flat = images.reshape(-1)
    # In float64 chunks: a float64 copy of a whole split would take gigabytes (SVHN).
    total = total_sq = 0.0
    chunk_size = 1 << 22
    for start in range(0, flat.size, chunk_size):
        chunk = flat[start : start + chunk_size].astype(np.float64)
        total += chunk.sum()
        total_sq += chunk @ chunk
    mean = total / flat.size
    std = np.sqrt(max(total_sq / flat.size - mean**2, 0.0))
    return float(mean / scale), float(std / scale)


def _class_table(labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(labels, minlength=num_classes).astype(np.int32)
    width = max(int(counts.max()), 1)
    table = np.zeros((num_classes, width), np.int32)
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for c in range(num_classes):
        members = order[starts[c] : starts[c] + counts[c]]
        if len(members):
            table[c] = np.resize(members, width)
    return table, counts


def load_dataset(name: str, split: str) -> Dataset:
    """One split of a dataset as device arrays, loaded once per process."""
    return _load_split(dataset_info(name), split)


@functools.cache
def _load_split(info: DatasetInfo, split: str) -> Dataset:
    name = info.name
    images, labels = _raw_split(info, split)
    if labels.size and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise UserError(
            f"dataset {name!r} split {split!r}: labels outside "
            f"0..{info.num_classes - 1}"
        )
    mean, std = _pixel_stats(info)
    table, counts = _class_table(labels, info.num_classes)
    if images.dtype == np.uint8:
        mean, std = mean * 255.0, std * 255.0
    return Dataset(
        images=jnp.asarray(images),
        labels=jnp.asarray(labels),
        class_index=jnp.asarray(table),
        class_count=jnp.asarray(counts),
        mean=jnp.float32(mean),
        std=jnp.float32(max(std, 1e-8)),
    )
