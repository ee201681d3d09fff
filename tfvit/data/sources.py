"""Finding a dataset's files and decoding them into arrays: ``load_arrays(name, split)``.

Sources, in this order:

1. ``data_dir`` (or the environment variable ``TFVIT_DATA_DIR``): a folder of the owners' own files.
   CIFAR-10/100: the "python version" archive (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``, read
   in memory, never extracted) or its extracted folder. Each member is a pickled dict: ``b"data"`` a uint8
   array (N, 3072) holding the 1024 red, then green, then blue values of a row-major 32x32 image, and
   ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` / ``b"coarse_labels"`` (CIFAR-100).
   MNIST / Fashion-MNIST: the four IDX files (gzipped or not) in the folder or in ``mnist/``,
   ``fashion-mnist/`` / ``fashion_mnist/`` (files directly in the folder count as whichever of the two was asked
   for: both datasets use the same file names). IDX: see ``read_idx``.
2. Fashion-MNIST only: Debian's package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``).
3. tensorflow-datasets' prepared copy (``TFDS_DATA_DIR``, default ``~/tensorflow_datasets``), downloading
   it first when that is possible: not with ``TFVIT_OFFLINE=1``, and only after a short connection to the
   download host succeeded, so an offline machine fails in seconds instead of hanging.

Anything missing or damaged raises ``DataError`` naming the file, what is wrong and what to do.
"""

import gzip
import io
import logging
import numbers
import os
import pickle
import socket
import tarfile
import threading
import urllib.parse
import zlib
from pathlib import Path

import numpy as np

from tfvit.data.info import SPLITS, dataset_info

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CONNECT_TIMEOUT_S = 3.0


class DataError(ValueError):
    """A dataset could not be found, downloaded or decoded; the message says which file and what to do."""


def check_request(name, split, label_mode="fine", limit=None):
    """Validate the arguments that pick a dataset's arrays; returns its ``DatasetInfo``."""
    info = dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}.")
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f"label_mode must be 'fine' or 'coarse'; got {label_mode!r}.")
    if label_mode == "coarse" and info.num_coarse_classes is None:
        raise ValueError(f"label_mode='coarse' exists only for cifar100 (20 superclasses); {name} has one label "
                         f"set: use label_mode='fine'.")
    if limit is not None and (not isinstance(limit, numbers.Integral) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None; got {limit!r}.")
    return info


def data_folder(data_dir=None):
    """The folder the owners' files are read from: ``data_dir``, else ``$TFVIT_DATA_DIR`` (a user-facing
    default, read here only), else None. Returns (folder or None, the name of where it came from)."""
    if data_dir is not None:
        return os.fspath(data_dir), "data_dir"
    return os.environ.get("TFVIT_DATA_DIR") or None, "TFVIT_DATA_DIR"


def load_arrays(name, split="train", data_dir=None, limit=None, label_mode="fine"):
    """``(images, labels)`` of one split straight from the files: uint8 (N, H, W, C) and int64 (N,).

    ``limit`` keeps the first ``limit`` examples in the owners' order. ``label_mode="coarse"`` gives CIFAR-100's
    20 superclass labels instead of its 100 classes. ``data_dir`` defaults to ``$TFVIT_DATA_DIR``.
    """
    info = check_request(name, split, label_mode, limit)
    label_key = "coarse_label" if label_mode == "coarse" else "label"
    searched = []
    folder, origin = data_folder(data_dir)
    if folder is not None:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise DataError(f"{origin}={str(folder)!r} is not a folder. Point it at the folder holding the "
                            f"{name} files: {info.expected_files()}.")
        found = _read_folder(info, split, folder, label_key, searched)
        if found is not None:
            return _first(found, limit)
    else:
        searched.append("no data folder: neither the data_dir argument nor TFVIT_DATA_DIR was given")
    if name == "fashion_mnist":
        found = _read_folder(info, split, DEBIAN_FASHION_MNIST, label_key, searched, subfolders=False)
        if found is not None:
            return _first(found, limit)
    return _first(_read_tfds(info, split, label_key, limit, searched), limit)


def _first(arrays, limit):
    images, labels = arrays
    if limit is None or limit >= len(images):
        return images, labels
    # Copies, so that the small result does not keep the whole split's buffer alive.
    return images[:limit].copy(), labels[:limit].copy()


def _read_folder(info, split, folder, label_key, searched, subfolders=True):
    """The split's arrays from the first place in ``folder`` that holds the dataset, or None."""
    if info.archive:
        archive = folder / info.archive
        searched.append(str(archive))
        if archive.is_file():
            return _read_cifar_archive(info, split, archive, label_key)
        extracted = folder / info.folders[0]
        searched.append(f"{extracted}/")
        if extracted.is_dir():
            return _read_cifar_folder(info, split, extracted, label_key)
        return None
    places = [folder / sub for sub in info.folders] if subfolders else []
    for place in places + [folder]:
        searched.append(f"{place}/")
        images_file, labels_file = (_idx_path(place, f) for f in info.split_files[split])
        if images_file or labels_file:
            if not (images_file and labels_file):
                missing = info.split_files[split][0 if labels_file else 1]
                raise DataError(f"{place} holds only one of the two {info.name} {split} files: {missing} "
                                f"(or its un-gzipped name) is missing. Expected: {info.expected_files()}.")
            return _read_idx_pair(info, images_file, labels_file)
    return None


def _idx_path(folder, gz_name):
    """The IDX file as published (``.gz``) or decompressed (same name without ``.gz``), if present."""
    for candidate in (folder / gz_name, folder / gz_name[:-3]):
        if candidate.is_file():
            return candidate
    return None


# ---------------------------------------------------------------- CIFAR: pickled dicts, in a .tar.gz or a folder

def _read_cifar_archive(info, split, archive, label_key):
    """Decode the split's members from the .tar.gz in memory. A gzip stream can only be read front to back,
    so the archive is read once in its own member order and the wanted members are kept."""
    wanted = {f"{info.folders[0]}/{name}": name for name in info.split_files[split]}
    contents = {}
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    contents[wanted[member.name]] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise DataError(f"{archive} is not a readable .tar.gz ({error}); the file is truncated or damaged. "
                        f"Download {info.archive} again from {info.homepage}.") from error
    missing = [name for name in info.split_files[split] if name not in contents]
    if missing:
        raise DataError(f"{archive} has no member {', '.join(f'{info.folders[0]}/{m}' for m in missing)}: it is "
                        f"not the official {info.archive} (or it is truncated). Download it from {info.homepage}.")
    return _stack([_decode_cifar_batch(info, contents[n], f"{archive}:{info.folders[0]}/{n}", label_key)
                   for n in info.split_files[split]])


def _read_cifar_folder(info, split, folder, label_key):
    batches = []
    for name in info.split_files[split]:
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path} is missing: an extracted {info.archive} holds "
                            f"{', '.join(info.files[1:])} in {folder}/.")
        batches.append(_decode_cifar_batch(info, path.read_bytes(), str(path), label_key))
    return _stack(batches)


def _stack(batches):
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def _decode_cifar_batch(info, raw, where, label_key):
    """One pickled CIFAR batch -> uint8 (N, 32, 32, 3) images and int64 labels."""
    try:
        batch = _CifarUnpickler(io.BytesIO(raw), where).load()
    except DataError:
        raise
    except Exception as error:  # garbage bytes surface as any of a dozen exception types inside pickle
        raise DataError(f"{where} is not a readable CIFAR pickle ({type(error).__name__}: {error}); the file is "
                        f"damaged. Download {info.archive} again from {info.homepage}.") from error
    if label_key == "coarse_label":
        key = b"coarse_labels"
    else:
        key = b"fine_labels" if info.num_coarse_classes else b"labels"
    if not isinstance(batch, dict) or b"data" not in batch or key not in batch:
        found = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{where} is not a {info.name} batch: expected a dict with b'data' and {key!r}, found {found}.")
    data, labels = batch[b"data"], np.asarray(batch[key])
    pixels = int(np.prod(info.image_shape))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels:
        raise DataError(f"{where}: b'data' must be a uint8 array of shape (N, {pixels}), got "
                        f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}.")
    classes = info.num_coarse_classes if label_key == "coarse_label" else info.num_classes
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu" or not np.all((labels >= 0) & (labels < classes)):
        raise DataError(f"{where}: expected {len(data)} integer labels in 0..{classes - 1} under {key!r}.")
    # Channel-major rows: (N, 3, 32, 32) -> channels last.
    images = data.reshape(-1, info.image_shape[2], *info.image_shape[:2]).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches without ever calling arbitrary code.

    ``pickletools.dis`` of the official files shows three globals, the ones a pickled numpy array needs:
    ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype`` (``numpy._core`` when pickled
    by NumPy 2). A batch re-saved by Python 3 (``pickle.dump(batch, f, protocol=P)``) needs three more, each
    allowed only in the form those pickles use:
      * protocols 0-2 have no bytes opcode: bytes are pickled as ``_codecs.encode(text, "latin1")`` and ``b""``
        as ``bytes()`` (``__builtin__.bytes``). Only that call is accepted: another codec name would reach any
        codec an installed package registers, and ``bytes(n)`` would allocate n bytes;
      * protocol 5 pickles a contiguous array as ``numpy._core.numeric._frombuffer(buffer, dtype, shape,
        order)``: ``np.frombuffer`` and a reshape, which refuse object dtypes, so it can only make plain arrays.
    Any other global (``os.system``, ``builtins.eval``, ``copyreg._reconstructor``, ...) is refused before it is
    looked up.
    """

    # ndarray.__reduce__ / __reduce_ex__(5) name the running NumPy's own functions, whichever module they live in.
    _RECONSTRUCT = np.ndarray.__reduce__(np.empty(0))[0]
    _FROMBUFFER = np.ndarray.__reduce_ex__(np.empty(0), 5)[0]
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
        ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Names of methods: bound to the unpickler, their refusals name the file. Under protocols 0-2 Python 3
        # writes the builtins module as __builtin__.
        ("_codecs", "encode"): "_latin1_bytes",
        ("__builtin__", "bytes"): "_empty_bytes",
        ("builtins", "bytes"): "_empty_bytes",
    }

    def __init__(self, file, where):
        # encoding="bytes": the official files were written by Python 2, whose str keys and array buffers
        # must stay bytes (b"data", b"labels").
        super().__init__(file, encoding="bytes")
        self.where = where

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            found = self._ALLOWED[module, name]
            return getattr(self, found) if isinstance(found, str) else found
        raise DataError(f"{self.where} refers to {module}.{name}, which a CIFAR file never does; it was not loaded "
                        f"(a pickle can run code on loading). Use the official files from "
                        f"https://www.cs.toronto.edu/~kriz/cifar.html.")

    def _latin1_bytes(self, text, encoding):
        if isinstance(text, str) and encoding == "latin1":
            return text.encode("latin1")
        raise DataError(f"{self.where} calls _codecs.encode({type(text).__name__}, {encoding!r}); a CIFAR batch "
                        f"pickled by Python only calls it with a str and 'latin1'. It was not loaded.")

    @staticmethod
    def _empty_bytes():
        return b""

    def persistent_load(self, pid):
        raise DataError(f"{self.where} uses pickle persistent ids, which a CIFAR file never does; it was not loaded.")


# ---------------------------------------------------------------- MNIST / Fashion-MNIST: IDX files

def _read_idx_pair(info, images_file, labels_file):
    images = read_idx(images_file, ndim=3)
    labels = read_idx(labels_file, ndim=1)
    if images.shape[1:] != info.image_shape[:2]:
        raise DataError(f"{images_file} holds {images.shape[1]}x{images.shape[2]} images; {info.name} images are "
                        f"{info.image_shape[0]}x{info.image_shape[1]}.")
    if len(images) != len(labels):
        raise DataError(f"{images_file} holds {len(images)} images but {labels_file} holds {len(labels)} labels; "
                        f"the two files come from different downloads or one is damaged.")
    if labels.size and labels.max() >= info.num_classes:
        raise DataError(f"{labels_file} holds label {labels.max()}; {info.name} has classes 0..{info.num_classes - 1}.")
    return images[..., None], labels.astype(np.int64)


def read_idx(path, ndim):
    """An IDX file of unsigned bytes (gzipped when its name ends in .gz) as a uint8 array of ``ndim`` dims.

    The format (LeCun et al., http://yann.lecun.com/exdb/mnist/): magic number ``0x0000 08 NN`` (type 0x08 =
    unsigned byte, NN = number of dimensions; 2051 for 3-d images, 2049 for 1-d labels), then one big-endian
    uint32 size per dimension, then the values in row-major order.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path} is not a readable gzip file ({error}); it is truncated or damaged. Download it "
                        f"again.") from error
    header = 4 + 4 * ndim
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != 0x0800 + ndim:
        raise DataError(f"{path} is not an IDX file of {ndim}-d unsigned bytes: magic number {magic}, expected "
                        f"{0x0800 + ndim}{' (images)' if ndim == 3 else ' (labels)' if ndim == 1 else ''}.")
    if len(raw) < header:
        raise DataError(f"{path} ends inside its IDX header ({len(raw)} bytes); the file is truncated.")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != int(np.prod(dims)):
        raise DataError(f"{path}: the header announces {'x'.join(map(str, dims))} = {int(np.prod(dims))} values but "
                        f"the file holds {len(raw) - header}; it is truncated or damaged.")
    # A copy: frombuffer views of bytes are read-only, and callers get writable arrays from every source.
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()


# ---------------------------------------------------------------- tensorflow-datasets

def _read_tfds(info, split, label_key, limit, searched):
    """The split from tensorflow-datasets, downloading and preparing it first only when that can work."""
    import tensorflow_datasets as tfds  # imported here: it is slow to import and only this fallback needs it

    # tfds warns through absl about a half-made local copy ("has no dataset_info.json"); what is missing and
    # what to do is said in the DataError below instead.
    absl_logger = logging.getLogger("absl")
    previous = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        # tfds reads TFDS_DATA_DIR once, at its import; passing it keeps a later setting (and the cache key) true.
        builder = tfds.builder(info.tfds_name, data_dir=os.environ.get("TFDS_DATA_DIR") or None)
        prepared = builder.is_prepared()
    finally:
        absl_logger.setLevel(previous)
    searched.append(f"tensorflow-datasets' copy in {builder.data_dir}")
    if not prepared:
        blocker = download_blocker(info)
        if blocker:
            raise DataError(_not_found(info, split, searched, blocker))
        try:
            builder.download_and_prepare()
        except Exception as error:  # network, disk or checksum trouble inside tfds: say what to do instead
            raise DataError(f"tensorflow-datasets could not download {info.tfds_name} ({type(error).__name__}: "
                            f"{error}).\n{_not_found(info, split, searched, 'the download failed')}") from error
    dataset = builder.as_dataset(split=split if limit is None else f"{split}[:{limit}]")
    images, labels = [], []
    for example in tfds.as_numpy(dataset.batch(10000)):
        images.append(example["image"])
        labels.append(example[label_key])
    images = np.concatenate(images).astype(np.uint8) if images else np.zeros((0, *info.image_shape), np.uint8)
    labels = np.concatenate(labels).astype(np.int64) if labels else np.zeros((0,), np.int64)
    if images.shape[1:] != info.image_shape:
        raise DataError(f"tensorflow-datasets' {info.tfds_name} gave images of shape {images.shape[1:]}, expected "
                        f"{info.image_shape}; its copy in {builder.data_dir} is not the dataset tfvit expects.")
    return images, labels


def download_blocker(info):
    """Why a download of ``info``'s dataset cannot happen now (a sentence), or None when it can.

    The connection is tried in a daemon thread so that a slow DNS lookup, which socket timeouts do not cover,
    cannot stall the caller beyond ``CONNECT_TIMEOUT_S``. Behind an HTTP(S) proxy the proxy is what must answer.
    """
    if os.environ.get("TFVIT_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "TFVIT_OFFLINE is set, which forbids downloads"
    host, port = info.download_host
    proxy = os.environ.get("https_proxy" if port == 443 else "http_proxy") or os.environ.get(
        "HTTPS_PROXY" if port == 443 else "HTTP_PROXY")
    if proxy:
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parsed.hostname, parsed.port or 80
    outcome = []

    def connect():
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(f"{type(error).__name__}: {error}")

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S + 0.5)
    if outcome and outcome[0] is None:
        return None
    why = outcome[0] if outcome else f"no answer within {CONNECT_TIMEOUT_S:g} s"
    return f"the download host {host}:{port} cannot be reached ({why})"


def _not_found(info, split, searched, reason):
    places = "\n".join(f"  - {place}" for place in searched)
    return (f"{info.name} ({split} split) is not on this machine and cannot be downloaded: {reason}.\n"
            f"Looked in:\n{places}\n"
            f"Put the owners' files for {info.name} ({info.homepage}) in a folder and pass it with --data-dir DIR "
            f"(recipes), data_dir=DIR (tfvit.data.load / load_arrays) or the environment variable TFVIT_DATA_DIR. "
            f"Expected files: {info.expected_files()}.")

