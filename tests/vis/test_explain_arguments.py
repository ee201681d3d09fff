"""``explain`` refuses what it cannot explain faithfully instead of returning a map that means nothing: images
with a NaN or infinite pixel (every method's map of such an image is NaN or garbage) and a ``class_index`` for a
method whose map does not depend on the class (attention rollout would silently ignore it). The reference for
which methods are class-specific is the maps themselves: two classes give different maps."""

import numpy as np
import pytest

from tests.vis.toy_models import small_cnn
from tfvit.models import VisionTransformer
from tfvit.vis import (
    AUTO, EXPLAIN_METHODS, NOT_CLASS_SPECIFIC, applicable_methods, attention_rollout, explain, gradcam, model_family,
    occlusion, rise,
)

TINY = {"image_size": (8, 12), "patch_size": 4, "in_channels": 2, "embed_dim": 16, "depth": 2, "num_heads": 2,
        "mlp_ratio": 2.0, "num_classes": 3}
# Cheap settings where a method has a cost knob, so that every method runs in a few seconds.
CHEAP = {"rise": {"num_masks": 200}, "smoothgrad": {"samples": 4}, "integrated_gradients": {"steps": 8}}


@pytest.fixture(scope="module")
def vit():
    return VisionTransformer(**TINY)


def images(count=4, seed=0):
    return np.random.default_rng(seed).normal(size=(count, 8, 12, 2)).astype("float32")


def test_images_with_a_nan_or_infinite_pixel_are_refused_naming_them(vit):
    x = images(5)
    x[1, 3, 4, 0] = np.nan
    x[3, 0, 0, 1] = -np.inf
    bad = np.flatnonzero(~np.isfinite(x).all(axis=(1, 2, 3)))  # the reference: numpy's own test of each image
    assert list(bad) == [1, 3]
    listed = r"image\(s\) at index 1, 3 hold NaN or infinite pixels"
    for method, runs in (("auto", AUTO[model_family(vit)]), ("gradcam", "gradcam"), ("rollout", "rollout")):
        with pytest.raises(ValueError, match=rf"^explain \(method '{runs}'\): images must be finite, but {listed}"):
            explain(vit, x, method=method)
    # The methods called on their own refuse them too, naming themselves.
    for function, name in ((gradcam, "gradcam"), (occlusion, "occlusion"), (rise, "rise")):
        with pytest.raises(ValueError, match=rf"^{name}: images must be finite, but {listed}"):
            function(vit, x)
    with pytest.raises(ValueError, match=r"^attention_rollout: images must be finite"):
        attention_rollout(vit, x)
    finite = x[np.isfinite(x).all(axis=(1, 2, 3))]  # what the message says to do works
    assert np.isfinite(explain(vit, finite, method="gradcam")).all()


def test_many_bad_images_are_listed_up_to_ten(vit):
    x = np.full((12, 8, 12, 2), np.inf, "float32")
    with pytest.raises(ValueError, match=r"at index 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, \.\.\. \(12 in all\) hold"):
        explain(vit, x, method="gradcam")


def test_rollout_refuses_a_class_index_and_names_the_class_specific_methods(vit):
    x = images()
    class_specific = [name for name in applicable_methods(vit) if name != "rollout"]
    with pytest.raises(ValueError, match=r"^explain: method 'rollout' \(attention rollout\) is not class-specific: "
                                         r"it explains the image, not a class, so class_index=2 would be ignored\. "
                                         r"Leave class_index out, or pick a class-specific method: "
                                         + ", ".join(map(str, class_specific)).replace("+", r"\+") + r"\.$"):
        explain(vit, x, method="rollout", class_index=2)
    with pytest.raises(ValueError, match="not class-specific"):
        explain(vit, x, method="rollout", class_index=[0, 1, 2, 0])
    # Without a class it is attention rollout, as before.
    np.testing.assert_allclose(explain(vit, x, method="rollout"), attention_rollout(vit, x), atol=1e-6)


@pytest.mark.parametrize("method", sorted(set(EXPLAIN_METHODS) - set(NOT_CLASS_SPECIFIC)))
def test_every_other_method_is_class_specific(vit, method):
    """Each method that accepts a class_index uses it: the maps of two classes differ (on a ViT for the attention
    methods, on a small CNN for the rest)."""
    model = vit if method in ("relevance",) else small_cnn(shape=(8, 12, 2), classes=3)
    x = images(2, seed=1)
    options = CHEAP.get(method, {})
    first, second = (explain(model, x, class_index=c, method=method, **options) for c in (0, 1))
    assert not np.allclose(first, second, atol=1e-3), f"{method}: class 0 and class 1 give the same maps"


def test_rollout_is_the_only_method_that_is_not_class_specific():
    assert NOT_CLASS_SPECIFIC == ("rollout",)
