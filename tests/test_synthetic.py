"""The synthetic datasets "random" and "sum": fixed, deterministic, rule-abiding."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vsml_bench.datasets import dataset_info, load_dataset
from vsml_bench.errors import UserError
from vsml_bench.tasks import synthetic


def test_random_has_exactly_20_distinct_gaussian_images_with_10_classes():
    images, labels = synthetic.load_random("train")
    assert images.shape == (20, 28, 28, 1) and images.dtype == np.float32
    assert len(np.unique(images.reshape(20, -1), axis=0)) == 20
    assert sorted(labels.tolist()) == sorted(list(range(10)) * 2)
    assert abs(images.mean()) < 0.05 and abs(images.std() - 1.0) < 0.05


def test_random_is_the_same_on_every_call_and_in_both_splits():
    train_images, train_labels = synthetic.load_random("train")
    test_images, test_labels = synthetic.load_random("test")
    np.testing.assert_array_equal(train_images, test_images)
    np.testing.assert_array_equal(train_labels, test_labels)
    again_images, again_labels = synthetic.load_random("train")
    np.testing.assert_array_equal(train_images, again_images)
    np.testing.assert_array_equal(train_labels, again_labels)


def test_random_labels_are_not_tied_to_image_order():
    _, labels = synthetic.load_random("train")
    assert labels.tolist() != [i % 10 for i in range(20)]


def test_sum_label_is_whether_the_pixel_sum_is_nonnegative():
    images, labels = synthetic.make_sum(seed=7, num_images=300)
    assert images.shape == (300, 28, 28, 1) and images.dtype == np.float32
    for image, label in zip(images, labels):
        assert label == int(math.fsum(image.ravel().tolist()) >= 0)
    assert 0.35 < labels.mean() < 0.65


def test_sum_image_means_spread_uniformly_over_minus_one_to_one():
    images, _ = synthetic.make_sum(seed=8, num_images=4000)
    means = images.reshape(len(images), -1).mean(axis=1)
    # The mean of 784 unit Gaussians around mu has std 1/28; 5 of those bound it.
    assert means.min() > -1 - 5 / 28 and means.max() < 1 + 5 / 28
    quarters = np.histogram(means, bins=[-2, -0.5, 0, 0.5, 2])[0] / len(means)
    np.testing.assert_allclose(quarters, 0.25, atol=0.03)
    noise = images - means[:, None, None, None]
    assert abs(noise.std() - 1.0) < 0.01


def test_sum_is_deterministic_and_its_splits_differ():
    first = synthetic.make_sum(synthetic.SUM_SEEDS["test"], 50)
    second = synthetic.make_sum(synthetic.SUM_SEEDS["test"], 50)
    other = synthetic.make_sum(synthetic.SUM_SEEDS["train"], 50)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.allclose(first[0], other[0])


def test_sum_test_split_is_the_fixed_set_of_10000():
    images, labels = synthetic.load_sum("test")
    assert images.shape == (10_000, 28, 28, 1) and images.dtype == np.float32
    expected = synthetic.make_sum(synthetic.SUM_SEEDS["test"], 10_000)
    np.testing.assert_array_equal(images, expected[0])
    sums = images.reshape(len(images), -1).astype(np.float64).sum(axis=1)
    np.testing.assert_array_equal(labels, (sums >= 0).astype(labels.dtype))


def test_synthetic_datasets_are_registered_and_load_through_the_registry():
    assert dataset_info("random").num_classes == 10
    assert dataset_info("sum").num_classes == 2
    assert dataset_info("sum").image_shape == (28, 28, 1)
    data = load_dataset("random", "test")
    assert data.class_count.tolist() == [2] * 10


@pytest.mark.parametrize("load", [synthetic.load_random, synthetic.load_sum])
def test_unknown_split_is_a_user_error(load):
    with pytest.raises(UserError, match="valid"):
        load("valid")
