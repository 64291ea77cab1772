"""CIFAR-10: 10 classes of 32x32 colour photographs.

[1] Krizhevsky (2009), Learning Multiple Layers of Features from Tiny Images.
    https://www.cs.toronto.edu/~kriz/cifar.html

The binary version of the archive, `cifar-10-binary.tar.gz`, is downloaded on first use
and checked against the SHA-256 that TensorFlow Datasets records for the same URL. It is
used rather than the "python version" because that one is a set of pickles: nothing here
is ever unpickled. Each record of a batch file is one label byte followed by 3072 pixel
bytes: the 32x32 red plane, then green, then blue, each row by row.
"""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from vsml_bench.datasets import DatasetInfo, register_dataset
from vsml_bench.datasets.checks import DataFileError
from vsml_bench.datasets.download import RemoteFile, fetch, select_files
from vsml_bench.errors import UserError

ARCHIVE = "cifar-10-binary.tar.gz"

FILES = (
    RemoteFile(
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        ARCHIVE,
        "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
        170052171,
    ),
)

BATCHES = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}

_SIDE = 32
_RECORD = 1 + 3 * _SIDE * _SIDE


def parse_cifar_batch(
    data: bytes, name: str = "<bytes>"
) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 32, 32, 3] uint8 and labels [N] from the bytes of one batch file."""
    if len(data) % _RECORD:
        raise DataFileError(
            f"{name} holds {len(data)} bytes, not a whole number of {_RECORD}-byte "
            "CIFAR records"
        )
    records = np.frombuffer(data, np.uint8).reshape(-1, _RECORD)
    planes = records[:, 1:].reshape(-1, 3, _SIDE, _SIDE)
    return np.ascontiguousarray(planes.transpose(0, 2, 3, 1)), records[:, 0].copy()


def read_cifar_tar(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 32, 32, 3] uint8 and labels [N] of a split, read from the tar.gz.

    Batch files are found by base name and concatenated in the order of `BATCHES`.
    """
    wanted = BATCHES[split]
    found = {}
    try:
        with tarfile.open(path, "r:gz") as archive:
            # One pass in stored order: a gzip stream cannot seek backwards cheaply.
            for member in archive:
                name = PurePosixPath(member.name).name
                if member.isfile() and name in wanted:
                    found[name] = archive.extractfile(member).read()
    except (OSError, EOFError, tarfile.TarError) as e:
        raise DataFileError(f"{path} is not a readable tar.gz archive: {e}") from e
    missing = [name for name in wanted if name not in found]
    if missing:
        raise DataFileError(f"{path} lacks the batch file(s) {', '.join(missing)}")
    parts = [parse_cifar_batch(found[name], f"{path}:{name}") for name in wanted]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_split(
    split: str, files: Sequence[RemoteFile] = FILES, root: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 32, 32, 3] uint8 and labels [N] in 0..9 of CIFAR-10.

    Args:
        split: "train" (50,000 images) or "test" (10,000).
        files: where to get the archive; the entry named "cifar-10-binary.tar.gz".
        root: the data folder; `download.data_root()` when None.
    """
    if split not in BATCHES:
        raise UserError(f"cifar10 has no split {split!r}; its splits: train, test")
    paths = fetch("cifar10", select_files(files, [ARCHIVE]), root)
    return read_cifar_tar(paths[ARCHIVE], split)


CIFAR10 = register_dataset(
    DatasetInfo(
        name="cifar10",
        num_classes=10,
        image_shape=(32, 32, 3),
        source="CIFAR-10, Krizhevsky 2009 (binary version, from cs.toronto.edu)",
        load=load_split,
    )
)
