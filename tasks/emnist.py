"""EMNIST ByClass: 62 classes of handwritten digits and letters, 28x28 grey images.

[1] Cohen, Afshar, Tapson, van Schaik (2017), EMNIST: an extension of MNIST to
    handwritten letters. https://arxiv.org/abs/1702.05373

NIST publishes every EMNIST split inside one archive, `gzip.zip` (about 560 MB), which
is downloaded on first use and checked against the SHA-256 that TensorFlow Datasets
records for the same URL. Only the `emnist-byclass-*` members of the requested split are
read, straight from the archive, without extracting the rest.

Labels: 0-9 are the digits, 10-35 the upper-case letters A-Z, 36-61 the lower-case
letters a-z. The archive stores every image transposed (its rows are the columns of the
handwriting); the loader transposes them back, so images appear upright like MNIST's.
"""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from vsml_bench.datasets import DatasetInfo, register_dataset
from vsml_bench.datasets.checks import DataFileError
from vsml_bench.datasets.download import RemoteFile, fetch, select_files
from vsml_bench.datasets.idx import parse_idx
from vsml_bench.errors import UserError

ARCHIVE = "gzip.zip"

FILES = (
    RemoteFile(
        "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",
        ARCHIVE,
        "fb9bb67e33772a9cc0b895e4ecf36d2cf35be8b709693c3564cea2a019fcda8e",
        561753746,
    ),
)

SPLITS = ("train", "test")


def _read_member(archive: zipfile.ZipFile, basename: str, path: Path) -> np.ndarray:
    # Members sit in a folder ("gzip/") inside the archive; match on the base name so
    # that a repacked archive without the folder reads as well.
    matches = [n for n in archive.namelist() if PurePosixPath(n).name == basename]
    if len(matches) != 1:
        raise DataFileError(
            f"{path} has {len(matches)} members named {basename}, not 1"
        )
    try:
        with archive.open(matches[0]) as raw, gzip.GzipFile(fileobj=raw) as f:
            data = f.read()
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataFileError(f"{path}: member {matches[0]} cannot be read: {e}") from e
    return parse_idx(data, f"{path}:{matches[0]}")


def read_emnist_zip(
    path: Path, split: str, subset: str = "byclass"
) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 28, 28, 1] uint8, upright, and labels [N] from the EMNIST archive.

    Args:
        path: the `gzip.zip` archive (or any zip with the same member names).
        split: "train" or "test".
        subset: the EMNIST split family, e.g. "byclass", "balanced", "digits".
    """
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise DataFileError(f"{path} is not a readable zip archive: {e}") from e
    with archive:
        prefix = f"emnist-{subset}-{split}"
        images = _read_member(archive, f"{prefix}-images-idx3-ubyte.gz", path)
        labels = _read_member(archive, f"{prefix}-labels-idx1-ubyte.gz", path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataFileError(
            f"{path}: {prefix} images {images.shape} do not match labels {labels.shape}"
        )
    upright = np.ascontiguousarray(images.transpose(0, 2, 1))
    return upright[..., None], labels


def load_split(
    split: str, files: Sequence[RemoteFile] = FILES, root: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 28, 28, 1] uint8 and labels [N] in 0..61 of EMNIST ByClass.

    Args:
        split: "train" (697,932 images) or "test" (116,323).
        files: where to get the archive; the entry named "gzip.zip" is used.
        root: the data folder; `download.data_root()` when None.
    """
    if split not in SPLITS:
        raise UserError(f"emnist has no split {split!r}; its splits: train, test")
    paths = fetch("emnist", select_files(files, [ARCHIVE]), root)
    return read_emnist_zip(paths[ARCHIVE], split)


EMNIST = register_dataset(
    DatasetInfo(
        name="emnist",
        num_classes=62,
        image_shape=(28, 28, 1),
        source="EMNIST ByClass, Cohen et al. 2017 (from biometrics.nist.gov)",
        load=load_split,
    )
)
