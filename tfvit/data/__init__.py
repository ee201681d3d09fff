"""tfvit.data: CIFAR-10, CIFAR-100, MNIST and Fashion-MNIST as tf.data pipelines for vision transformers.

    import tfvit.data
    train = tfvit.data.load("cifar10", "train", 128, image_size=224, augment="crop_flip", seed=0)
    test = tfvit.data.load("cifar10", "test", 256, image_size=224)
    images, labels = tfvit.data.load_arrays("mnist", "test")        # uint8 (10000, 28, 28, 1), int64 (10000,)

Files come from ``data_dir`` / ``$TFVIT_DATA_DIR`` (the owners' own archives), Debian's Fashion-MNIST package, or
tensorflow-datasets (see ``tfvit.data.sources``); the pipeline is in ``tfvit.data.datasets``, augmentations in
``tfvit.data.augment``, per-dataset facts in ``tfvit.data.info``.
"""

from tfvit.data.augment import AUGMENTATIONS
from tfvit.data.datasets import load
from tfvit.data.info import DATASETS, DatasetInfo, dataset_info
from tfvit.data.sources import DataError, load_arrays

__all__ = ["AUGMENTATIONS", "DATASETS", "DataError", "DatasetInfo", "dataset_info", "load", "load_arrays"]
