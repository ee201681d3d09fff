"""``tfvit.layers``, ``tfvit.models`` and ``GradientAccumulationModel`` import and train under KERAS_BACKEND=jax
where TensorFlow is not installed (a JAX-only GPU machine). .ci/run runs this file in a virtual environment of
Keras, JAX, numpy and safetensors only; where TensorFlow is importable it skips, since it could not tell."""

import importlib.util
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                                reason="TensorFlow is installed here: the import test needs an environment without it")


@pytest.mark.parametrize("name", ["vit_mnist_patch4_28", "swin_mnist_patch2_window4_28"])
def test_models_train_with_accumulation_as_with_the_whole_batch(name):
    import keras

    import tfvit
    from tfvit.training import GradientAccumulationModel

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 28, 28, 1)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 10, 6), 10)

    def trained(accum):
        keras.utils.set_random_seed(0)
        model = tfvit.create_model(name, num_classes=10, drop_path_rate=0.0)
        trainer = GradientAccumulationModel(model, accum=accum) if accum > 1 else model
        trainer.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
        trainer.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
        return [np.asarray(w.numpy()) for w in model.weights]

    whole, accumulated = trained(1), trained(3)
    assert max(float(np.abs(a - b).max()) for a, b in zip(whole, accumulated)) < 1e-5
    assert "tensorflow" not in sys.modules
