"""tfvit: vision transformers for Keras 3 / TensorFlow.

    import tfvit
    model = tfvit.create_model("swin_cifar_patch2_window4_32", num_classes=10)
    tfvit.list_models("vit_*")
"""

import os

if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
    from tfvit import _quiet_import

    _quiet_import.import_tensorflow()  # before Keras imports it: TensorFlow's start-up lines obey the log level

from tfvit import convert, data, layers, models, training, vis  # noqa: E402
from tfvit.factory import create_model  # noqa: E402
from tfvit.models import list_models, stats  # noqa: E402

__version__ = "0.1.0"
__all__ = ["convert", "create_model", "data", "layers", "list_models", "models", "stats", "training", "vis",
           "__version__"]
