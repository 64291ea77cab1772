"""Two synthetic datasets of the VSML generalisation experiments: "random" and "sum".

[1] Kirsch, Schmidhuber (2021), Meta Learning Backpropagation And Improving It.
    https://arxiv.org/abs/2012.14905

- "random": 20 fixed Gaussian images of shape 28x28x1 with random labels among 10
  classes, drawn once from a fixed seed. The train and test splits are the same 20
  examples: the task measures memorisation, not generalisation.
- "sum": Gaussian images whose mean is drawn uniformly from [-1, 1] per image (unit
  standard deviation per pixel); the label is 1 when the pixel sum is >= 0, else 0.
  A finite, fixed-seed set of 60,000 train and 10,000 test images, with different seeds
  per split.

Both hold float32 images; like every dataset, they are standardised later with the pixel
mean and std of their train split. The values come from numpy's PCG64 generator with the
seeds below, so they are the same on every run and machine for a given numpy version.
"""

from __future__ import annotations

import numpy as np

from vsml_bench.datasets import DatasetInfo, register_dataset
from vsml_bench.errors import UserError

IMAGE_SHAPE = (28, 28, 1)

RANDOM_SEED = 2021
RANDOM_NUM_IMAGES = 20
RANDOM_NUM_CLASSES = 10

SUM_SEEDS = {"train": 1, "test": 2}
SUM_SIZES = {"train": 60_000, "test": 10_000}


def make_random(
    seed: int,
    num_images: int = RANDOM_NUM_IMAGES,
    num_classes: int = RANDOM_NUM_CLASSES,
    image_shape: tuple[int, ...] = IMAGE_SHAPE,
) -> tuple[np.ndarray, np.ndarray]:
    """Standard Gaussian images [num_images, *image_shape] float32 and random labels.

    Labels are a random permutation of `arange(num_images) % num_classes`, so every
    class appears (twice for 20 images and 10 classes) and class-wise sampling never
    meets an empty class; which image carries which label is still random.
    """
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((num_images, *image_shape), dtype=np.float32)
    labels = rng.permutation(np.arange(num_images) % num_classes)
    return images, labels


def make_sum(
    seed: int, num_images: int, image_shape: tuple[int, ...] = IMAGE_SHAPE
) -> tuple[np.ndarray, np.ndarray]:
    """Images [num_images, *image_shape] float32 and labels [num_images] in {0, 1}.

    Image i is `mean_i + noise` with mean_i ~ U[-1, 1] and noise standard Gaussian per
    pixel; its label is whether its pixel sum, taken over the stored float32 values in
    float64, is >= 0.
    """
    rng = np.random.default_rng(seed)
    means = rng.uniform(-1.0, 1.0, num_images).astype(np.float32)
    images = rng.standard_normal((num_images, *image_shape), dtype=np.float32)
    images += means.reshape(-1, *(1,) * len(image_shape))
    sums = images.reshape(num_images, -1).sum(axis=1, dtype=np.float64)
    return images, (sums >= 0).astype(np.int64)


def load_random(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The 20 images [20, 28, 28, 1] float32 and labels of "random" (either split)."""
    if split not in ("train", "test"):
        raise UserError(f"random has no split {split!r}; its splits: train, test")
    return make_random(RANDOM_SEED)


def load_sum(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 28, 28, 1] float32 and labels [N] of "sum" (N: 60,000 or 10,000)."""
    if split not in SUM_SEEDS:
        raise UserError(f"sum has no split {split!r}; its splits: train, test")
    return make_sum(SUM_SEEDS[split], SUM_SIZES[split])


RANDOM = register_dataset(
    DatasetInfo(
        name="random",
        num_classes=RANDOM_NUM_CLASSES,
        image_shape=IMAGE_SHAPE,
        source="20 fixed Gaussian images with random labels (memorisation; synthetic)",
        load=load_random,
        bundled=True,
    )
)

SUM = register_dataset(
    DatasetInfo(
        name="sum",
        num_classes=2,
        image_shape=IMAGE_SHAPE,
        source="Gaussian images, mean in [-1, 1]; label: pixel sum >= 0 (synthetic)",
        load=load_sum,
        bundled=True,
    )
)
