"""How far a model's bias gradients under mixed_bfloat16 are from its float32 ones, on TensorFlow.

Builds a tfvit registry model twice with the same seed (float32, then mixed_bfloat16), computes the
gradient of the cross-entropy of one random batch, and prints, for every bias of a Dense or Conv layer
(norms and the float32 head excluded), the relative error ||g_bf16 - g_f32|| / ||g_f32||:

    python -m tools.bias_gradient_check                          # CIFAR ViT, batch 128
    TFVIT_CLOSED_FORM_GRADIENTS=0 python -m tools.bias_gradient_check   # with TensorFlow's BiasAddGrad

With ``TFVIT_CLOSED_FORM_GRADIENTS=0`` the layers fall back to Keras's bias addition, whose TensorFlow
CPU gradient kernel accumulates bfloat16 in bfloat16 (tfvit/layers/bias.py). bfloat16's own rounding
(8 significant bits) bounds what any bfloat16 gradient can reach; docs/accumulation.md gives the measured errors.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def bias_gradients(model_name, policy, x, y):
    import keras
    import tensorflow as tf

    import tfvit

    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    model = tfvit.create_model(model_name, drop_path_rate=0.0)
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    biases = [w for w in model.trainable_weights
              if w.path.endswith("bias") and "norm" not in w.path and not w.path.startswith("head")]
    return {w.path: tf.cast(g, tf.float64).numpy() for w, g in zip(biases, tape.gradient(loss, biases))}


def main(argv=None):
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_cifar_patch4_32")
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args(argv)
    import tfvit

    model = tfvit.create_model(args.model)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, *model.input_shape[1:])).astype("float32")
    y = rng.integers(0, model.output_shape[-1], args.batch)
    exact = bias_gradients(args.model, "float32", x, y)
    low = bias_gradients(args.model, "mixed_bfloat16", x, y)
    errors = {path: float(np.linalg.norm(low[path] - g) / np.linalg.norm(g)) for path, g in exact.items()}
    for path, error in errors.items():
        print(f"{path:60s} {error:8.4f}")
    switch = os.environ.get("TFVIT_CLOSED_FORM_GRADIENTS", "1")
    print(f"{len(errors)} biases, TFVIT_CLOSED_FORM_GRADIENTS={switch}: relative error median "
          f"{np.median(list(errors.values())):.4f}, max {max(errors.values()):.4f}")


if __name__ == "__main__":
    main()
