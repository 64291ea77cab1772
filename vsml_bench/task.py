"""Learning tasks: distributions over episodes of labelled examples.

A `Task` is static configuration (a frozen, hashable dataclass): a dataset and split, an
episode length, and the transformations drawn per episode from its key. `sample_episode`
turns a key into a whole episode of arrays (`x: [T, *obs_shape]`, `y: [T]`) with one
jitted gather and no Python work per example; the same key always gives the same
episode. `vsml_bench.env` serves the same episode one step at a time.

Sampling: each step draws a class uniformly among the episode's classes, then an example
uniformly among that class's examples of the split, so the classes of an episode are
balanced in expectation whatever the dataset's class frequencies (EMNIST's are far from
uniform). Few-shot tasks (`ways` set) instead show `shots` distinct examples of each of
`ways` classes in random order, then `queries` further examples of those classes.

Per-episode transformations, applied in this order:
1. class subset: `num_classes = k` keeps k classes drawn at random, relabelled 0..k-1
   in ascending order of the original label;
2. label permutation (`permute_labels`): a random bijection of the k labels;
3. standardisation with the dataset's own training-split pixel mean and std;
4. `grayscale` (mean over channels), `resize` to (H, W), `pad_image` to (H, W, C)
   (centred, zero = the mean pixel after standardisation);
5. `flatten`, then `permute_pixels` (a random permutation of the D features);
6. `projection`: x <- x P with P a D x D matrix of entries uniform in
   +-sqrt(6 / (2 D)), either fresh per episode ("fresh") or one of `num_projections`
   fixed matrices ("fixed"; `projection_index` picks one, None draws one per episode);
7. `pad_inputs` to a fixed number of features, `pad_classes` to a fixed number of
   outputs (the extra classes never occur).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp
from flax import struct

from vsml_bench.datasets import Dataset, dataset_info, load_dataset
from vsml_bench.errors import UserError
from vsml_bench.learner import TaskSpec


@struct.dataclass
class Episode:
    """One episode as arrays.

    Attributes:
        x: inputs, float32 [T, *obs_shape].
        y: labels, int32 [T].
    """

    x: jnp.ndarray
    y: jnp.ndarray


@dataclass(frozen=True)
class Task:
    """A distribution over episodes (see the module docstring for the semantics)."""

    dataset: str
    split: str = "train"
    episode_length: int = 500
    num_classes: int | None = None
    permute_labels: bool = False
    grayscale: bool = False
    resize: tuple[int, int] | None = None
    pad_image: tuple[int, int, int] | None = None
    flatten: bool = True
    permute_pixels: bool = False
    projection: Literal["none", "fresh", "fixed"] = "none"
    projection_index: int | None = None
    num_projections: int = 64
    projection_seed: int = 0
    pad_inputs: int | None = None
    pad_classes: int | None = None
    ways: int | None = None
    shots: int = 1
    queries: int = 1

    def __post_init__(self):
        info = dataset_info(self.dataset)
        if self.split not in info.splits:
            raise UserError(
                f"task split {self.split!r} unknown for dataset {self.dataset!r}; "
                f"use one of {', '.join(info.splits)}"
            )
        if self.episode_length < 1:
            raise UserError(f"episode_length={self.episode_length} must be >= 1")
        k = self.num_classes
        if k is not None and not 2 <= k <= info.num_classes:
            raise UserError(
                f"num_classes={k} must lie in 2..{info.num_classes} for dataset "
                f"{self.dataset!r}"
            )
        if self.ways is not None:
            if not 2 <= self.ways <= info.num_classes:
                raise UserError(
                    f"ways={self.ways} must lie in 2..{info.num_classes} for dataset "
                    f"{self.dataset!r}"
                )
            if self.shots < 1 or self.queries < 1:
                raise UserError(
                    f"shots={self.shots} and queries={self.queries} must be >= 1"
                )
            if k is not None:
                raise UserError("give either ways (few-shot) or num_classes, not both")
            length = self.ways * self.shots + self.queries
            if self.episode_length != length:
                raise UserError(
                    f"a {self.ways}-way {self.shots}-shot task with {self.queries} "
                    f"queries has episode_length={length}, not {self.episode_length}"
                )
        for name in ("resize", "pad_image"):
            value = getattr(self, name)
            if value is not None and min(value) < 1:
                raise UserError(f"{name}={value} needs positive sizes")
        if self.projection not in ("none", "fresh", "fixed"):
            raise UserError(
                f"projection={self.projection!r}; use 'none', 'fresh' or 'fixed'"
            )
        if self.projection != "none" and not self.flatten:
            raise UserError("a projection needs flatten=True")
        if self.permute_pixels and not self.flatten:
            raise UserError("permute_pixels needs flatten=True")
        if self.num_projections < 1:
            raise UserError(f"num_projections={self.num_projections} must be >= 1")
        if self.projection_index is not None and not (
            0 <= self.projection_index < self.num_projections
        ):
            raise UserError(
                f"projection_index={self.projection_index} must lie in "
                f"0..{self.num_projections - 1}"
            )
        image = self.image_shape
        if self.pad_image is not None and any(
            p < s for p, s in zip(self.pad_image, self._unpadded_image_shape)
        ):
            raise UserError(
                f"pad_image={self.pad_image} is smaller than the image "
                f"{self._unpadded_image_shape}"
            )
        features = math.prod(image)
        if self.pad_inputs is not None and self.pad_inputs < features:
            raise UserError(
                f"pad_inputs={self.pad_inputs} is smaller than the {features} input "
                "features"
            )
        if self.pad_inputs is not None and not self.flatten:
            raise UserError("pad_inputs needs flatten=True (use pad_image for images)")
        if self.pad_classes is not None and self.pad_classes < self.episode_classes:
            raise UserError(
                f"pad_classes={self.pad_classes} is smaller than the "
                f"{self.episode_classes} classes of an episode"
            )

    @property
    def episode_classes(self) -> int:
        """Number of distinct labels an episode can contain."""
        if self.ways is not None:
            return self.ways
        if self.num_classes is not None:
            return self.num_classes
        return dataset_info(self.dataset).num_classes

    @property
    def num_outputs(self) -> int:
        """Size of the logits and of the one-hot labels (after `pad_classes`)."""
        return self.pad_classes or self.episode_classes

    @property
    def _unpadded_image_shape(self) -> tuple[int, int, int]:
        h, w, c = dataset_info(self.dataset).image_shape
        if self.grayscale:
            c = 1
        if self.resize is not None:
            h, w = self.resize
        return h, w, c

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of an input before flattening."""
        return self.pad_image or self._unpadded_image_shape

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of one input x_t."""
        if not self.flatten:
            return self.image_shape
        return (self.pad_inputs or math.prod(self.image_shape),)

    @property
    def spec(self) -> TaskSpec:
        """The shapes a learner needs to be built for this task."""
        return TaskSpec(input_shape=self.obs_shape, num_classes=self.num_outputs)

    @property
    def loss_steps(self) -> int:
        """How many final steps the meta-loss counts: all, or the few-shot queries."""
        return self.queries if self.ways is not None else self.episode_length

    def load(self) -> Dataset:
        """The task's dataset split as device arrays (cached per process)."""
        return load_dataset(self.dataset, self.split)


def projection_matrix(key: jax.Array, size: int) -> jax.Array:
    """A D x D matrix with entries uniform in +-sqrt(6 / (2 D)), float32."""
    bound = math.sqrt(6.0 / (2 * size))
    return jax.random.uniform(key, (size, size), jnp.float32, -bound, bound)


def _choose_classes(key: jax.Array, data: Dataset, k: int) -> jax.Array:
    """k distinct classes among those the split has examples of, ascending.

    A split may lack some of the dataset's classes (Omniglot's evaluation alphabets
    hold 659 of its 964 training characters' label range), so empty ones are skipped.
    """
    scores = jax.random.uniform(key, data.class_count.shape)
    scores = jnp.where(data.class_count > 0, scores, -1.0)
    return jnp.sort(jnp.argsort(-scores)[:k])


def _draw_iid(task: Task, key: jax.Array, data: Dataset):
    k_classes, k_labels, k_examples = jax.random.split(key, 3)
    if task.num_classes is None:
        # The dataset's own labels, drawn among the classes the split has examples of.
        present = data.class_count > 0
        classes = jnp.argsort(~present, stable=True)
        position = jax.random.randint(
            k_labels, (task.episode_length,), 0, jnp.sum(present)
        )
        labels = original = classes[position]
    else:
        chosen = _choose_classes(k_classes, data, task.num_classes)
        labels = jax.random.randint(
            k_labels, (task.episode_length,), 0, task.num_classes
        )
        original = chosen[labels]
    u = jax.random.uniform(k_examples, (task.episode_length,))
    column = jnp.floor(u * data.class_count[original]).astype(jnp.int32)
    return labels, data.class_index[original, column]


def _draw_few_shot(task: Task, key: jax.Array, data: Dataset):
    k_classes, k_order, k_examples, k_queries = jax.random.split(key, 4)
    ways, shots, queries = task.ways, task.shots, task.queries
    chosen = _choose_classes(k_classes, data, ways)

    width = data.class_index.shape[1]

    def distinct_columns(k, count):
        valid = jnp.arange(width) < count
        scores = jax.random.uniform(k, (width,))
        return jnp.argsort(jnp.where(valid, -scores, 1.0))[: shots + queries]

    columns = jax.vmap(distinct_columns)(
        jax.random.split(k_examples, ways), data.class_count[chosen]
    )
    support_labels = jax.random.permutation(
        k_order, jnp.repeat(jnp.arange(ways), shots)
    )
    onehot = jax.nn.one_hot(support_labels, ways, dtype=jnp.int32)
    seen_before = jnp.cumsum(onehot, axis=0) - onehot
    occurrence = jnp.sum(seen_before * onehot, axis=1)
    query_labels = jax.random.randint(k_queries, (queries,), 0, ways)
    labels = jnp.concatenate([support_labels, query_labels])
    slot = jnp.concatenate([occurrence, shots + jnp.arange(queries)])
    index = data.class_index[chosen[labels], columns[labels, slot]]
    return labels, index


def _transform_inputs(task: Task, key: jax.Array, data: Dataset, index: jax.Array):
    k_pixels, k_projection, k_choice = jax.random.split(key, 3)
    x = (data.images[index].astype(jnp.float32) - data.mean) / data.std

    if task.grayscale:
        x = jnp.mean(x, axis=-1, keepdims=True)
    if task.resize is not None:
        t, _, _, c = x.shape
        x = jax.image.resize(x, (t, *task.resize, c), method="linear", antialias=True)
    if task.pad_image is not None:
        pads = [(0, 0)]
        for target, size in zip(task.pad_image, x.shape[1:]):
            before = (target - size) // 2
            pads.append((before, target - size - before))
        x = jnp.pad(x, pads)
    if not task.flatten:
        return x

    x = x.reshape(x.shape[0], -1)
    size = x.shape[1]
    if task.permute_pixels:
        x = x[:, jax.random.permutation(k_pixels, size)]
    if task.projection == "fresh":
        x = x @ projection_matrix(k_projection, size)
    elif task.projection == "fixed":
        if task.projection_index is None:
            index = jax.random.randint(k_choice, (), 0, task.num_projections)
        else:
            index = task.projection_index
        base = jax.random.PRNGKey(task.projection_seed)
        x = x @ projection_matrix(jax.random.fold_in(base, index), size)
    if task.pad_inputs is not None:
        x = jnp.pad(x, ((0, 0), (0, task.pad_inputs - size)))
    return x


@functools.partial(jax.jit, static_argnums=0)
def sample_episode(task: Task, key: jax.Array, data: Dataset) -> Episode:
    """Draw one whole episode: `x: [T, *task.obs_shape]`, `y: int32 [T]`.

    Args:
        task: the task (static).
        key: the episode's key; the same key always gives the same episode.
        data: `task.load()`, passed in so that it is not baked into the compiled code.
    """
    k_draw, k_permute, k_inputs = jax.random.split(key, 3)
    if task.ways is not None:
        labels, index = _draw_few_shot(task, k_draw, data)
    else:
        labels, index = _draw_iid(task, k_draw, data)
    if task.permute_labels:
        labels = jax.random.permutation(k_permute, task.episode_classes)[labels]
    x = _transform_inputs(task, k_inputs, data, index)
    return Episode(x=x, y=labels.astype(jnp.int32))


@functools.partial(jax.jit, static_argnums=0)
def sample_episodes(task: Task, keys: jax.Array, data: Dataset) -> Episode:
    """Many episodes at once: keys [E, 2] -> `x: [E, T, ...]`, `y: [E, T]`."""
    return jax.vmap(lambda k: sample_episode(task, k, data))(keys)
