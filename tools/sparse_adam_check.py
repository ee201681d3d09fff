"""Keras 3's Adam on a gathered table, reproduced: the minimal case, a Swin's bias tables, keras-hub's Swin.

A gather's gradient reaches a Keras optimizer on TensorFlow as a tf.IndexedSlices with one row per
index, repeated indices unsummed. Adam's update squares that gradient slice by slice, so its second
moment gets the sum of the squared rows instead of the square of their sum. This prints:

1. the minimal case: w = (0, 0), loss = sum(gather(w, [0, 0, 1]) * (1, 1, 2)), gradient (2, 2): one
   Adam step at lr 1e-3 should move both entries by -1e-3 (Adam's first step is -lr * sign);
2. a Swin's relative-position bias tables after one plain ``fit`` step with AdamW, against a
   GradientTape whose gradients are made dense before the same optimizer applies them: tfvit as it
   is (``take_rows``), tfvit with Keras's gather put back, and keras-hub's SwinTransformerBackbone
   (when keras-hub is installed), all built by tools/benchmark_config.py as the CIFAR Swin
   (swin_cifar_patch2_window4_32), in eager mode and under XLA.

    python -m tools.sparse_adam_check
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from tfvit.layers import table_lookup, window  # noqa: E402
from tools.benchmark_config import build, keras_hub_available  # noqa: E402

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
TABLE = "relative_position_bias_table"


def minimal_case():
    """w after one Adam step, per way of reading the rows."""
    moved = {}
    for name, read in (("tf.gather (Keras's ops.take)", lambda w: tf.gather(w, [0, 0, 1])),
                       ("tfvit take_rows", lambda w: table_lookup.take_rows(w, [0, 0, 1]))):
        w = keras.Variable([0.0, 0.0])
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(read(w) * tf.constant([1.0, 1.0, 2.0]))
        gradient = tape.gradient(loss, w)
        keras.optimizers.Adam(1e-3).apply_gradients([(gradient, w)])
        moved[name] = (type(gradient).__name__, w.numpy())
    return moved


CONFIG = "swin_cifar_patch2_window4_32"  # tools/benchmark_config.py builds it with tfvit and with keras-hub alike


def model_of(impl):
    def make():
        keras.utils.set_random_seed(0)
        return build(impl, CONFIG)

    return make


def table_error(make, jit):
    """Largest |difference| over the bias tables after one AdamW step: plain fit against a dense tape."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, 16)
    fitted = make()
    fitted.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=LOSS, jit_compile=jit, run_eagerly=not jit)
    fitted.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    reference = make()
    optimizer = keras.optimizers.AdamW(1e-3)

    def step():
        with tf.GradientTape() as tape:
            loss = LOSS(y, reference(x, training=True))
        gradients = tape.gradient(loss, reference.trainable_weights)
        optimizer.apply_gradients(zip([tf.convert_to_tensor(g) for g in gradients], reference.trainable_weights))

    (tf.function(step, jit_compile=True) if jit else step)()
    tables = [(a, b) for a, b in zip(fitted.trainable_weights, reference.trainable_weights) if TABLE in a.path]
    others = [(a, b) for a, b in zip(fitted.trainable_weights, reference.trainable_weights) if TABLE not in a.path]
    worst = lambda pairs: max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in pairs)
    return len(tables), worst(tables), worst(others)


def main():
    print("1. One Adam step (lr 1e-3) on w = (0, 0) through gather [0, 0, 1], gradient (2, 2); "
          "the right answer is (-0.001, -0.001).\n")
    for name, (kind, w) in minimal_case().items():
        print(f"   {name:30s} gradient as {kind:14s} w = ({w[0]:.6f}, {w[1]:.6f})")
    print(f"\n2. {CONFIG}'s bias tables after one AdamW step of a plain fit, against a dense-gradient "
          "tape (max |difference|):\n")
    print("| model | tables | eager | XLA | other weights (eager, XLA) |\n|---|---|---|---|---|")
    keras_gather = lambda table, indices: ops.take(table, indices, axis=0)
    cases = [("tfvit (take_rows)", model_of("tfvit"), None),
             ("tfvit with Keras's gather", model_of("tfvit"), keras_gather)]
    if keras_hub_available():
        import keras_hub

        cases.append((f"keras-hub {keras_hub.__version__} SwinTransformerBackbone", model_of("keras_hub"), None))
    else:
        print("(keras-hub is not installed: pip install -e '.[bench]' adds its row)")
    for label, make, patch in cases:
        original = window.take_rows
        if patch is not None:
            window.take_rows = patch
        try:
            count, eager, eager_rest = table_error(make, jit=False)
            _, xla, xla_rest = table_error(make, jit=True)
        finally:
            window.take_rows = original
        print(f"| {label} | {count} | {eager:.2e} | {xla:.2e} | {eager_rest:.1e}, {xla_rest:.1e} |")


if __name__ == "__main__":
    main()
