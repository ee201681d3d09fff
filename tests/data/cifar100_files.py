"""A small CIFAR-100 written in the owners' format, for tests (no real CIFAR-100 copy exists offline): the
writer of tests/owner_files.py with a chosen number of examples."""

from tests.owner_files import arrays, coarse_of, write_cifar


def write_cifar100(folder, counts=None, archive=True):
    """A small CIFAR-100 in the owners' layout (Python 2 pickles of dicts with bytes keys), as
    cifar-100-python.tar.gz or as the extracted folder cifar-100-python/. Returns {split: (images, fine labels,
    coarse labels)}, what the files hold."""
    counts = counts or {"train": 30, "test": 12}
    write_cifar(folder, "cifar100", archive=archive, extracted=not archive, count=counts)
    expected = {}
    for split, count in counts.items():
        images, fine = arrays("cifar100", split, count)
        expected[split] = (images, fine, coarse_of(fine))
    return expected
