"""Shared test fixtures. Tests never touch the network."""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pytest

from vsml_bench.datasets import (
    DatasetInfo,
    dataset_info,
    dataset_names,
    register_dataset,
)


def fake_split(info: DatasetInfo, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Small random uint8 images of a dataset's shape, 3 to 6 per class (unequal).

    Args:
        info: the dataset to imitate (its `num_classes` and `image_shape`).
        split: a split name; each (dataset, split) gets its own fixed arrays.

    Returns:
        images [N, *image_shape] uint8 and labels int64 [N], every class present.
    """
    rng = np.random.default_rng(zlib.crc32(f"{info.name}/{split}".encode()))
    counts = 3 + np.arange(info.num_classes) % 4
    labels = rng.permutation(np.repeat(np.arange(info.num_classes), counts))
    images = rng.integers(0, 256, (len(labels), *info.image_shape), dtype=np.uint8)
    return images, labels


@pytest.fixture(scope="module")
def offline_datasets():
    """Every dataset that needs a download reads `fake_split` arrays instead.

    Bundled and synthetic datasets keep their real loaders. The originals are
    registered again afterwards.
    """
    originals = [dataset_info(n) for n in dataset_names()]
    for info in originals:
        if not info.bundled:
            fake = dataclasses.replace(
                info, load=lambda split, info=info: fake_split(info, split)
            )
            register_dataset(fake)
    yield
    for info in originals:
        if not info.bundled:
            register_dataset(info)
