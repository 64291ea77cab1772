"""Kuzushiji-MNIST: 10 classes of cursive Japanese characters, 28x28 grey images.

[1] Clanuwat, Bober-Irizar, Kitamoto, Lamb, Yamamoto, Ha (2018), Deep Learning for
    Classical Japanese Literature. https://arxiv.org/abs/1812.01718

The four IDX files are downloaded from the publisher (ROIS-DS CODH) on first use and
checked against the SHA-256 values that TensorFlow Datasets records for the same URLs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vsml_bench.datasets import DatasetInfo, register_dataset
from vsml_bench.datasets.checks import DataFileError
from vsml_bench.datasets.download import RemoteFile, fetch, select_files
from vsml_bench.datasets.idx import read_idx
from vsml_bench.errors import UserError

BASE_URL = "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"

FILES = (
    RemoteFile(
        BASE_URL + "train-images-idx3-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
        18165135,
    ),
    RemoteFile(
        BASE_URL + "train-labels-idx1-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
        29497,
    ),
    RemoteFile(
        BASE_URL + "t10k-images-idx3-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
        3041136,
    ),
    RemoteFile(
        BASE_URL + "t10k-labels-idx1-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
        5120,
    ),
)

_PREFIX = {"train": "train", "test": "t10k"}


def read_idx_pair(
    images_path: Path, labels_path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, H, W, 1] uint8 and labels [N] from a pair of MNIST-style IDX files."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataFileError(
            f"{images_path} holds images {images.shape} that do not match the labels "
            f"{labels.shape} of {labels_path}"
        )
    return images[..., None], labels


def load_split(
    split: str, files: Sequence[RemoteFile] = FILES, root: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 28, 28, 1] uint8 and labels [N] of the "train" or "test" split.

    Args:
        split: "train" (60,000 images) or "test" (10,000).
        files: where to get the IDX files; entries are picked by their filename.
        root: the data folder; `download.data_root()` when None.
    """
    if split not in _PREFIX:
        raise UserError(f"kmnist has no split {split!r}; its splits: train, test")
    names = [
        f"{_PREFIX[split]}-{kind}-ubyte.gz" for kind in ("images-idx3", "labels-idx1")
    ]
    paths = fetch("kmnist", select_files(files, names), root)
    return read_idx_pair(paths[names[0]], paths[names[1]])


KMNIST = register_dataset(
    DatasetInfo(
        name="kmnist",
        num_classes=10,
        image_shape=(28, 28, 1),
        source="Kuzushiji-MNIST, Clanuwat et al. 2018 (from codh.rois.ac.jp)",
        load=load_split,
    )
)
