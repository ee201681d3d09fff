"""A small CIFAR-100 written in the owners' format, for tests (no real CIFAR-100 copy exists offline)."""

import io
import pickle
import tarfile

import numpy as np


def write_cifar100(folder, counts=None, archive=True):
    """A small CIFAR-100 in the owners' layout: pickled dicts with bytes keys (protocol 3 references the same
    three numpy globals as the official files), in cifar-100-python.tar.gz or the extracted folder."""
    rng = np.random.default_rng(7)
    expected = {}
    members = {}
    for split, count in (counts or {"train": 30, "test": 12}).items():
        images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        fine = rng.integers(0, 100, count)
        coarse = fine % 20
        rows = images.transpose(0, 3, 1, 2).reshape(count, 3072)  # R plane, G plane, B plane
        members[split] = pickle.dumps({b"batch_label": b"synthetic", b"filenames": [b"x.png"] * count,
                                       b"data": rows, b"fine_labels": fine.tolist(),
                                       b"coarse_labels": coarse.tolist()}, protocol=3)
        expected[split] = (images, fine, coarse)
    members["meta"] = pickle.dumps({b"fine_label_names": [b"c"] * 100, b"coarse_label_names": [b"s"] * 20}, protocol=3)
    if archive:
        with tarfile.open(folder / "cifar-100-python.tar.gz", "w:gz") as tar:
            for name, payload in members.items():
                info = tarfile.TarInfo(f"cifar-100-python/{name}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    else:
        (folder / "cifar-100-python").mkdir()
        for name, payload in members.items():
            (folder / "cifar-100-python" / name).write_bytes(payload)
    return expected
