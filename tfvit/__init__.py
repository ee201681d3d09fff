"""tfvit: vision transformers for Keras 3 / TensorFlow.

    import tfvit
    model = tfvit.create_model("swin_cifar_patch2_window4_32", num_classes=10)
    tfvit.list_models("vit_*")

The subpackages load on first use (PEP 562's module ``__getattr__``): ``tfvit.layers`` and
``tfvit.models`` need only Keras and its backend, so under ``KERAS_BACKEND=jax`` they import and run
on a machine without TensorFlow; ``tfvit.data``, ``tfvit.vis`` and the TensorFlow train step import it
when they are used.
"""

import importlib
import os

if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
    from tfvit import _quiet_import

    _quiet_import.import_tensorflow()  # before Keras imports it: TensorFlow's start-up lines obey the log level

__version__ = "0.1.0"
_SUBPACKAGES = ("convert", "data", "experiments", "layers", "models", "training", "vis")
# Top-level names and the module that defines each.
_NAMES = {"create_model": "tfvit.factory", "list_models": "tfvit.models", "stats": "tfvit.models"}
__all__ = ["convert", "create_model", "data", "layers", "list_models", "models", "stats", "training", "vis",
           "__version__"]


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"tfvit.{name}")
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'tfvit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
