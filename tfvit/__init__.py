"""tfvit: vision transformers for Keras 3 / TensorFlow.

    import tfvit
    model = tfvit.create_model("swin_cifar_patch2_window4_32", num_classes=10)
    tfvit.list_models("vit_*")
"""

from tfvit import convert, data, layers, models, training, vis
from tfvit.factory import create_model
from tfvit.models import list_models, stats

__version__ = "0.1.0"
__all__ = ["convert", "create_model", "data", "layers", "list_models", "models", "stats", "training", "vis",
           "__version__"]
