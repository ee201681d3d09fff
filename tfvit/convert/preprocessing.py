"""The preprocessing a checkpoint's own files declare: mean, std, input size and interpolation.

timm's hub repositories keep it in ``config.json`` under ``pretrained_cfg`` (``mean``, ``std``,
``input_size`` as (C, H, W), ``interpolation``); transformers' keep it in ``preprocessor_config.json``
(``image_mean``, ``image_std``, ``size`` / ``crop_size``, ``resample`` as a PIL filter number). A checkpoint
with neither gives None: the data's own statistics are used then.
"""

from tfvit.convert.config import config_path, read_config_json
from tfvit.models.pretrained import Preprocessing

PREPROCESSOR_NAME = "preprocessor_config.json"
# PIL's filter numbers (transformers' "resample") and timm's interpolation names, as tf.image.resize methods.
_PIL_FILTERS = {0: "nearest", 1: "lanczos3", 2: "bilinear", 3: "bicubic", 4: "area", 5: "bilinear"}
_TIMM_INTERPOLATIONS = {"nearest": "nearest", "bilinear": "bilinear", "bicubic": "bicubic", "lanczos": "lanczos3",
                        "box": "area", "hamming": "bilinear", "random": "bilinear"}


def checkpoint_preprocessing(path):
    """The ``Preprocessing`` declared beside the checkpoint ``path`` (file or folder), or None."""
    timm = (read_config_json(path) or {}).get("pretrained_cfg") or {}
    if timm.get("mean") and timm.get("std"):
        size = timm.get("input_size") or (3, 224, 224)
        interpolation = _TIMM_INTERPOLATIONS.get(str(timm.get("interpolation", "bicubic")), "bicubic")
        return Preprocessing(timm["mean"], timm["std"], tuple(size[1:]), interpolation)
    hf = read_config_json(path, PREPROCESSOR_NAME) or {}
    if not hf.get("image_mean") or not hf.get("image_std"):
        return None
    size = hf.get("crop_size") if hf.get("do_center_crop") and hf.get("crop_size") else hf.get("size", 224)
    return Preprocessing(hf["image_mean"], hf["image_std"], _size(size, config_path(path, PREPROCESSOR_NAME)),
                         _PIL_FILTERS.get(hf.get("resample", 2), "bilinear"))


def _size(size, file):
    """(height, width) of a transformers ``size``: an int, {"height", "width"} or {"shortest_edge"}."""
    if isinstance(size, int):
        return size, size
    if isinstance(size, dict) and "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if isinstance(size, dict) and "shortest_edge" in size:
        return int(size["shortest_edge"]), int(size["shortest_edge"])
    raise ValueError(f"{file}: size={size!r} is not an int, {{height, width}} or {{shortest_edge}}.")
