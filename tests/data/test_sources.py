"""tfvit.data.sources: reading the owners' files, the tfds fallback and its offline guard, damaged files.

The files are the generated owners'-format copies (tests/owner_files.py, fixture ``owner_data``); the
``test_real_*`` extras repeat the direct-read checks on the real files where they exist (tests/recipes/loading.py).
References are computed here from the raw files (plain pickle on those trusted copies, gzip + numpy.frombuffer on
IDX bytes) and from the generator's own arrays, never through tfvit.
"""

import dataclasses
import gzip
import os
import pickle
import shutil
import socket
import struct
import threading
import time

import numpy as np
import pytest

from tfvit.data import DataError, dataset_info, load, load_arrays
from tfvit.data import sources

from tests import owner_files
from tests.data.cifar100_files import write_cifar100
from tests.recipes.loading import REAL_DATA


def only(tmp_path, source):
    """A fresh folder holding just ``source`` (linked), so a test controls which copy load_arrays finds."""
    folder = tmp_path / f"only_{source.name}"
    folder.mkdir()
    (folder / source.name).symlink_to(source)
    return folder


def raw_idx(path, header_bytes):
    return np.frombuffer(gzip.decompress(path.read_bytes()), np.uint8, offset=header_bytes)


# ---------------------------------------------------------------- CIFAR-10 (generated in the owners' format; real)

def raw_cifar10(folder):
    """{split: (images, labels)} decoded by hand from the pickles in ``folder`` (extracted folder, else archive),
    with plain pickle: only for copies the tests trust (generated here, or the real files). Each row is 1024 red,
    1024 green, 1024 blue values, each plane a row-major 32x32 image. Also the batches' own lengths."""
    members = owner_files.cifar_member_bytes(folder, "cifar10")
    decoded, lengths = {}, {}
    for split, names in owner_files.CIFAR10_BATCHES.items():
        batches = [pickle.loads(members[name], encoding="bytes") for name in names]
        rows = [np.asarray(b[b"data"], np.uint8) for b in batches]
        assert all(r.shape[1:] == (3072,) for r in rows)
        decoded[split] = (np.concatenate([r.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1) for r in rows]),
                          np.concatenate([b[b"labels"] for b in batches]))
        lengths[split] = [len(r) for r in rows]
    return decoded, lengths


def test_cifar10_archive_and_extracted_folder_give_the_raw_pixels(owner_data, tmp_path):
    archive_only = only(tmp_path, owner_data / "cifar-10-python.tar.gz")
    folder_only = only(tmp_path, owner_data / "cifar-10-batches-py")
    from_archive = {s: load_arrays("cifar10", s, data_dir=archive_only) for s in ("train", "test")}
    from_folder = {s: load_arrays("cifar10", s, data_dir=folder_only) for s in ("train", "test")}
    raw, lengths = raw_cifar10(owner_data)
    assert lengths == {"train": [103, 103, 102, 102, 102], "test": [128]}
    for split, count in (("train", 512), ("test", 128)):
        images, labels = from_archive[split]
        for other in (from_folder[split], raw[split], owner_files.arrays("cifar10", split)):
            np.testing.assert_array_equal(images, other[0])
            np.testing.assert_array_equal(labels, other[1])
        assert images.shape == (count, 32, 32, 3) and images.dtype == np.uint8
        assert labels.shape == (count,) and labels.dtype == np.int64
        assert set(labels.tolist()) == set(range(10))

    # One row by hand: planes R, G, B -> channels last, at each batch's first image.
    train_images, train_labels = from_archive["train"]
    members = owner_files.cifar_member_bytes(owner_data, "cifar10")
    for number, batch_file in enumerate(owner_files.CIFAR10_BATCHES["train"]):
        batch = pickle.loads(members[batch_file], encoding="bytes")
        first = sum(lengths["train"][:number])
        expected = np.asarray(batch[b"data"][0], np.uint8).reshape(3, 32, 32).transpose(1, 2, 0)
        np.testing.assert_array_equal(train_images[first], expected)
        np.testing.assert_array_equal(train_labels[first:first + lengths["train"][number]], batch[b"labels"])


def test_real_cifar10_decodes_as_its_raw_pickles(real_cifar10):
    """Real-data extra: tfvit reads the real files (the whole CIFAR-10, or the shared partial copy: the first 1017
    images of each batch) as a direct read of their pickles gives them."""
    raw, lengths = raw_cifar10(real_cifar10)
    for split in ("train", "test"):
        images, labels = load_arrays("cifar10", split, data_dir=real_cifar10)
        np.testing.assert_array_equal(images, raw[split][0])
        np.testing.assert_array_equal(labels, raw[split][1])
        assert images.dtype == np.uint8 and labels.dtype == np.int64 and len(images) == sum(lengths[split]) > 0
        assert set(labels.tolist()) == set(range(10))


def test_cifar10_via_environment_variable_and_limit(owner_data, monkeypatch):
    monkeypatch.setenv("TFVIT_DATA_DIR", str(owner_data))
    images, labels = load_arrays("cifar10", "test", limit=10)
    full_images, full_labels = load_arrays("cifar10", "test", data_dir=owner_data)
    assert len(full_labels) == 128
    np.testing.assert_array_equal(images, full_images[:10])
    np.testing.assert_array_equal(labels, full_labels[:10])


# ---------------------------------------------------------------- MNIST and Fashion-MNIST (generated; real)

def test_mnist_matches_a_direct_read_of_the_idx_files(owner_data, tmp_path):
    mnist = owner_data / "mnist"
    for split, prefix, count in (("train", "train", 512), ("test", "t10k", 128)):
        images, labels = load_arrays("mnist", split, data_dir=owner_data)
        assert images.shape == (count, 28, 28, 1) and images.dtype == np.uint8
        assert labels.shape == (count,) and labels.dtype == np.int64
        # IDX: 16 header bytes for images (magic, count, rows, cols), 8 for labels (magic, count).
        np.testing.assert_array_equal(images[..., 0], raw_idx(mnist / f"{prefix}-images-idx3-ubyte.gz", 16)
                                      .reshape(count, 28, 28))
        np.testing.assert_array_equal(labels, raw_idx(mnist / f"{prefix}-labels-idx1-ubyte.gz", 8))
        expected_images, expected_labels = owner_files.arrays("mnist", split)
        np.testing.assert_array_equal(images, expected_images)
        np.testing.assert_array_equal(labels, expected_labels)

    # Un-gzipped files directly in the data folder work too.
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(gzip.decompress((mnist / f"{name}.gz").read_bytes()))
    plain = load_arrays("mnist", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(plain[0], images)
    np.testing.assert_array_equal(plain[1], labels)


def test_real_mnist_matches_a_direct_read_of_the_idx_files(real_mnist):
    """Real-data extra: the real IDX files (all of MNIST, or the shared copy: the first 17,435 training images and
    all 10,000 test images), read by tfvit from the data folder, against gzip + numpy on their bytes."""
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = load_arrays("mnist", split, data_dir=REAL_DATA)
        header = gzip.decompress((real_mnist / f"{prefix}-images-idx3-ubyte.gz").read_bytes())[:16]
        assert struct.unpack(">4I", header)[0] == 2051 and struct.unpack(">4I", header)[2:] == (28, 28)
        count = struct.unpack(">4I", header)[1]
        assert images.shape == (count, 28, 28, 1) and labels.shape == (count,) and count > 0
        np.testing.assert_array_equal(images[..., 0], raw_idx(real_mnist / f"{prefix}-images-idx3-ubyte.gz", 16)
                                      .reshape(count, 28, 28))
        np.testing.assert_array_equal(labels, raw_idx(real_mnist / f"{prefix}-labels-idx1-ubyte.gz", 8))
        assert set(labels.tolist()) == set(range(10))


def test_fashion_mnist_falls_back_to_the_debian_folder_without_a_data_dir(owner_data, tmp_path, monkeypatch):
    # The generated Fashion-MNIST stands in for Debian's package folder (the four files directly in it).
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", owner_data / "fashion-mnist")
    for split in ("train", "test"):
        images, labels = load_arrays("fashion_mnist", split)
        expected_images, expected_labels = owner_files.arrays("fashion_mnist", split)
        np.testing.assert_array_equal(images, expected_images)
        np.testing.assert_array_equal(labels, expected_labels)
    # A data folder without Fashion-MNIST falls through to the package folder too.
    images, _ = load_arrays("fashion_mnist", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(images, owner_files.arrays("fashion_mnist", "test")[0])
    # MNIST has no such fallback: after the data folder comes tensorflow-datasets (stood in for here: tfds reads
    # TFDS_DATA_DIR once, when first imported), never the package folder.
    def no_tfds(info, split, label_key, limit, searched):
        raise DataError("searched: " + "; ".join(searched))

    monkeypatch.setattr(sources, "_read_tfds", no_tfds)
    with pytest.raises(DataError, match="searched: ") as error:
        load_arrays("mnist", "test", data_dir=tmp_path)
    assert str(tmp_path) in str(error.value) and "fashion-mnist" not in str(error.value)


def test_fashion_mnist_comes_from_debians_package_without_a_data_dir(fashion_dir):
    for split, prefix, count in (("train", "train", 60000), ("test", "t10k", 10000)):
        images, labels = load_arrays("fashion_mnist", split)
        assert images.shape == (count, 28, 28, 1) and labels.shape == (count,)
        np.testing.assert_array_equal(images[-1, ..., 0], raw_idx(fashion_dir / f"{prefix}-images-idx3-ubyte.gz", 16)
                                      [-784:].reshape(28, 28))
        np.testing.assert_array_equal(labels, raw_idx(fashion_dir / f"{prefix}-labels-idx1-ubyte.gz", 8))
        assert np.bincount(labels).tolist() == [count // 10] * 10  # the published, balanced class counts


# ---------------------------------------------------------------- CIFAR-100 (synthetic, official layout)

@pytest.mark.parametrize("archive", [True, False])
def test_cifar100_fine_and_coarse_labels(tmp_path, archive):
    expected = write_cifar100(tmp_path, archive=archive)
    for split in ("train", "test"):
        images, fine, coarse = expected[split]
        got_images, got_fine = load_arrays("cifar100", split, data_dir=tmp_path)
        np.testing.assert_array_equal(got_images, images)
        np.testing.assert_array_equal(got_fine, fine)
        np.testing.assert_array_equal(load_arrays("cifar100", split, data_dir=tmp_path, label_mode="coarse")[1], coarse)
    with pytest.raises(ValueError, match="label_mode='coarse' exists only for cifar100"):
        load_arrays("cifar10", label_mode="coarse")


# ---------------------------------------------------------------- damaged and hostile files

def test_truncated_or_garbage_cifar_archive_is_reported_by_name(owner_data, tmp_path):
    data = (owner_data / "cifar-10-python.tar.gz").read_bytes()
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz is not a readable \.tar\.gz.*truncated") as error:
        load_arrays("cifar10", "test", data_dir=tmp_path)
    assert error.value.__cause__ is not None
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz"):
        load_arrays("cifar10", "train", data_dir=tmp_path)


def test_damaged_pickles_and_missing_batches_in_the_extracted_folder(owner_data, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    shutil.copytree(owner_data / "cifar-10-batches-py", folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"data_batch_3 is missing"):
        load_arrays("cifar10", "train", data_dir=tmp_path)
    good = (folder / "test_batch").read_bytes()
    at = good.index(b"labels") + len(b"labels")  # garbage in the pickle's structure (the label list), not in pixels
    (folder / "test_batch").write_bytes(good[:at] + b"\xff" * 50 + good[at + 50:])
    with pytest.raises(DataError, match=r"test_batch is not a readable CIFAR pickle"):
        load_arrays("cifar10", "test", data_dir=tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, 3))
    with pytest.raises(DataError, match=r"test_batch: b'data' must be a uint8 array of shape \(N, 3072\)"):
        load_arrays("cifar10", "test", data_dir=tmp_path)


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", range(6))
def test_a_pickle_that_calls_a_function_is_refused_without_running_it(tmp_path, protocol):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "code_ran"
    batch = {b"data": RunsACommand(marker), b"labels": [0]}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=protocol))
    with pytest.raises(DataError, match=r"test_batch refers to (posix|os)\.system.*not loaded"):
        load_arrays("cifar10", "test", data_dir=tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(6))
def test_a_batch_resaved_by_python3_loads_under_every_protocol(tmp_path, protocol):
    """An official batch read with pickle.load(f, encoding="bytes") and saved again by Python 3 uses globals the
    official files lack (_codecs.encode and bytes under protocols 0-2, numpy's _frombuffer under 5): it decodes to
    the images and labels that were written."""
    batch = pickle.loads(owner_files.cifar10_members({"train": 10, "test": 12})["test_batch"], encoding="bytes")
    assert sorted(batch) == [b"batch_label", b"data", b"filenames", b"labels"]
    batch[b"batch_label"] = b""  # pickled as bytes() under protocols 0-2
    (tmp_path / "cifar-10-batches-py").mkdir()
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump(batch, f, protocol=protocol)
    images, labels = load_arrays("cifar10", "test", data_dir=tmp_path)
    expected_images, expected_labels = owner_files.arrays("cifar10", "test", 12)
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)


def test_the_globals_a_resaved_batch_needs_are_refused_in_any_other_form(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    # _codecs.encode("x", "rot13") and bytes(10**9), written opcode by opcode (protocol 2).
    rot13 = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R."
    (folder / "test_batch").write_bytes(rot13)
    with pytest.raises(DataError, match=r"test_batch calls _codecs\.encode\(str, 'rot13'\).*not loaded"):
        load_arrays("cifar10", "test", data_dir=tmp_path)
    (folder / "test_batch").write_bytes(b"\x80\x02c__builtin__\nbytes\nJ\x00\xca\x9a\x3b\x85R.")
    with pytest.raises(DataError, match=r"test_batch is not a readable CIFAR pickle \(TypeError"):
        load_arrays("cifar10", "test", data_dir=tmp_path)


def idx_bytes(magic, dims, values):
    return struct.pack(">I" + "I" * len(dims), magic, *dims) + bytes(values)


def write_gz(path, payload):
    path.write_bytes(gzip.compress(payload))


def test_damaged_idx_files_are_reported_by_name(owner_data, tmp_path):
    folder = tmp_path / "mnist"
    shutil.copytree(owner_data / "mnist", folder)
    images_gz = folder / "t10k-images-idx3-ubyte.gz"
    original = images_gz.read_bytes()

    images_gz.write_bytes(original[: len(original) // 2])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz is not a readable gzip file.*truncated") as error:
        load_arrays("mnist", "test", data_dir=tmp_path)
    assert error.value.__cause__ is not None

    shutil.copy(folder / "t10k-labels-idx1-ubyte.gz", images_gz)  # a labels file (magic 2049) under the images name
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz is not an IDX file.*magic number 2049, "
                                        r"expected 2051"):
        load_arrays("mnist", "test", data_dir=tmp_path)

    write_gz(images_gz, idx_bytes(2051, (100, 28, 28), [0] * (99 * 784)))
    with pytest.raises(DataError, match=r"announces 100x28x28 = 78400 values but the file holds 77616"):
        load_arrays("mnist", "test", data_dir=tmp_path)

    write_gz(images_gz, idx_bytes(2051, (6, 28, 28), [0] * (6 * 784)))
    write_gz(folder / "t10k-labels-idx1-ubyte.gz", idx_bytes(2049, (5,), [0] * 5))
    with pytest.raises(DataError, match=r"holds 6 images but .*t10k-labels-idx1-ubyte\.gz holds 5 labels"):
        load_arrays("mnist", "test", data_dir=tmp_path)

    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"only one of the two mnist test files: t10k-labels-idx1-ubyte\.gz"):
        load_arrays("mnist", "test", data_dir=tmp_path)


def test_a_data_dir_that_is_not_a_folder(tmp_path):
    with pytest.raises(DataError, match=r"data_dir=.*nowhere' is not a folder.*cifar-10-python\.tar\.gz"):
        load_arrays("cifar10", data_dir=tmp_path / "nowhere")


def test_unknown_names_and_splits_list_the_choices():
    with pytest.raises(ValueError, match=r"name must be one of cifar10, cifar100, mnist, fashion_mnist; got 'cifar1'"):
        load_arrays("cifar1")
    with pytest.raises(ValueError, match=r"split must be one of train, test; got 'validation'"):
        load_arrays("mnist", "validation")
    with pytest.raises(ValueError, match=r"limit must be a positive integer"):
        load_arrays("mnist", limit=0)


# ---------------------------------------------------------------- tensorflow-datasets and the offline guard

def test_offline_without_a_local_copy_fails_fast_and_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TFVIT_OFFLINE", "1")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))  # tfds has no prepared copy here
    start = time.monotonic()
    with pytest.raises(DataError) as error:
        load("cifar100", "train", 32)
    assert time.monotonic() - start < 20  # a hang guard, not a speed test
    message = str(error.value)
    for part in ("--data-dir", "data_dir=", "TFVIT_DATA_DIR", "cifar-100-python.tar.gz", "TFVIT_OFFLINE",
                 str(tmp_path)):
        assert part in message


def test_download_check_reports_unreachable_hosts_and_never_waits_long(monkeypatch):
    info = dataset_info("mnist")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    try:
        reachable = dataclasses.replace(info, download_host=("127.0.0.1", port))
        assert sources.download_blocker(reachable) is None
    finally:
        listener.close()
    closed = dataclasses.replace(info, download_host=("127.0.0.1", port))
    assert "cannot be reached" in sources.download_blocker(closed)

    # A connection attempt that does not return (a stuck DNS lookup, a silent firewall) costs at most the timeout.
    release = threading.Event()

    def stuck(*args, **kwargs):
        release.wait(30)
        raise OSError("released by the test")

    monkeypatch.setattr(socket, "create_connection", stuck)
    monkeypatch.setattr(sources, "CONNECT_TIMEOUT_S", 0.5)
    start = time.monotonic()
    try:
        assert "no answer within 0.5 s" in sources.download_blocker(info)
        assert time.monotonic() - start < 5
    finally:
        release.set()


def test_tensorflow_datasets_examples_become_image_label_arrays(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(sources, "download_blocker", lambda info: None)  # as if online; mock_data never downloads
    with tfds.testing.mock_data(num_examples=7):
        images, coarse = load_arrays("cifar100", "train", label_mode="coarse")
        _, fine = load_arrays("cifar100", "train")
        reference = next(iter(tfds.as_numpy(tfds.load("cifar100", split="train").batch(100))))
        few_images, _ = load_arrays("cifar100", "train", limit=3)
        batches = list(load("cifar100", "test", 4, cache=False, normalize=False))
    assert images.shape == (7, 32, 32, 3) and images.dtype == np.uint8 and coarse.dtype == np.int64
    np.testing.assert_array_equal(images, reference["image"])
    np.testing.assert_array_equal(fine, reference["label"])
    np.testing.assert_array_equal(coarse, reference["coarse_label"])
    np.testing.assert_array_equal(few_images, images[:3])
    assert [b[0].shape for b in batches] == [(4, 32, 32, 3), (3, 32, 32, 3)]
    np.testing.assert_allclose(np.concatenate([b[0] for b in batches]) * 255, images, atol=1e-3)


def test_dataset_info_lists_the_owners_file_names():
    cifar10 = dataset_info("cifar10")
    assert cifar10.num_classes == 10 and cifar10.image_shape == (32, 32, 3)
    assert cifar10.files == ("cifar-10-python.tar.gz", "data_batch_1", "data_batch_2", "data_batch_3",
                             "data_batch_4", "data_batch_5", "test_batch")
    assert dataset_info("cifar100").files == ("cifar-100-python.tar.gz", "train", "test")
    assert dataset_info("cifar100").num_coarse_classes == 20
    assert dataset_info("fashion_mnist").files == ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                                   "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    assert (dataset_info("mnist").mean, dataset_info("mnist").std) == ((0.1307,), (0.3081,))
