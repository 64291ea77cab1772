"""SVHN, cropped digits: 10 classes of 32x32 colour photographs of house numbers.

[1] Netzer, Wang, Coates, Bissacco, Wu, Ng (2011), Reading Digits in Natural Images
    with Unsupervised Feature Learning. http://ufldl.stanford.edu/housenumbers/

The MATLAB files of format 2 (`train_32x32.mat`, `test_32x32.mat`) are downloaded on
first use and checked against the SHA-256 values that TensorFlow Datasets records for
the same URLs. The "extra" set is not used. Each file holds `X` [32, 32, 3, N] uint8 and
`y` [N, 1] with labels 1..10, where 10 stands for the digit 0; labels here are the
digits themselves, 0..9.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io

from vsml_bench.datasets import DatasetInfo, register_dataset
from vsml_bench.datasets.checks import DataFileError
from vsml_bench.datasets.download import RemoteFile, fetch, select_files
from vsml_bench.errors import UserError

BASE_URL = "http://ufldl.stanford.edu/housenumbers/"

FILES = (
    RemoteFile(
        BASE_URL + "train_32x32.mat",
        "train_32x32.mat",
        "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8",
        182040794,
    ),
    RemoteFile(
        BASE_URL + "test_32x32.mat",
        "test_32x32.mat",
        "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b",
        64275384,
    ),
)

FILENAMES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 32, 32, 3] uint8 and digit labels [N] in 0..9 from an SVHN .mat."""
    try:
        contents = scipy.io.loadmat(path, variable_names=("X", "y"))
    except (OSError, ValueError, NotImplementedError) as e:
        raise DataFileError(f"{path} is not a readable MATLAB file: {e}") from e
    if "X" not in contents or "y" not in contents:
        raise DataFileError(f"{path} lacks the variables X and y of SVHN")
    images, labels = contents["X"], contents["y"].reshape(-1)
    if images.ndim != 4 or images.shape[2] != 3 or images.shape[3] != len(labels):
        raise DataFileError(
            f"{path}: X {images.shape} is not [H, W, 3, N] with N = {len(labels)}"
        )
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DataFileError(f"{path}: labels outside 1..10")
    images = np.ascontiguousarray(images.transpose(3, 0, 1, 2), dtype=np.uint8)
    return images, (labels % 10).astype(np.int64)


def load_split(
    split: str, files: Sequence[RemoteFile] = FILES, root: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 32, 32, 3] uint8 and labels [N] in 0..9 of SVHN cropped digits.

    Args:
        split: "train" (73,257 images) or "test" (26,032).
        files: where to get the .mat files; entries are picked by their filename.
        root: the data folder; `download.data_root()` when None.
    """
    if split not in FILENAMES:
        raise UserError(f"svhn has no split {split!r}; its splits: train, test")
    name = FILENAMES[split]
    paths = fetch("svhn", select_files(files, [name]), root)
    return read_svhn_mat(paths[name])


SVHN = register_dataset(
    DatasetInfo(
        name="svhn",
        num_classes=10,
        image_shape=(32, 32, 3),
        source="SVHN cropped digits, Netzer et al. 2011 (from ufldl.stanford.edu)",
        load=load_split,
    )
)
