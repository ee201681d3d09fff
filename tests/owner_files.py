"""Small datasets written in their owners' exact file formats, so that the data and recipe tests run on any machine.

``write_all(folder)`` writes, byte for byte in the layouts tfvit.data.sources reads (and the owners publish):

- ``mnist/`` and ``fashion-mnist/``: the four gzipped IDX files each (``train-images-idx3-ubyte.gz``, ...): magic
  number 2051 (images) / 2049 (labels), one big-endian uint32 per dimension, then the unsigned bytes row-major.
- ``cifar-10-python.tar.gz`` and its extracted folder ``cifar-10-batches-py/`` (``data_batch_1..5``,
  ``test_batch``, ``batches.meta``, ``readme.html``), and ``cifar-100-python.tar.gz`` (``train``, ``test``,
  ``meta``). Each batch is a pickled dict as Python 2's cPickle wrote the official files: protocol 2, str keys
  (``b"data"``, ``b"labels"`` / ``b"fine_labels"`` and ``b"coarse_labels"``, ``b"batch_label"``,
  ``b"filenames"``), ``b"data"`` a uint8 numpy array (N, 3072) of 1024 red, 1024 green, 1024 blue values per
  row-major 32x32 image, pickled through ``numpy.core.multiarray._reconstruct`` exactly as the real files are.

The images are learnable but not trivial: each class has its own pattern (digit-like strokes, garment-like
silhouettes, coloured gratings with a class orientation), drawn per example with a random shift or phase, a
random contrast and pixel noise, so a classifier must learn the pattern, and a model trained on the training
split classifies the test split well above chance. Everything is a deterministic function of the dataset's name
and split: ``arrays(name, split)`` gives the exact images and labels that the files hold.
"""

import functools
import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

# Examples per split: as many as the tests read (the recipe tests use at most 256 training and 64 test
# examples; test_datasets shuffles 512), no more: the files stay small and quick to write.
SIZES = {"train": 512, "test": 128}
NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100}
IDX_FOLDERS = {"mnist": "mnist", "fashion_mnist": "fashion-mnist"}
IDX_NAMES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
CIFAR10_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
# The owners' class names (batches.meta / meta).
CIFAR10_LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_SEEDS = {"mnist": 11, "fashion_mnist": 12, "cifar10": 13, "cifar100": 14}


def coarse_of(fine):
    """The synthetic CIFAR-100's superclass of each fine class (a fixed map onto 20 superclasses of 5 classes)."""
    return np.asarray(fine) % 20


# ---------------------------------------------------------------- the images

@functools.lru_cache(maxsize=None)
def arrays(name, split, count=None):
    """The synthetic ``(images, labels)`` of ``name``'s ``split``: uint8 (N, H, W, C), int64 (N,), N =
    ``count`` (default ``SIZES[split]``). Read-only arrays (they are cached): copy before changing them."""
    count = SIZES[split] if count is None else count
    classes = NUM_CLASSES[name]
    rng = np.random.default_rng([_SEEDS[name], ("train", "test").index(split), count])
    labels = rng.permutation(np.arange(count) % classes).astype(np.int64)  # balanced, in a shuffled order
    draw = _gray_images if name in IDX_FOLDERS else _colour_images
    images = draw(_templates(name), labels, rng)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


@functools.lru_cache(maxsize=None)
def _templates(name):
    """One pattern per class, the same for both splits."""
    rng = np.random.default_rng(_SEEDS[name])
    if name == "mnist":
        return _distinct(lambda: _strokes(rng), 10)
    if name == "fashion_mnist":
        return _distinct(lambda: _silhouette(rng), 10)
    # CIFAR: two colours and a grating (orientation spread over the half turn, a class frequency).
    classes = NUM_CLASSES[name]
    return [(rng.uniform(30, 225, 3), rng.uniform(30, 225, 3), np.pi * (c + rng.uniform(0.2, 0.8)) / classes,
             rng.uniform(0.25, 0.6)) for c in range(classes)]


def _distinct(make, count, min_distance=6.0):
    """``count`` templates, each at least ``min_distance`` (L2, on the [0, 1] scale) from the others."""
    found = []
    while len(found) < count:
        candidate = make()
        if all(np.linalg.norm(candidate - other) >= min_distance for other in found):
            found.append(candidate)
    return found


_YY, _XX = np.mgrid[0:28, 0:28].astype(np.float64)


def _strokes(rng):
    """Two to four soft strokes about 4 px wide, inside rows / columns 6..21 (a digit-like figure)."""
    canvas = np.zeros((28, 28))
    for _ in range(rng.integers(2, 5)):
        (y0, x0), (y1, x1) = rng.uniform(6, 21, (2, 2))
        dy, dx = y1 - y0, x1 - x0
        t = np.clip(((_YY - y0) * dy + (_XX - x0) * dx) / max(dy * dy + dx * dx, 1e-9), 0, 1)
        distance = np.hypot(_YY - (y0 + t * dy), _XX - (x0 + t * dx))
        canvas = np.maximum(canvas, np.clip(2.5 - distance, 0, 1))
    return canvas


def _silhouette(rng):
    """Two overlapping filled rectangles or ellipses of different grey levels (a garment-like silhouette)."""
    canvas = np.zeros((28, 28))
    for _ in range(2):
        cy, cx = rng.uniform(10, 18, 2)
        ry, rx = rng.uniform(3, 8, 2)
        if rng.random() < 0.5:
            mask = (np.abs(_YY - cy) <= ry) & (np.abs(_XX - cx) <= rx)
        else:
            mask = ((_YY - cy) / ry) ** 2 + ((_XX - cx) / rx) ** 2 <= 1
        canvas = np.maximum(canvas, mask * rng.uniform(0.4, 1.0))
    return canvas


def _gray_images(templates, labels, rng):
    """28x28x1: the class template shifted by up to 1 px, at a random contrast, plus pixel noise; the background
    stays mostly black, as in MNIST."""
    count = len(labels)
    shifts = rng.integers(-1, 2, (count, 2))
    contrast = rng.uniform(0.7, 1.0, count)
    noise = rng.normal(0, 10, (count, 28, 28))
    images = np.stack([np.roll(templates[c], tuple(s), axis=(0, 1)) for c, s in zip(labels, shifts)])
    images = 255 * contrast[:, None, None] * images + noise
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)[..., None]


def _colour_images(templates, labels, rng):
    """32x32x3: a grating between the class's two colours at the class orientation and frequency, with a random
    phase and brightness, plus pixel noise."""
    count = len(labels)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float64)
    images = np.empty((count, 32, 32, 3))
    for i, c in enumerate(labels):
        first, second, angle, frequency = templates[c]
        wave = 0.5 + 0.5 * np.sin(frequency * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
        images[i] = first * (1 - wave[..., None]) + second * wave[..., None]
    images = images * rng.uniform(0.8, 1.2, (count, 1, 1, 1)) + rng.normal(0, 12, images.shape)
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)

def idx_bytes(values, magic):
    """An IDX file's bytes: magic number, one big-endian uint32 per dimension, then the uint8 values."""
    values = np.ascontiguousarray(values, np.uint8)
    return struct.pack(f">I{values.ndim}I", magic, *values.shape) + values.tobytes()


def gzipped(payload, name):
    """Gzip bytes as the owners' files are: with the original file name in the header, fixed mtime."""
    out = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", compresslevel=6, fileobj=out, mtime=0) as f:
        f.write(payload)
    return out.getvalue()


def write_idx_dataset(folder, name, count=None):
    """``name``'s four gzipped IDX files in ``folder / IDX_FOLDERS[name]``; returns that folder."""
    target = Path(folder) / IDX_FOLDERS[name]
    target.mkdir(parents=True, exist_ok=True)
    for split, (images_name, labels_name) in IDX_NAMES.items():
        images, labels = arrays(name, split, None if count is None else count[split])
        (target / images_name).write_bytes(gzipped(idx_bytes(images[..., 0], 2051), images_name[:-3]))
        (target / labels_name).write_bytes(gzipped(idx_bytes(labels, 2049), labels_name[:-3]))
    return target


# ---------------------------------------------------------------- CIFAR pickles as Python 2 wrote them

class Python2Pickler(pickle._Pickler):
    """Pickles dicts, lists, ints, byte strings and uint8 numpy arrays as Python 2's cPickle did for the CIFAR
    files: protocol 2, every str / bytes as a Python 2 str (SHORT_BINSTRING / BINSTRING, which
    ``pickle.load(..., encoding="bytes")`` reads as bytes), numpy arrays through
    ``numpy.core.multiarray._reconstruct`` with ``numpy.dtype("u1", 0, 1)``, and no memo (the files have none).

    (The pure-Python pickler is the one that can be taught this; Python 3's own protocol 2 writes bytes through
    ``_codecs.encode``, which no CIFAR file contains.)
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file):
        super().__init__(file, protocol=2)
        self.fast = True  # no memo

    def save_py2_str(self, obj):
        raw = obj.encode("latin-1") if isinstance(obj, str) else bytes(obj)
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + struct.pack("<B", len(raw)) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        module = {"numpy._core.multiarray": "numpy.core.multiarray"}.get(obj.__module__, obj.__module__)
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode("ascii"))

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            if obj.dtype != np.uint8:
                raise TypeError("the CIFAR files hold uint8 arrays only")
            reconstruct = np.ndarray.__reduce__(np.empty(0))[0]
            return reconstruct, (np.ndarray, (0,), b"b"), (1, obj.shape, obj.dtype, False, obj.tobytes())
        if isinstance(obj, np.dtype):
            return np.dtype, ("u1", 0, 1), (3, "|", None, None, None, -1, -1, 0)
        return NotImplemented


def python2_pickle(obj):
    out = io.BytesIO()
    Python2Pickler(out).dump(obj)
    return out.getvalue()


def _batch(label, images, label_keys, filename_prefix):
    rows = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), 3072))  # R, G, B planes
    batch = {b"batch_label": label.encode()}
    batch.update({key: [int(v) for v in values] for key, values in label_keys.items()})
    batch[b"data"] = rows
    batch[b"filenames"] = [f"{filename_prefix}_{i:05d}.png".encode() for i in range(len(images))]
    return python2_pickle(batch)


def cifar10_members(count=None):
    """{member name inside cifar-10-batches-py/: bytes}, in the order they are archived."""
    members = {}
    train_images, train_labels = arrays("cifar10", "train", None if count is None else count["train"])
    edges = np.cumsum([0] + [len(p) for p in np.array_split(np.arange(len(train_labels)), 5)])
    for number, name in enumerate(CIFAR10_BATCHES["train"]):
        lo, hi = edges[number], edges[number + 1]
        members[name] = _batch(f"training batch {number + 1} of 5", train_images[lo:hi],
                               {b"labels": train_labels[lo:hi]}, name)
    test_images, test_labels = arrays("cifar10", "test", None if count is None else count["test"])
    members["test_batch"] = _batch("testing batch 1 of 1", test_images, {b"labels": test_labels}, "test_batch")
    members["batches.meta"] = python2_pickle({b"num_cases_per_batch": int(edges[1]),
                                              b"label_names": [n.encode() for n in CIFAR10_LABEL_NAMES],
                                              b"num_vis": 3072})
    members["readme.html"] = (b'<meta HTTP-EQUIV="REFRESH" content="0; '
                              b'url=http://www.cs.toronto.edu/~kriz/cifar.html">\n')
    # Not in batch order: decoding must not depend on where a member sits in the archive.
    order = ("data_batch_4", "readme.html", "test_batch", "data_batch_3", "batches.meta", "data_batch_2",
             "data_batch_5", "data_batch_1")
    return {name: members[name] for name in order}


def cifar100_members(count=None):
    members = {}
    for split in ("train", "test"):
        images, fine = arrays("cifar100", split, None if count is None else count[split])
        members[split] = _batch(f"{'training' if split == 'train' else 'testing'} batch 1 of 1", images,
                                {b"fine_labels": fine, b"coarse_labels": coarse_of(fine)}, split)
    members["meta"] = python2_pickle({b"fine_label_names": [f"fine_{i}".encode() for i in range(100)],
                                      b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)]})
    return {name: members[name] for name in ("meta", "test", "train")}


def write_tar_gz(path, top, members):
    """``members`` under ``top/`` in a .tar.gz, with the folder entry first, as the owners' archives have."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        folder = tarfile.TarInfo(top)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name, payload in members.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode = len(payload), 0o644
            tar.addfile(info, io.BytesIO(payload))
    Path(path).write_bytes(gzipped(out.getvalue(), Path(path).name[:-3]))  # fixed gzip mtime: the same bytes each time
    return path


def write_cifar(folder, name, archive=True, extracted=False, count=None):
    """``name`` (cifar10 / cifar100) in ``folder``: the owners' .tar.gz and/or its extracted folder."""
    folder = Path(folder)
    top, archive_name, members = (("cifar-10-batches-py", "cifar-10-python.tar.gz", cifar10_members(count))
                                  if name == "cifar10" else
                                  ("cifar-100-python", "cifar-100-python.tar.gz", cifar100_members(count)))
    if archive:
        write_tar_gz(folder / archive_name, top, members)
    if extracted:
        (folder / top).mkdir(parents=True, exist_ok=True)
        for member, payload in members.items():
            (folder / top / member).write_bytes(payload)
    return folder


def write_all(folder):
    """Every dataset in ``folder`` (see the module docstring); returns ``folder`` as a Path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx_dataset(folder, "mnist")
    write_idx_dataset(folder, "fashion_mnist")
    write_cifar(folder, "cifar10", archive=True, extracted=True)
    write_cifar(folder, "cifar100", archive=True)
    return folder


# ---------------------------------------------------------------- reading the owners' files without tfvit

def cifar_member_bytes(folder, name):
    """{member name: bytes} of the CIFAR dataset in ``folder``, from its extracted folder or else its archive:
    what a test compares tfvit's decoding with (never through tfvit)."""
    top, archive_name = (("cifar-10-batches-py", "cifar-10-python.tar.gz") if name == "cifar10" else
                         ("cifar-100-python", "cifar-100-python.tar.gz"))
    folder = Path(folder)
    if (folder / top).is_dir():
        return {p.name: p.read_bytes() for p in sorted((folder / top).iterdir()) if p.is_file()}
    with tarfile.open(folder / archive_name, "r:gz") as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar if m.isfile()}
