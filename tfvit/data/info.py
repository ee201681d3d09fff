"""What each supported dataset is: classes, image shape, normalisation statistics and the files its owners publish.

The file names are the owners' own, so a folder of downloads works as it is:
CIFAR-10/100 (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html) publish "python version" archives
whose members are pickled dicts; MNIST (LeCun et al. 1998, re-hosted by tensorflow-datasets at
https://storage.googleapis.com/cvdf-datasets/mnist/) and Fashion-MNIST (Xiao et al. 2017,
https://github.com/zalandoresearch/fashion-mnist) publish four gzipped IDX files each, with the same names.
"""

import dataclasses

# ITU-R BT.601 luma weights, the ones tf.image.rgb_to_grayscale and PIL's "L" mode use.
LUMA = (0.2989, 0.5870, 0.1140)

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset.

    ``mean`` / ``std`` are per-channel statistics of the [0, 1]-scaled training images, the ones ``load``
    normalises with. ``archive`` is the owners' archive (None for the IDX datasets), ``folders`` the folder
    names accepted inside a data directory, ``split_files`` the files read for each split. ``flip_preserves_label``
    says whether a horizontal mirror image is still an example of its class (not for handwritten digits).
    """

    name: str
    num_classes: int
    image_shape: tuple
    mean: tuple
    std: tuple
    archive: str | None
    folders: tuple
    split_files: dict
    num_examples: dict
    homepage: str
    download_host: tuple
    tfds_name: str
    flip_preserves_label: bool = True
    num_coarse_classes: int | None = None
    class_names: tuple = ()  # the owners' names of the classes, in label order; () where not listed here

    def class_name(self, label):
        """The name of class ``label``, or the label itself as text where names are not listed."""
        return self.class_names[label] if self.class_names else str(label)

    @property
    def files(self):
        """Every file name ``load`` looks for, archive first."""
        members = tuple(f for split in ("train", "test") for f in self.split_files[split])
        return ((self.archive,) if self.archive else ()) + members

    def expected_files(self):
        """One line a user can act on: what to put into a data directory for this dataset."""
        if self.archive:
            members = ", ".join(self.files[1:])
            return f"{self.archive}, or the extracted folder {self.folders[0]}/ holding {members}"
        folders = " or ".join(f"{f}/" for f in self.folders)
        return (f"{', '.join(self.files)} (gzipped IDX files, or the same names without .gz), directly in the "
                f"folder or in a subfolder {folders}")


# The CIFAR-10 figures are the ones the study in seeds/000 (and most CIFAR code, after kuangliu/pytorch-cifar)
# uses; the mean is the per-pixel training mean, the "std" is smaller than the per-pixel std (about 0.247,
# 0.243, 0.261) but is what pretrained-model fine-tuning on CIFAR-10 is usually reported with.
_DATASETS = {
    "cifar10": DatasetInfo(
        name="cifar10", num_classes=10, image_shape=(32, 32, 3),
        mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010),
        archive="cifar-10-python.tar.gz", folders=("cifar-10-batches-py",),
        split_files={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        num_examples={"train": 50000, "test": 10000},
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html", download_host=("www.cs.toronto.edu", 443),
        tfds_name="cifar10",
        class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
    "cifar100": DatasetInfo(
        name="cifar100", num_classes=100, image_shape=(32, 32, 3),
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
        archive="cifar-100-python.tar.gz", folders=("cifar-100-python",),
        split_files={"train": ("train",), "test": ("test",)},
        num_examples={"train": 50000, "test": 10000},
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html", download_host=("www.cs.toronto.edu", 443),
        tfds_name="cifar100", num_coarse_classes=20,
    ),
    "mnist": DatasetInfo(
        name="mnist", num_classes=10, image_shape=(28, 28, 1), mean=(0.1307,), std=(0.3081,),
        archive=None, folders=("mnist",), split_files=_IDX_FILES, num_examples={"train": 60000, "test": 10000},
        homepage="http://yann.lecun.com/exdb/mnist/", download_host=("storage.googleapis.com", 443),
        tfds_name="mnist", flip_preserves_label=False, class_names=tuple("0123456789"),
    ),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist", num_classes=10, image_shape=(28, 28, 1), mean=(0.2860,), std=(0.3530,),
        archive=None, folders=("fashion-mnist", "fashion_mnist"), split_files=_IDX_FILES,
        num_examples={"train": 60000, "test": 10000},
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        download_host=("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80), tfds_name="fashion_mnist",
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                     "Ankle boot"),
    ),
}

DATASETS = tuple(_DATASETS)
SPLITS = ("train", "test")


def dataset_info(name):
    """The ``DatasetInfo`` of ``name`` (one of ``DATASETS``)."""
    if name not in _DATASETS:
        raise ValueError(f"name must be one of {', '.join(DATASETS)}; got {name!r}.")
    return _DATASETS[name]


def channel_statistics(info, channels=None):
    """(mean, std) per channel after converting the images to ``channels`` (None keeps the dataset's own).

    Grayscale repeated into RGB has three equal channels, so the gray statistics repeat exactly. RGB turned
    into luma ``sum_c w_c x_c`` has mean ``sum_c w_c mean_c`` exactly; for the std the same weighted sum is
    used, which is exact only for fully correlated channels and otherwise slightly over-estimates it.
    """
    mean, std = tuple(info.mean), tuple(info.std)
    native = info.image_shape[-1]
    if channels is None or channels == native:
        return mean, std
    if native == 1:
        return mean * channels, std * channels
    return ((sum(w * m for w, m in zip(LUMA, mean)),), (sum(w * s for w, s in zip(LUMA, std)),))
