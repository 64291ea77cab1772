"""The bundled datasets, the episode transformations, the suites and task arguments.

Transformations are checked against the same episode drawn without them (same key:
the labels and examples of an episode do not depend on its input transformations),
with the expected result computed independently in numpy.
"""

from __future__ import annotations

import dataclasses
import math
import shutil

import jax
import numpy as np
import pytest

from vsml_bench.datasets import (
    dataset_info,
    load_dataset,
    pixel_stats,
    register_dataset,
)
from vsml_bench.datasets.checks import DataFileError, read_sha256sums
from vsml_bench.errors import UserError
from vsml_bench.task import Task, projection_matrix, sample_episode
from vsml_bench.tasks.catalog import make_task
from vsml_bench.tasks.mnist import bundled_dir, read_checked_idx
from vsml_bench.tasks.suites import get_suite, suite_names

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

KEY = jax.random.PRNGKey(2021)
OTHER_KEY = jax.random.PRNGKey(2022)


def _episode(task: Task, key=KEY):
    episode = sample_episode(task, key, task.load())
    return np.asarray(episode.x), np.asarray(episode.y)


# --- bundled data -------------------------------------------------------------------


def test_mnist_reproduces_the_published_facts():
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    assert train.images.shape == (60000, 28, 28, 1) and train.images.dtype == np.uint8
    assert np.asarray(train.labels[:5]).tolist() == [5, 0, 4, 1, 9]
    assert np.bincount(np.asarray(train.labels)).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(np.asarray(test.labels)).tolist() == MNIST_TEST_COUNTS
    mean, std = pixel_stats("mnist")
    assert mean == pytest.approx(0.1307, abs=5e-5)
    assert std == pytest.approx(0.3081, abs=5e-5)


def test_fashion_mnist_reproduces_the_published_facts():
    train = load_dataset("fashion_mnist", "train")
    test = load_dataset("fashion_mnist", "test")
    assert np.bincount(np.asarray(train.labels)).tolist() == [6000] * 10
    assert np.bincount(np.asarray(test.labels)).tolist() == [1000] * 10
    assert pixel_stats("fashion_mnist")[0] == pytest.approx(0.2860, abs=5e-5)


LABELS_FILE = "mnist/train-labels-idx1-ubyte.gz"


@pytest.fixture
def bundled_copy(tmp_path):
    """A copy of the bundled MNIST training labels under tmp_path: (root, file)."""
    (tmp_path / "mnist").mkdir()
    shutil.copy(bundled_dir() / LABELS_FILE, tmp_path / LABELS_FILE)
    return tmp_path, tmp_path / LABELS_FILE


def test_an_intact_copy_of_a_bundled_file_reads(bundled_copy):
    root, _ = bundled_copy
    assert read_checked_idx(LABELS_FILE, root=root)[:5].tolist() == [5, 0, 4, 1, 9]


@pytest.mark.parametrize("damage", ["truncate", "alter", "delete"])
def test_a_damaged_bundled_file_is_named_with_its_expected_sha256(bundled_copy, damage):
    root, path = bundled_copy
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "alter":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :])
    else:
        path.unlink()
    expected = read_sha256sums(bundled_dir() / "SHA256SUMS")[LABELS_FILE]
    with pytest.raises(DataFileError) as caught:
        read_checked_idx(LABELS_FILE, root=root)
    assert str(path) in str(caught.value) and expected in str(caught.value)


# --- transformations ----------------------------------------------------------------

# "sum" has continuous Gaussian pixels: resized to 8 x 8 (D = 64) its 128 inputs have
# full column rank and no two equal features, so a linear map or a permutation of the
# features can be recovered from one episode.
SUM_8X8 = Task(dataset="sum", resize=(8, 8), episode_length=128)
MNIST_200 = Task(dataset="mnist", episode_length=200)


def _recover_linear_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The P with x P = y, by least squares in float64; its residual must be ~0."""
    p, *_ = np.linalg.lstsq(x.astype(np.float64), y.astype(np.float64), rcond=None)
    np.testing.assert_allclose(x @ p, y, rtol=1e-4, atol=1e-4)
    return p


def test_projection_matrix_entries_lie_in_the_glorot_range():
    size = 300
    p = np.asarray(projection_matrix(KEY, size))
    bound = math.sqrt(6 / (2 * size))
    assert p.shape == (size, size) and np.abs(p).max() <= bound
    # Uniform entries: the extreme deciles are reached, the mean is near zero.
    assert np.abs(p).max() > 0.99 * bound and abs(p.mean()) < 0.01 * bound


def test_fresh_projection_is_x_times_a_new_glorot_matrix_per_episode():
    task = dataclasses.replace(SUM_8X8, projection="fresh")
    x, y = _episode(SUM_8X8)
    projected, projected_y = _episode(task)
    np.testing.assert_array_equal(projected_y, y)
    p = _recover_linear_map(x, projected)
    bound = math.sqrt(6 / (2 * 64))
    assert np.abs(p).max() <= bound * (1 + 1e-4)
    assert np.abs(p).max() > 0.9 * bound
    other = _recover_linear_map(
        _episode(SUM_8X8, OTHER_KEY)[0], _episode(task, OTHER_KEY)[0]
    )
    assert np.abs(other - p).max() > 0.1 * bound


def test_a_fixed_projection_index_gives_the_same_matrix_in_every_episode():
    task = dataclasses.replace(
        SUM_8X8, projection="fixed", projection_index=1, num_projections=2
    )
    matrices = [
        _recover_linear_map(_episode(SUM_8X8, key)[0], _episode(task, key)[0])
        for key in (KEY, OTHER_KEY)
    ]
    np.testing.assert_allclose(matrices[0], matrices[1], atol=1e-4)
    expected = projection_matrix(jax.random.fold_in(jax.random.PRNGKey(0), 1), 64)
    np.testing.assert_allclose(matrices[0], expected, atol=1e-4)


def test_pixel_permutation_permutes_the_features_of_every_input_alike():
    x, _ = _episode(SUM_8X8)
    permuted, _ = _episode(dataclasses.replace(SUM_8X8, permute_pixels=True))
    source = [
        np.flatnonzero((x == permuted[:, [j]]).all(axis=0)) for j in range(x.shape[1])
    ]
    assert all(len(s) == 1 for s in source)
    order = np.array([s[0] for s in source])
    assert sorted(order) == list(range(64)) and (order != np.arange(64)).any()


def test_label_permutation_is_a_bijection_and_leaves_inputs_alone():
    x, y = _episode(MNIST_200)
    px, py = _episode(dataclasses.replace(MNIST_200, permute_labels=True))
    np.testing.assert_array_equal(px, x)
    mapping = {}
    for original, permuted in zip(y, py):
        assert mapping.setdefault(original, permuted) == permuted
    assert sorted(mapping) == sorted(mapping.values()) == list(range(10))
    assert any(k != v for k, v in mapping.items())


@pytest.fixture(scope="module")
def mnist_class_of():
    """Maps an MNIST training image's bytes to its label."""
    data = load_dataset("mnist", "train")
    images = np.asarray(data.images).reshape(60000, -1)
    labels = np.asarray(data.labels)
    table = {image.tobytes(): label for image, label in zip(images, labels)}

    def class_of(x: np.ndarray) -> np.ndarray:
        pixels = np.rint(x * float(data.std) + float(data.mean)).astype(np.uint8)
        return np.array([table[p.tobytes()] for p in pixels])

    return class_of


def test_every_input_is_an_example_of_its_label(mnist_class_of):
    x, y = _episode(MNIST_200)
    np.testing.assert_array_equal(mnist_class_of(x), y)


def test_a_class_subset_relabels_k_classes_0_to_k_minus_1_in_ascending_order(
    mnist_class_of,
):
    x, y = _episode(dataclasses.replace(MNIST_200, num_classes=3))
    assert sorted(set(y)) == [0, 1, 2]
    original = mnist_class_of(x)
    chosen = [set(original[y == label]) for label in range(3)]
    assert all(len(c) == 1 for c in chosen)
    chosen = [c.pop() for c in chosen]
    assert chosen == sorted(chosen) and len(set(chosen)) == 3


def test_padding_the_image_centres_it_in_zeros_and_padding_the_inputs_appends_zeros():
    x, y = _episode(SUM_8X8)
    padded = dataclasses.replace(SUM_8X8, pad_image=(10, 12, 1), flatten=False)
    assert padded.obs_shape == (10, 12, 1)
    image, _ = _episode(padded)
    expected = np.zeros((128, 10, 12, 1), np.float32)
    expected[:, 1:9, 2:10, :] = x.reshape(128, 8, 8, 1)
    np.testing.assert_array_equal(image, expected)

    wide = dataclasses.replace(SUM_8X8, pad_inputs=100, pad_classes=5)
    assert wide.obs_shape == (100,) and wide.spec.num_classes == 5
    features, labels = _episode(wide)
    np.testing.assert_array_equal(features[:, :64], x)
    assert not features[:, 64:].any()
    np.testing.assert_array_equal(labels, y)


def test_resize_gives_the_requested_image_shape():
    task = Task(dataset="mnist", resize=(8, 6), flatten=False)
    assert task.obs_shape == (8, 6, 1) and task.spec.input_shape == (8, 6, 1)
    assert SUM_8X8.obs_shape == (64,)
    assert Task(dataset="cifar10", grayscale=True, resize=(8, 8)).obs_shape == (64,)


@pytest.fixture
def random_with_empty_classes():
    """ "random" with classes 7 to 9 empty, as Omniglot's test split leaves some."""
    original = dataset_info("random")
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(7), 3))
    # Image i is the constant i, so an input tells which example it shows.
    images = np.broadcast_to(
        np.arange(21, dtype=np.uint8)[:, None, None, None], (21, 28, 28, 1)
    )
    register_dataset(dataclasses.replace(original, load=lambda split: (images, labels)))
    yield labels
    register_dataset(original)


def test_empty_classes_are_never_drawn(random_with_empty_classes):
    labels = random_with_empty_classes
    for task in (
        Task(dataset="random", episode_length=300),
        Task(dataset="random", ways=5, shots=2, queries=1, episode_length=11),
    ):
        data = task.load()
        for key in (KEY, OTHER_KEY):
            x, y = _episode(task, key)
            index = np.rint(x[:, 0] * float(data.std) + float(data.mean)).astype(int)
            true_class = labels[index]
            if task.ways is None:
                np.testing.assert_array_equal(true_class, y)
            else:
                for label in range(task.ways):
                    assert len(set(true_class[y == label])) == 1


# --- suites and arguments -----------------------------------------------------------


@pytest.mark.parametrize("name", suite_names())
def test_every_suite_builds_with_one_spec_for_all_its_tasks(name):
    suite = get_suite(name)
    tasks = suite.meta_train + suite.meta_test
    assert suite.meta_train and suite.meta_test
    assert len({task.spec for task in tasks}) == 1
    if name.endswith("-cpu"):
        assert all(math.prod(t.obs_shape) <= 64 for t in tasks)
        assert all(t.episode_length <= 500 for t in tasks)


@pytest.mark.parametrize(
    "name, fields, named",
    [
        ("imagenet", {}, "imagenet"),
        ("mnist", {"colour": True}, "colour"),
        ("mnist", {"episode_length": "10"}, "'10'"),
        ("mnist", {"episode_length": 0}, "episode_length=0"),
        ("mnist", {"permute_labels": "yes"}, "'yes'"),
        ("mnist", {"num_classes": 11}, "num_classes=11"),
        ("mnist", {"num_classes": 1}, "num_classes=1"),
        ("mnist", {"split": "validation"}, "validation"),
        ("mnist", {"projection": "diagonal"}, "diagonal"),
        ("mnist", {"projection": "fresh", "flatten": False}, "flatten"),
        ("mnist", {"projection_index": 70}, "projection_index=70"),
        ("mnist", {"resize": (0, 8)}, "resize"),
        ("mnist", {"pad_inputs": 10}, "pad_inputs=10"),
        ("mnist", {"pad_classes": 5}, "pad_classes=5"),
        ("mnist", {"dataset": "imagenet"}, "imagenet"),
        ("omniglot", {"episode_length": 10}, "episode_length=6"),
    ],
)
def test_bad_task_arguments_raise_user_errors_naming_the_value(name, fields, named):
    with pytest.raises(UserError) as caught:
        make_task(name, **fields)
    assert named in str(caught.value)


def test_an_unknown_suite_is_a_user_error():
    with pytest.raises(UserError, match="nosuchsuite"):
        get_suite("nosuchsuite")
