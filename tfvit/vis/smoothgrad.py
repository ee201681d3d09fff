"""SmoothGrad: the input gradient of the class logit, averaged over noisy copies of the image.

Smilkov, Thorat, Kim, Viegas & Wattenberg 2017, "SmoothGrad: removing noise by adding noise", eq. 3:
    M(x) = 1/n sum_{i=1}^n |dF(x + e_i) / dx|,   e_i ~ N(0, sigma^2),   sigma = noise (max(x) - min(x)),
the sensitivity map |dF/dx| (tf-keras-vis takes the absolute value of each sample's gradient before the
mean) with F the class logit (``tfvit.vis.scores``; a final softmax is bypassed) and the noise level relative
to each image's range (the paper finds 10-20% best). The gradient of one image is noisy at the pixel
scale (the paper's section 3: sharp fluctuations of the gradient at small scales); averaging it over a
neighbourhood of x keeps what is consistent. A pixel's value is the largest |gradient| over its
channels, as in Simonyan et al. 2014 (vanilla saliency) and tf-keras-vis.

Computed by tf-keras-vis's ``Saliency`` (``smooth_samples`` = n, ``smooth_noise`` = noise) on
``tfvit.vis.scores.logits_model``, with tf-keras-vis's own normalisation off: the maps are min-max
scaled by ``tfvit.vis.maps.normalize_maps``, as every tfvit map.
"""

import warnings

import keras
import numpy as np

from tfvit._validation import integer
from tfvit.vis.inputs import check_class_index, check_images
from tfvit.vis.maps import normalize_maps
from tfvit.vis.scores import logits_model, predict_logits


def smoothgrad(model, images, class_index=None, samples=20, noise=0.2, seed=0, upsample=True, batch_size=32):
    """SmoothGrad maps of ``images`` (B, H, W, C) for ``model``: float32 (B, H, W), each min-max scaled to [0, 1].

    Args:
        model: a functional Keras classifier; the score is the class logit (a final softmax is bypassed).
        class_index: None for each image's predicted class, an int for every image, or one per image.
        samples: n, the number of noisy copies per image (0: the plain gradient, vanilla saliency).
        noise: sigma as a fraction of each image's value range (max - min), >= 0 (the paper: 0.1-0.2).
        seed: seeds the noise (tf-keras-vis draws it from numpy's global generator, which is seeded for the
            call and then restored): the same seed gives the same maps.
        upsample: accepted for the interface shared with ``gradcam``; the map is at the image's resolution,
            (H, W) either way.
        batch_size: images per call to tf-keras-vis, which runs each noisy copy of all of them as one batch.

    Input gradients can be largest beside the object rather than on it (a model saturated on its evidence
    changes least there): docs/saliency.md measures where SmoothGrad's maximum falls against occlusion, RISE
    and Integrated Gradients (``python -m tools.saliency_eval defaults``).
    """
    images = check_images(model, images, where="smoothgrad")
    if not integer(samples) or samples < 0:
        raise ValueError(f"samples must be a non-negative integer, got {samples!r}.")
    if isinstance(noise, (bool, np.bool_)) or not isinstance(noise, (int, float, np.integer, np.floating)) \
            or not 0.0 <= noise < float("inf"):
        raise ValueError(f"noise must be a finite number >= 0 (a fraction of the image's range), got {noise!r}.")
    if not integer(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}.")
    if not integer(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    del upsample  # the map is at the image's resolution by construction

    scorer = logits_model(model)
    logits = predict_logits(scorer, images, batch_size)
    classes = check_class_index(class_index, logits)

    with warnings.catch_warnings():
        # tf-keras-vis 0.8.7 imports zoom from scipy.ndimage.interpolation, deprecated since SciPy 1.8.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="tf_keras_vis")
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.utils.scores import CategoricalScore

    # tf-keras-vis calls the model on a list of inputs: a one-element input list keeps Keras from warning
    # that the structure does not match a model built on a bare input tensor (no layers are copied).
    saliency = Saliency(keras.Model([scorer.inputs[0]], scorer.outputs[0], name=f"{scorer.name}_listed"))
    state = np.random.get_state()
    interactive = keras.config.is_interactive_logging_enabled()
    maps = []
    try:
        keras.config.disable_interactive_logging()
        np.random.seed(seed)  # tf-keras-vis draws the noise with np.random.normal
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            grads = saliency(CategoricalScore(classes[start:start + batch_size].tolist()), chunk,
                             smooth_samples=samples, smooth_noise=float(noise), keepdims=False,
                             normalize_map=False, training=False)
            maps.append(np.asarray(grads, dtype=np.float32).reshape(chunk.shape[:3]))
    finally:
        np.random.set_state(state)
        if interactive:
            keras.config.enable_interactive_logging()
    return normalize_maps(np.concatenate(maps))
