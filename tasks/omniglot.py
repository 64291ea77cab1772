"""Omniglot: 1623 handwritten characters of 50 alphabets, 20 drawings each.

[1] Lake, Salakhutdinov, Tenenbaum (2015), Human-level concept learning through
    probabilistic program induction. Science 350(6266).
    https://github.com/brendenlake/omniglot

The two archives of the authors' repository are downloaded on first use and checked
against the SHA-256 values that TensorFlow Datasets records for the same URLs: the
"background" set (30 alphabets, 964 characters) is the train split and the "evaluation"
set (20 alphabets, 659 characters) the test split, so the two splits share no class.

A class is one character (alphabet/character folder); classes are numbered 0..C-1 within
each split in the sorted order of their folder names, and drawings within a class in
sorted file-name order.

Preprocessing, chosen to match the MNIST-like inputs of the other datasets:
- inversion: the PNGs draw black strokes on white; pixel values are inverted so that
  strokes are bright (255) on a dark (0) background, as in MNIST;
- resizing: the 105x105 drawings are shrunk to 28x28 by exact area averaging: each
  output pixel is the mean of the input area it covers (3.75 x 3.75 input pixels,
  partial pixels weighted by the fraction covered), rounded to the nearest uint8. Thin
  strokes fade to grey rather than vanish as they can with point sampling. Pillow only
  decodes the PNGs: its "box" filter counts whole pixels by their centres, which is not
  an area average when the factor is not an integer.

`DatasetInfo.num_classes` can hold a single number, so the registered dataset declares
964, the train split's count; the test split uses only labels 0..658
(`NUM_CLASSES_PER_SPLIT`), and a sampler must draw test classes among those.
"""

from __future__ import annotations

import functools
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from vsml_bench.datasets import DatasetInfo, register_dataset
from vsml_bench.datasets.checks import DataFileError
from vsml_bench.datasets.download import RemoteFile, fetch, select_files
from vsml_bench.errors import UserError

BASE_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"

FILES = (
    RemoteFile(
        BASE_URL + "images_background.zip",
        "images_background.zip",
        "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640",
        9464212,
    ),
    RemoteFile(
        BASE_URL + "images_evaluation.zip",
        "images_evaluation.zip",
        "1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee",
        6462886,
    ),
)

ARCHIVES = {"train": "images_background.zip", "test": "images_evaluation.zip"}
NUM_CLASSES_PER_SPLIT = {"train": 964, "test": 659}
IMAGE_SIZE = 28


@functools.cache
def area_weights(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] weights of area averaging along one axis (rows sum to 1).

    Output pixel i covers the input interval [i * r, (i + 1) * r) with r = size_in /
    size_out; its weight on input pixel j is the length of the overlap with [j, j + 1)
    divided by r.
    """
    ratio = size_in / size_out
    starts = np.arange(size_out)[:, None] * ratio
    pixels = np.arange(size_in)[None, :]
    overlap = np.minimum(starts + ratio, pixels + 1) - np.maximum(starts, pixels)
    return np.clip(overlap, 0.0, None) / ratio


def preprocess(png: bytes, image_size: int = IMAGE_SIZE) -> np.ndarray:
    """One drawing as [image_size, image_size] uint8: inverted, then area-resized."""
    with Image.open(io.BytesIO(png)) as image:
        ink = 255.0 - np.asarray(image.convert("L"), dtype=np.float64)
    rows = area_weights(ink.shape[0], image_size)
    cols = area_weights(ink.shape[1], image_size)
    return np.clip(np.rint(rows @ ink @ cols.T), 0, 255).astype(np.uint8)


def read_omniglot_zip(
    path: Path, image_size: int = IMAGE_SIZE
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All drawings of an Omniglot archive.

    Args:
        path: a zip whose PNG members sit at `<any>/<alphabet>/<character>/<name>.png`.
        image_size: side of the square output images.

    Returns:
        images [N, image_size, image_size, 1] uint8, labels [N] in 0..C-1, and the C
        class names "alphabet/character" in label order.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise DataFileError(f"{path} is not a readable zip archive: {e}") from e
    with archive:
        members = []
        for name in archive.namelist():
            parts = PurePosixPath(name).parts
            if name.lower().endswith(".png") and len(parts) >= 3:
                members.append((f"{parts[-3]}/{parts[-2]}", parts[-1], name))
        if not members:
            raise DataFileError(f"{path} holds no <alphabet>/<character>/*.png files")
        members.sort()
        class_names = sorted({cls for cls, _, _ in members})
        label_of = {cls: i for i, cls in enumerate(class_names)}
        images = np.empty((len(members), image_size, image_size, 1), np.uint8)
        for i, (_, _, name) in enumerate(members):
            try:
                images[i, ..., 0] = preprocess(archive.read(name), image_size)
            except (OSError, UnidentifiedImageError, zipfile.BadZipFile) as e:
                raise DataFileError(f"{path}: {name} is not a readable PNG: {e}") from e
    labels = np.array([label_of[cls] for cls, _, _ in members], np.int64)
    return images, labels, class_names


def load_split(
    split: str, files: Sequence[RemoteFile] = FILES, root: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 28, 28, 1] uint8 and labels [N] of an Omniglot split.

    Args:
        split: "train" (background set: 964 classes, 19,280 drawings) or "test"
            (evaluation set: 659 classes, 13,180 drawings).
        files: where to get the archives; entries are picked by their filename.
        root: the data folder; `download.data_root()` when None.
    """
    if split not in ARCHIVES:
        raise UserError(f"omniglot has no split {split!r}; its splits: train, test")
    name = ARCHIVES[split]
    paths = fetch("omniglot", select_files(files, [name]), root)
    images, labels, _ = read_omniglot_zip(paths[name])
    return images, labels


OMNIGLOT = register_dataset(
    DatasetInfo(
        name="omniglot",
        num_classes=NUM_CLASSES_PER_SPLIT["train"],
        image_shape=(IMAGE_SIZE, IMAGE_SIZE, 1),
        source="Omniglot, Lake et al. 2015 (from github.com/brendenlake/omniglot)",
        load=load_split,
    )
)
