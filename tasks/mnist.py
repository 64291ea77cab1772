"""MNIST and Fashion-MNIST, shipped inside the package as their original IDX files.

[1] LeCun, Bottou, Bengio, Haffner (1998), Gradient-based learning applied to document
    recognition. http://yann.lecun.com/exdb/mnist/
[2] Xiao, Rasul, Vollgraf (2017), Fashion-MNIST. https://arxiv.org/abs/1708.07747

Every file is checked against the SHA-256 listed in `bundled/SHA256SUMS` before it is
read, so a missing, truncated or altered file is reported by name.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import numpy as np

from vsml_bench.datasets import DatasetInfo, register_dataset
from vsml_bench.datasets.checks import DataFileError, read_sha256sums, verify_file
from vsml_bench.datasets.idx import read_idx

_PREFIX = {"train": "train", "test": "t10k"}


def bundled_dir() -> Path:
    """The folder of the bundled IDX files inside the installed package."""
    return Path(str(resources.files("vsml_bench.datasets") / "bundled"))


@functools.cache
def _sums() -> dict[str, str]:
    return read_sha256sums(bundled_dir() / "SHA256SUMS")


def read_checked_idx(relative: str, root: Path | None = None) -> np.ndarray:
    """Verify a bundled file's SHA-256, then parse it."""
    root = bundled_dir() if root is None else root
    if relative not in _sums():
        raise DataFileError(f"{relative} is not listed in {root / 'SHA256SUMS'}")
    path = root / relative
    verify_file(path, _sums()[relative])
    return read_idx(path)


def load_idx_split(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 28, 28, 1] uint8 and labels [N] of one bundled split."""
    prefix = _PREFIX[split]
    images = read_checked_idx(f"{folder}/{prefix}-images-idx3-ubyte.gz")
    labels = read_checked_idx(f"{folder}/{prefix}-labels-idx1-ubyte.gz")
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataFileError(
            f"{folder}/{prefix}: {images.shape} images do not match "
            f"{labels.shape} labels"
        )
    return images[..., None], labels


MNIST = register_dataset(
    DatasetInfo(
        name="mnist",
        num_classes=10,
        image_shape=(28, 28, 1),
        source="MNIST (LeCun et al. 1998), bundled",
        load=functools.partial(load_idx_split, "mnist"),
        bundled=True,
    )
)

FASHION_MNIST = register_dataset(
    DatasetInfo(
        name="fashion_mnist",
        num_classes=10,
        image_shape=(28, 28, 1),
        source="Fashion-MNIST (Xiao et al. 2017), bundled",
        load=functools.partial(load_idx_split, "fashion_mnist"),
        bundled=True,
    )
)
