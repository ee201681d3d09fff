"""Class names in tfvit.data.info against the owners' own lists."""

import gzip
import pickle
import re

import pytest

from tfvit.data import dataset_info

from tests import owner_files


def test_cifar10_class_names_are_the_archive_metadata(real_cifar10):
    """Real-data extra: the names are the owners' batches.meta (the generated copy's are a copy of this list)."""
    # batches.meta holds only strings and ints; unpickling the owners' file from the real test data is safe.
    meta = pickle.loads(owner_files.cifar_member_bytes(real_cifar10, "cifar10")["batches.meta"], encoding="bytes")
    names = tuple(n.decode() for n in meta[b"label_names"])
    assert dataset_info("cifar10").class_names == names


def test_fashion_mnist_class_names_are_the_readme_table():
    readme = "/usr/share/doc/dataset-fashion-mnist/README.md.gz"
    try:
        with gzip.open(readme, "rt") as f:
            text = f.read()
    except FileNotFoundError:
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    table = dict(re.findall(r"^\| (\d) \| ([^|]+?) \|$", text, flags=re.M))
    assert dataset_info("fashion_mnist").class_names == tuple(table[str(i)] for i in range(10))


def test_class_name_falls_back_to_the_label():
    assert dataset_info("mnist").class_name(7) == "7"
    assert dataset_info("cifar100").class_name(42) == "42"
    assert dataset_info("cifar10").class_name(3) == "cat"
