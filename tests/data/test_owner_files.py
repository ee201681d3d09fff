"""The generated owners'-format datasets (tests/owner_files.py) the data and recipe tests run on: learnable,
deterministic, and (real-data extras) laid out exactly as the real files are."""

import gzip
import itertools
import pickle
import pickletools
import tarfile

import numpy as np
import pytest

from tests import owner_files


@pytest.mark.parametrize("name, floor", [("mnist", 0.7), ("fashion_mnist", 0.7), ("cifar10", 0.7),
                                         ("cifar100", 0.25)])
def test_the_images_are_learnable_from_the_training_split(name, floor):
    """A nearest-class-mean classifier fit on the training split classifies the test split far above chance
    (0.1, CIFAR-100 0.01); with the training labels permuted it does not: the labels carry the signal."""
    (x, y), (xt, yt) = owner_files.arrays(name, "train"), owner_files.arrays(name, "test")
    x, xt = x.reshape(len(x), -1) / 255.0, xt.reshape(len(xt), -1) / 255.0

    def accuracy(labels):
        means = np.stack([x[labels == c].mean(axis=0) for c in range(owner_files.NUM_CLASSES[name])])
        return (((xt[:, None] - means[None]) ** 2).sum(axis=-1).argmin(axis=1) == yt).mean()

    assert accuracy(y) > floor
    assert accuracy(np.random.default_rng(0).permutation(y)) < 0.3


def test_the_datasets_are_deterministic_balanced_and_distinct(tmp_path):
    for name in owner_files.NUM_CLASSES:
        images, labels = owner_files.arrays(name, "train")
        assert np.bincount(labels).max() - np.bincount(labels).min() <= 1
        assert len({image.tobytes() for image in images}) == len(images)
        test_images, _ = owner_files.arrays(name, "test")
        assert not {image.tobytes() for image in test_images} & {image.tobytes() for image in images}
    # Two writes give the same bytes (the arrays are recomputed, not only cached).
    first = owner_files.write_all(tmp_path / "first")
    owner_files.arrays.cache_clear()
    second = owner_files.write_all(tmp_path / "second")
    for path in sorted(p for p in first.rglob("*") if p.is_file()):
        assert path.read_bytes() == (second / path.relative_to(first)).read_bytes(), path


def pickle_shape(raw):
    """The opcodes of a pickle with their global names, every int opcode (BININT1 / 2 / BININT: the width follows
    the value) as one, runs of one opcode collapsed: the layout, not the data."""
    ops = [("INT" if op.name.startswith("BININT") else op.name, arg if op.name in ("PROTO", "GLOBAL") else None)
           for op, arg, _ in pickletools.genops(raw)]
    return [key for key, _ in itertools.groupby(ops)]


def test_the_cifar10_files_are_laid_out_as_the_real_ones(real_cifar10, owner_data):
    """Real-data extra: the generated pickles have the real ones' opcodes, globals (numpy.core.multiarray
    ._reconstruct, numpy.ndarray, numpy.dtype), protocol, keys and value types; the archive the same members."""
    real = owner_files.cifar_member_bytes(real_cifar10, "cifar10")
    made = owner_files.cifar_member_bytes(owner_data, "cifar10")
    for member in ("data_batch_1", "test_batch", "batches.meta"):
        assert pickle_shape(made[member]) == pickle_shape(real[member]), member
        real_dict, made_dict = (pickle.loads(m[member], encoding="bytes") for m in (real, made))
        assert set(made_dict) == set(real_dict), member
        for key in real_dict:
            assert type(made_dict[key]) is type(real_dict[key]), (member, key)
    real_batch = pickle.loads(real["data_batch_1"], encoding="bytes")
    made_batch = pickle.loads(made["data_batch_1"], encoding="bytes")
    assert made_batch[b"data"].dtype == real_batch[b"data"].dtype and made_batch[b"data"].shape[1:] == (3072,)
    if (real_cifar10 / "cifar-10-python.tar.gz").is_file():
        with tarfile.open(real_cifar10 / "cifar-10-python.tar.gz", "r:gz") as tar:
            real_names = {(m.name, m.type) for m in tar if m.name != "cifar-10-batches-py/readme.html"}
        with tarfile.open(owner_data / "cifar-10-python.tar.gz", "r:gz") as tar:
            made_names = {(m.name, m.type) for m in tar if m.name != "cifar-10-batches-py/readme.html"}
        assert made_names == real_names


def idx_header(path):
    raw = gzip.decompress(path.read_bytes())
    magic = int.from_bytes(raw[:4], "big")
    return magic, [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(magic - 0x0800)], len(raw)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_the_idx_files_are_laid_out_as_the_real_ones(name, owner_data, request):
    """Real-data extra (MNIST: the real copy; Fashion-MNIST: Debian's package): the same four file names, gzip
    streams, magic numbers and dimensions (but the count), and no byte after the values."""
    real = request.getfixturevalue("real_mnist" if name == "mnist" else "fashion_dir")
    made = owner_data / owner_files.IDX_FOLDERS[name]
    for file_name in itertools.chain(*owner_files.IDX_NAMES.values()):
        real_magic, real_dims, real_size = idx_header(real / file_name)
        magic, dims, size = idx_header(made / file_name)
        assert magic == real_magic and dims[1:] == real_dims[1:], file_name
        for dimensions, total in ((dims, size), (real_dims, real_size)):
            assert total == 4 + 4 * len(dimensions) + int(np.prod(dimensions)), file_name
