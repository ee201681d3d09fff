"""Tables read by index (Swin's relative-position bias, neighbourhood attention's rpb) train as their
dense gradient says, with Keras's stock optimizers: a plain ``fit`` against a GradientTape whose
gradients are made dense before the same optimizer applies them. Keras 3's Adam updates a
tf.IndexedSlices gradient with repeated indices wrongly (tools/sparse_adam_check.py), so a gather
whose gradient reaches the optimizer as slices fails here."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvit

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def tiny(kind):
    keras.utils.set_random_seed(1)
    if kind == "swin":
        return tfvit.models.SwinTransformer(
            image_size=8, patch_size=2, in_channels=1, embed_dim=8, depths=(2,), num_heads=(2,), window_size=2,
            num_classes=3, drop_path_rate=0.0,
        )
    return tfvit.models.VisionTransformer(
        image_size=8, patch_size=2, in_channels=1, embed_dim=8, depth=2, num_heads=2, num_classes=3,
        class_token=False, pooling="mean", attention="local2d", attention_kwargs={"kernel_size": 3},
    )


OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(1e-3),
    "adamw": lambda: keras.optimizers.AdamW(1e-3),
    "sgd": lambda: keras.optimizers.SGD(0.1, momentum=0.9),
}


def data(n=6):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 8, 8, 1)).astype("float32"), rng.integers(0, 3, n)


def dense_tape_training(kind, optimizer, x, y, steps, jit):
    """The reference: full-batch gradients from a tape, converted to dense tensors, applied by ``optimizer``."""
    model = tiny(kind)

    def step():
        with tf.GradientTape() as tape:
            loss = LOSS(y, model(x, training=True))
        gradients = tape.gradient(loss, model.trainable_weights)
        optimizer.apply_gradients(zip([tf.convert_to_tensor(g) for g in gradients], model.trainable_weights))

    step = tf.function(step, jit_compile=True) if jit else step
    snapshots = []
    for _ in range(steps):
        step()
        snapshots.append([w.numpy().copy() for w in model.trainable_weights])
    return snapshots


@pytest.mark.parametrize("mode", ["eager", "xla"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("kind", ["swin", "local2d"])
def test_plain_fit_trains_tables_as_the_dense_gradient_with_stock_optimizers(kind, optimizer, mode):
    x, y = data()
    want = dense_tape_training(kind, OPTIMIZERS[optimizer](), x, y, steps=3, jit=mode == "xla")
    model = tiny(kind)
    model.compile(optimizer=OPTIMIZERS[optimizer](), loss=LOSS, run_eagerly=mode == "eager",
                  jit_compile=mode == "xla")
    tables = [i for i, w in enumerate(model.trainable_weights) if w.name in ("relative_position_bias_table", "rpb")]
    assert tables  # the case under test is there
    for step in (1, 3):
        model.fit(x, y, batch_size=len(x), epochs=1 if step == 1 else 2, shuffle=False, verbose=0)
        for weight, expected in zip(model.trainable_weights, want[step - 1]):
            np.testing.assert_allclose(weight.numpy(), expected, atol=1e-5, err_msg=f"{weight.path}, step {step}")


@pytest.mark.parametrize("name, options", [
    ("swin_cifar_patch2_window4_32", {}),
    ("vit_cifar_patch4_32", {}),
    ("vit_cifar_patch4_32", {"attention": "local2d", "attention_kwargs": {"kernel_size": 3}, "class_token": False,
                             "pooling": "mean"}),
    ("vit_cifar_patch4_32", {"attention": "local1d", "attention_kwargs": {"window": 5}, "class_token": False,
                             "pooling": "mean"}),
    ("vit_cifar_patch4_32", {"attention": "performer_softmax"}),
    ("resnet18_cifar", {}),
])
def test_every_model_family_gives_dense_gradients(name, options):
    model = tfvit.create_model(name, num_classes=10, depth=1, **options) if name.startswith("vit") else \
        tfvit.create_model(name, num_classes=10)
    x = np.random.default_rng(0).normal(size=(2, *model.input_shape[1:])).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=True))
    gradients = tape.gradient(loss, model.trainable_weights)
    sparse = [w.path for w, g in zip(model.trainable_weights, gradients) if isinstance(g, tf.IndexedSlices)]
    assert not sparse
