"""The registry's models on Keras's JAX backend, unchanged: small versions of each kind build, run
forward, and give the same outputs as TensorFlow with the same weights. The reference is an
independent TensorFlow process (KERAS_BACKEND=tensorflow) that loads the weights saved here into the
same registry model and runs the same inputs."""

from tests.jax import require_jax_backend

require_jax_backend()

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

import tfvit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Registry models cut down to a few blocks and narrow widths (the code paths are the full models').
MODELS = {
    "vit_cifar_patch4_32": {"depth": 2, "embed_dim": 32, "num_heads": 2},
    "vit_cifar_patch4_32_local2d": {"depth": 2, "embed_dim": 32, "num_heads": 2},
    "vit_cifar_patch4_32_local1d": {"depth": 2, "embed_dim": 32, "num_heads": 2},
    "vit_cifar_patch4_32_performer_softmax_16": {"depth": 2, "embed_dim": 32, "num_heads": 2},
    "vit_cifar_patch4_32_performer_relu_16": {"depth": 1, "embed_dim": 32, "num_heads": 2},
    # Shifted windows on the 16x16 grid, patch merging, one unshifted window on the last 4x4 stage.
    "swin_cifar_patch2_window4_32": {"embed_dim": 16, "depths": (2, 1, 1), "num_heads": (2, 2, 2)},
    # 28x28: the 14x14 and 7x7 grids are padded up to the window.
    "swin_mnist_patch2_window4_28": {"embed_dim": 16, "depths": (2, 2), "num_heads": (2, 2)},
    "resnet18_cifar": {"depths": (1, 1, 1, 1), "widths": (8, 8, 8, 8)},
}
BATCH = 3

TENSORFLOW_FORWARD = textwrap.dedent("""
    import ast, sys
    import keras, numpy as np, tfvit
    assert keras.backend.backend() == "tensorflow", keras.backend.backend()
    workdir = sys.argv[1]
    models = ast.literal_eval(open(f"{workdir}/models.txt").read())
    inputs = np.load(f"{workdir}/inputs.npz")
    outputs = {}
    for name, overrides in models.items():
        model = tfvit.create_model(name, **overrides)
        model.load_weights(f"{workdir}/{name}.weights.h5")
        outputs[name] = keras.ops.convert_to_numpy(model(inputs[name], training=False))
    np.savez(f"{workdir}/tensorflow_outputs.npz", **outputs)
""")


def perturb(model, rng):
    """Move every weight off its initial value (zero biases, unit norms, BatchNorm's 0/1 statistics):
    a weight that failed to load, or a statistic that inference ignored, then changes the outputs."""
    for variable in model.weights:
        if not keras.backend.is_float_dtype(variable.dtype):
            continue  # Performer's redraw counter
        value = keras.ops.convert_to_numpy(variable)
        if variable.path.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, value.shape)
        else:
            value = value + 0.05 * rng.normal(size=value.shape)
        variable.assign(value.astype(variable.dtype))


def jax_and_tensorflow_outputs(workdir):
    """{model name: (JAX outputs, TensorFlow outputs)} on the same weights and inputs."""
    rng = np.random.default_rng(0)
    models, inputs = {}, {}
    for name, overrides in MODELS.items():
        model = tfvit.create_model(name, **overrides)
        perturb(model, rng)
        model.save_weights(str(workdir / f"{name}.weights.h5"))
        models[name] = model
        inputs[name] = rng.normal(size=(BATCH, *model.input_shape[1:])).astype("float32")
    np.savez(workdir / "inputs.npz", **inputs)
    (workdir / "models.txt").write_text(repr(MODELS))
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    # TensorFlow runs beside the JAX forward passes below.
    reference = subprocess.Popen([sys.executable, "-c", TENSORFLOW_FORWARD, str(workdir)], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jax_outputs = {name: model.predict(inputs[name], batch_size=BATCH, verbose=0) for name, model in models.items()}
    _, stderr = reference.communicate(timeout=300)
    assert reference.returncode == 0, stderr[-3000:]
    tensorflow_outputs = np.load(workdir / "tensorflow_outputs.npz")
    return {name: (np.asarray(jax_outputs[name]), tensorflow_outputs[name]) for name in MODELS}


def test_registry_models_run_on_jax_and_match_tensorflow(tmp_path):
    """One test for all the models, so that one TensorFlow process serves them (and pytest-xdist runs
    them on one worker); a failure lists every model that failed."""
    failures = []
    for name, (got, want) in jax_and_tensorflow_outputs(tmp_path).items():
        num_classes = tfvit.models.registry.model_config(name)[2]["num_classes"]
        if got.shape != (BATCH, num_classes) or not np.isfinite(got).all():
            failures.append(f"{name}: JAX output of shape {got.shape}, finite: {np.isfinite(got).all()}")
        elif np.ptp(got) < 1e-2:  # outputs that vary: the comparison has something to compare
            failures.append(f"{name}: JAX outputs are (nearly) constant: {got}")
        elif not np.allclose(got, want, rtol=1e-4, atol=1e-4):
            failures.append(f"{name}: JAX and TensorFlow outputs differ by up to {np.abs(got - want).max():.3g}")
    assert not failures, "\n".join(failures)


def test_fit_on_jax_lowers_the_loss():
    """A few epochs on fixed random batches, drop path on (the model's RNG state on JAX): the loss
    stays finite and goes down."""
    model = tfvit.create_model("vit_cifar_patch4_32", depth=2, embed_dim=32, num_heads=2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, 16)
    model.compile(optimizer=keras.optimizers.AdamW(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    losses = model.fit(x, y, batch_size=8, epochs=5, shuffle=False, verbose=0).history["loss"]
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.8 * losses[0], losses
    assert int(model.optimizer.iterations) == 10
    assert all(not np.array_equal(b, keras.ops.convert_to_numpy(w)) for b, w in zip(before, model.trainable_weights))
