"""What ViT and Swin share: a functional keras.Model subclass rebuilt from its constructor arguments.

The graph is built in ``__init__`` with ``keras.Input`` (as keras-hub does), so the model has a
summary with shapes, named intermediate outputs (Grad-CAM needs them) and works with ``fit``; its
config is just the constructor arguments, so ``from_config`` and ``.keras`` files rebuild it exactly.
Its ``train_step`` is Keras's, with the dropout and stochastic-depth draws keyed on the optimizer
update and each example's index in the batch (``tfvit.layers.keyed_random``), so that a plain ``fit``
draws the masks that exact gradient accumulation over the same batch draws.
"""

import warnings

import keras
import numpy as np
from keras import ops

from tfvit import _labels as labels
from tfvit import _validation as check
from tfvit.layers import keyed_random


def _check_not_empty(shape, where):
    """A batch of no images is refused at the model's input: without this, TensorFlow fails deep inside the
    model (a reshape of the patch tokens) and Keras's predict with an error of its own. Checked on the static
    shape, which JAX always has (also under jit) and TensorFlow has in eager calls; a graph traced for any batch
    size (None) cannot see it."""
    if shape and shape[0] == 0:
        raise ValueError(f"{where} got an empty batch (input shape {shape}): a batch needs at least one image.")


# Normalised images ((x / 255 - mean) / std) stay below about 3 in magnitude for every dataset tfvit.data knows (MNIST:
# (1 - 0.1307) / 0.3081 = 2.8); pixels in 0..255 pass 20 in any image that is not nearly black.
UNSCALED = 20.0
_SAMPLE = 64  # images looked at: a fit on a large array pays for a few images, not for the whole array


def _peak(images):
    """The largest |value| of the first ``_SAMPLE`` images when their values exist now (a numpy array, an eager
    tensor, a JAX array outside jit); None for the symbolic tensors of a graph being traced, which hold none."""
    if isinstance(images, np.ndarray):
        return float(np.max(np.abs(_first(images).astype(np.float32)), initial=0.0))
    if keras.backend.is_keras_tensor(images):
        return None
    if callable(getattr(images, "numpy", None)):  # an eager TensorFlow tensor (a symbolic one has no numpy())
        return float(ops.convert_to_numpy(ops.max(ops.abs(_first(images)))))  # reduced on its device
    if keras.backend.backend() == "jax":
        try:
            return float(ops.max(ops.abs(_first(images))))
        except Exception:  # noqa: BLE001 - a tracer under jit has no value to read
            return None
    return None


def _first(images):
    return images[:_SAMPLE] if len(images.shape) else images


class ImageClassifier(keras.Model):
    """Base of tfvit's models: call-time input checks, label checks in ``fit`` / ``evaluate``, and config =
    constructor arguments."""

    def _finish(self, config, inputs, outputs, name, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self._constructor_config = dict(config)
        self.image_size = tuple(config["image_size"])
        self.in_channels = config["in_channels"]

    def _where(self):
        return f"{type(self).__name__} '{self.name}'"

    def __call__(self, inputs, *args, **kwargs):
        # Before Keras's own input check, whose message reports a reshaped shape.
        shape = getattr(inputs, "shape", None)
        if shape is not None:
            where = self._where()
            shape = tuple(shape)
            check.image_shape(shape, image_size=self.image_size, in_channels=self.in_channels, where=where)
            _check_not_empty(shape, where)
            self._warn_unscaled_images(inputs, where)
        return super().__call__(inputs, *args, **kwargs)

    def fit(self, x=None, y=None, *args, **kwargs):
        # Keras calls the model on symbolic tensors here, where the values of float images are out of sight.
        self._warn_unscaled_images(x, self._where())
        with labels.classification_labels(self.loss, labels.output_classes(self), f"{self._where()}.fit", y,
                                         kwargs.get("validation_data")):
            return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._warn_unscaled_images(x, self._where())
        with labels.classification_labels(self.loss, labels.output_classes(self), f"{self._where()}.evaluate", y):
            return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        # Keras's predict fails on zero images with an UnboundLocalError of its own, before calling the model.
        shape = getattr(x, "shape", None)
        if shape is not None and len(shape):
            _check_not_empty(tuple(shape), self._where())
        self._warn_unscaled_images(x, self._where())
        return super().predict(x, *args, **kwargs)

    def _warn_unscaled_images(self, inputs, where):
        """Once per model: integer pixels go in as the numbers they hold, and float images whose values reach
        beyond ``UNSCALED`` are evidently 0..255 pixels; the models expect normalised floats."""
        if getattr(self, "_warned_unscaled_images", False) or getattr(inputs, "dtype", None) is None:
            return
        try:
            dtype = keras.backend.standardize_dtype(inputs.dtype)
        except ValueError:
            return
        if dtype.startswith(("int", "uint")):
            held = " (0..255)" if dtype == "uint8" else ""
            found = f"{dtype} images: they are used as the numbers they hold{held}, not scaled"
        else:
            peak = _peak(inputs) if dtype.startswith(("float", "bfloat")) else None
            if peak is None or not peak > UNSCALED:
                return
            found = (f"{dtype} images with values up to {peak:.4g}: they look like unscaled pixels (0..255), where "
                     f"normalised images stay within a few units of 0")
        self._warned_unscaled_images = True
        warnings.warn(
            f"{where} got {found}. The model expects float images normalised as tfvit.data.load gives them "
            f"((x / 255 - mean) / std per channel, with the dataset's statistics from tfvit.data.dataset_info); "
            f"convert the images the same way, or load them with tfvit.data.load. (Shown once per model.)",
            UserWarning, stacklevel=3,
        )

    def train_step(self, *args):
        """Keras's train step (``(data)`` on TensorFlow, ``(state, data)`` on JAX) inside an
        ``example_keyed_draws`` scope for the whole batch: update t, first example 0 (this replica's
        offset under tf.distribute)."""
        data = args[-1]
        optimizer_variables = args[0][2] if len(args) == 2 else None  # JAX: state[2]
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        local_batch = ops.shape(keras.tree.flatten(x)[0])[0]
        update = keyed_random.optimizer_update(self.optimizer, optimizer_variables)
        first = keyed_random.replica_first_example(local_batch)
        with keyed_random.example_keyed_draws(update, first, local_batch):
            return super().train_step(*args)

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, **self._constructor_config}
        # Layers frozen for fine-tuning (tfvit.training.finetune) stay frozen in a saved model, so that
        # reloading it (and its optimizer, built for the trainable weights only) gives the same training.
        frozen = [layer.name for layer in self.layers if not layer.trainable]
        if frozen and self.trainable:
            config["frozen_layers"] = frozen
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        trainable = config.pop("trainable", True)
        frozen = config.pop("frozen_layers", ())
        model = cls(**config)
        model.trainable = trainable
        for name in frozen:
            model.get_layer(name).trainable = False
        return model
