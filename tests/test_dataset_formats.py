"""The loaders of downloaded datasets on small files written here in the real formats.

Each test writes a miniature of the publisher's file, serves it through a file:// URL
under the publisher's file name, and checks that the loader returns exactly the pixels
(orientation included) and labels that were written.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
import zipfile

import numpy as np
import pytest
import scipy.io
from PIL import Image

from vsml_bench.datasets import dataset_info
from vsml_bench.datasets.checks import DataFileError
from vsml_bench.datasets.download import RemoteFile
from vsml_bench.errors import UserError
from vsml_bench.tasks import cifar10, emnist, kmnist, omniglot, svhn


def serve(tmp_path, files: dict[str, bytes]) -> list[RemoteFile]:
    """Write `files` under tmp_path/publisher and describe them as remote files."""
    folder = tmp_path / "publisher"
    folder.mkdir(exist_ok=True)
    remotes = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        remotes.append(RemoteFile((folder / name).as_uri(), name, digest, len(data)))
    return remotes


def idx_bytes(array: np.ndarray) -> bytes:
    """An uncompressed IDX file of a uint8 array, header written field by field."""
    header = bytes([0, 0, 0x08, array.ndim])
    for dim in array.shape:
        header += struct.pack(">I", dim)
    return header + array.astype(np.uint8).tobytes()


def test_kmnist_reads_idx_gz_files(tmp_path):
    rng = np.random.default_rng(0)
    data = {
        split: (rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
        for split, n in (("train", 5), ("t10k", 3))
    }
    files = {}
    for prefix, (images, labels) in data.items():
        files[f"{prefix}-images-idx3-ubyte.gz"] = gzip.compress(idx_bytes(images))
        files[f"{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(labels))
    remotes = serve(tmp_path, files)
    assert {r.filename for r in remotes} == {f.filename for f in kmnist.FILES}

    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = kmnist.load_split(split, remotes, root=tmp_path / "data")
        assert images.shape == (len(data[prefix][0]), 28, 28, 1)
        assert images.dtype == np.uint8
        np.testing.assert_array_equal(images[..., 0], data[prefix][0])
        np.testing.assert_array_equal(labels, data[prefix][1])
    assert (tmp_path / "data" / "kmnist" / "t10k-labels-idx1-ubyte.gz").is_file()


def test_kmnist_rejects_mismatched_image_and_label_counts(tmp_path):
    files = {
        "train-images-idx3-ubyte.gz": gzip.compress(idx_bytes(np.zeros((4, 28, 28)))),
        "train-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(np.zeros(3))),
    }
    with pytest.raises(DataFileError, match="labels"):
        kmnist.load_split("train", serve(tmp_path, files), root=tmp_path)


def emnist_archive(upright: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    """A zip like NIST's gzip.zip: gz IDX members under gzip/, images transposed."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for prefix, (images, labels) in upright.items():
            stored = np.stack([image.T for image in images])
            for kind, array in (("images-idx3", stored), ("labels-idx1", labels)):
                name = f"gzip/emnist-{prefix}-{kind}-ubyte.gz"
                archive.writestr(name, gzip.compress(idx_bytes(array)))
    return buffer.getvalue()


def test_emnist_reads_byclass_members_from_the_zip_and_turns_images_upright(tmp_path):
    rng = np.random.default_rng(1)
    bar = np.zeros((28, 28), np.uint8)
    bar[0, :] = 255  # a bar along the top row: it must stay a row, not a column
    train = (
        np.stack([bar, *rng.integers(0, 256, (3, 28, 28))]),
        np.array([0, 61, 9, 36]),
    )
    test = (rng.integers(0, 256, (2, 28, 28)), np.array([5, 40]))
    decoy = (rng.integers(0, 256, (1, 28, 28)), np.array([3]))
    archive = emnist_archive(
        {"byclass-train": train, "byclass-test": test, "digits-train": decoy}
    )
    remotes = serve(tmp_path, {"gzip.zip": archive})
    assert [r.filename for r in remotes] == [f.filename for f in emnist.FILES]

    for split, (expected_images, expected_labels) in (("train", train), ("test", test)):
        images, labels = emnist.load_split(split, remotes, root=tmp_path)
        assert images.shape == (len(expected_labels), 28, 28, 1)
        np.testing.assert_array_equal(images[..., 0], expected_images)
        np.testing.assert_array_equal(labels, expected_labels)
    images, _ = emnist.load_split("train", remotes, root=tmp_path)
    assert images[0, 0, :, 0].min() == 255 and images[0, 1:, :, 0].max() == 0


def test_emnist_reports_a_missing_member(tmp_path):
    archive = emnist_archive({"byclass-test": (np.zeros((1, 28, 28)), np.zeros(1))})
    remotes = serve(tmp_path, {"gzip.zip": archive})
    with pytest.raises(DataFileError, match="emnist-byclass-train-images"):
        emnist.load_split("train", remotes, root=tmp_path)


def cifar_batch(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Records of one label byte then the R, G and B planes, each row by row."""
    out = bytearray()
    for image, label in zip(images, labels):
        out.append(int(label))
        for channel in range(3):
            for row in range(32):
                for col in range(32):
                    out.append(int(image[row, col, channel]))
    return bytes(out)


def test_cifar10_reads_the_binary_tar_gz_in_batch_order(tmp_path):
    rng = np.random.default_rng(2)
    batches = {
        name: (rng.integers(0, 256, (2, 32, 32, 3)), rng.integers(0, 10, 2))
        for name in [*cifar10.BATCHES["train"], "test_batch.bin"]
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        # Stored out of order, with an unrelated member, as a check of the ordering.
        names = ["batches.meta.txt", *reversed(list(batches))]
        for name in names:
            data = (
                b"airplane\n" if name.endswith(".txt") else cifar_batch(*batches[name])
            )
            member = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    remotes = serve(tmp_path, {"cifar-10-binary.tar.gz": buffer.getvalue()})
    assert [r.filename for r in remotes] == [f.filename for f in cifar10.FILES]

    images, labels = cifar10.load_split("train", remotes, root=tmp_path)
    assert images.shape == (10, 32, 32, 3) and images.dtype == np.uint8
    train = [batches[name] for name in cifar10.BATCHES["train"]]
    np.testing.assert_array_equal(images, np.concatenate([b[0] for b in train]))
    np.testing.assert_array_equal(labels, np.concatenate([b[1] for b in train]))

    images, labels = cifar10.load_split("test", remotes, root=tmp_path)
    np.testing.assert_array_equal(images, batches["test_batch.bin"][0])
    np.testing.assert_array_equal(labels, batches["test_batch.bin"][1])


def test_cifar10_rejects_a_truncated_batch():
    with pytest.raises(DataFileError, match="3073"):
        cifar10.parse_cifar_batch(bytes(3073 * 2 - 1))


def test_svhn_reads_mat_files_and_maps_label_10_to_digit_0(tmp_path):
    rng = np.random.default_rng(3)
    written = {}
    files = {}
    for name, digits in (("train_32x32.mat", [0, 1, 9]), ("test_32x32.mat", [0, 7])):
        X = rng.integers(0, 256, (32, 32, 3, len(digits))).astype(np.uint8)
        y = np.array([[10 if d == 0 else d] for d in digits], np.uint8)
        buffer = io.BytesIO()
        scipy.io.savemat(buffer, {"X": X, "y": y})
        files[name] = buffer.getvalue()
        written[name] = (X, digits)
    remotes = serve(tmp_path, files)
    assert {r.filename for r in remotes} == {f.filename for f in svhn.FILES}

    for split in ("train", "test"):
        X, digits = written[f"{split}_32x32.mat"]
        images, labels = svhn.load_split(split, remotes, root=tmp_path)
        assert images.shape == (len(digits), 32, 32, 3) and images.dtype == np.uint8
        for i in range(len(digits)):
            np.testing.assert_array_equal(images[i], X[:, :, :, i])
        assert labels.tolist() == digits


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Area-weighted downsampling: each output pixel averages the input it covers."""
    n = image.shape[0]
    scale = n / size
    weights = np.zeros((size, n))
    for i in range(size):
        for j in range(n):
            overlap = min(j + 1, (i + 1) * scale) - max(j, i * scale)
            weights[i, j] = max(overlap, 0.0) / scale
    return weights @ image.astype(np.float64) @ weights.T


def test_omniglot_reads_png_folders_inverts_resizes_and_numbers_classes(tmp_path):
    rng = np.random.default_rng(4)
    characters = {
        "Latin/character02": 2,
        "Greek/character01": 2,
        "Latin/character01": 3,
    }
    drawings = {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for cls, count in characters.items():
            for k in range(count):
                ink = rng.random((105, 105)) < 0.2
                ink[:, :50] = False  # strokes only on the right: shows a flip
                drawings[cls, k] = ink
                png = io.BytesIO()
                Image.fromarray(~ink).convert("1").save(png, format="PNG")
                archive.writestr(f"images_background/{cls}/{k:04d}.png", png.getvalue())
    remotes = serve(tmp_path, {"images_background.zip": buffer.getvalue()})

    images, labels = omniglot.load_split("train", remotes, root=tmp_path)

    order = ["Greek/character01", "Latin/character01", "Latin/character02"]
    expected_labels = [
        order.index(cls) for cls in order for _ in range(characters[cls])
    ]
    assert labels.tolist() == expected_labels
    assert images.shape == (7, 28, 28, 1) and images.dtype == np.uint8
    i = 0
    for cls in order:
        for k in range(characters[cls]):
            expected = area_resize(255.0 * drawings[cls, k], 28)
            np.testing.assert_allclose(images[i, ..., 0], expected, atol=0.5 + 1e-6)
            i += 1
    assert images[..., :13, 0].max() == 0 and images[..., 14:, 0].max() > 0


def test_omniglot_resizing_by_an_integer_factor_averages_blocks():
    rng = np.random.default_rng(5)
    ink = rng.random((56, 56)) < 0.5
    png = io.BytesIO()
    Image.fromarray(~ink).convert("1").save(png, format="PNG")
    small = omniglot.preprocess(png.getvalue(), image_size=28)
    block_means = 255.0 * ink.reshape(28, 2, 28, 2).mean(axis=(1, 3))
    np.testing.assert_array_equal(small, np.rint(block_means))


def test_omniglot_archive_names_match_the_published_files():
    assert sorted(omniglot.ARCHIVES.values()) == sorted(
        f.filename for f in omniglot.FILES
    )


@pytest.mark.parametrize(
    "name, num_classes, shape",
    [
        ("kmnist", 10, (28, 28, 1)),
        ("emnist", 62, (28, 28, 1)),
        ("cifar10", 10, (32, 32, 3)),
        ("svhn", 10, (32, 32, 3)),
        ("omniglot", 964, (28, 28, 1)),
    ],
)
def test_downloaded_datasets_are_registered_with_their_shapes(name, num_classes, shape):
    info = dataset_info(name)
    assert (info.num_classes, info.image_shape, info.bundled) == (
        num_classes,
        shape,
        False,
    )


@pytest.mark.parametrize("module", [kmnist, emnist, cifar10, svhn, omniglot])
def test_unknown_split_is_a_user_error_before_any_download(module, tmp_path):
    with pytest.raises(UserError, match="validation"):
        module.load_split("validation", files=(), root=tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("module", [kmnist, emnist, cifar10, svhn, omniglot])
def test_published_files_have_a_url_sha256_and_size(module):
    for remote in module.FILES:
        assert remote.url.startswith(("http://", "https://"))
        assert remote.url.endswith(remote.filename)
        assert len(remote.sha256) == 64 and int(remote.sha256, 16) >= 0
        assert remote.size and remote.size > 0
