"""Bad arguments to create_model and the model classes end in a clear error at once (issue 16): a misspelled
option is a TypeError naming it and the argument it resembles (Keras's Model.__init__ would drop it silently),
num_classes and attention_kwargs of the wrong kind say what they must be, an empty batch is refused at the model's
input, and integer (uint8) images warn once that they are not normalised. Keras's own constructor arguments and
reloading saved models keep working."""

import warnings

import keras
import numpy as np
import pytest

import tfvit
from tfvit.models import ResNet, SwinTransformer, VisionTransformer

TINY_VIT = dict(image_size=8, in_channels=1, patch_size=4, embed_dim=8, depth=1, num_heads=2, num_classes=3)
TINY_SWIN = dict(image_size=8, in_channels=1, patch_size=2, window_size=2, embed_dim=8, depths=(1,), num_heads=(2,),
                 num_classes=3)
TINY_RESNET = dict(image_size=8, in_channels=1, depths=(1,), widths=(4,), stem="cifar", num_classes=3)
FAMILIES = [(VisionTransformer, TINY_VIT), (SwinTransformer, TINY_SWIN), (ResNet, TINY_RESNET)]
REGISTRY = ["vit_mnist_patch4_28", "swin_mnist_patch2_window4_28", "resnet18_cifar"]


def test_create_model_names_a_misspelled_option_and_the_one_it_resembles():
    with pytest.raises(TypeError) as raised:
        tfvit.create_model("vit_mnist_patch4_28", emded_dim=64)
    assert str(raised.value) == "create_model('vit_mnist_patch4_28'): unknown argument 'emded_dim'; did you mean " \
                                "'embed_dim'?"
    with pytest.raises(TypeError, match=r"^create_model\('vit_mnist_patch4_28'\): unknown arguments 'emded_dim' "
                                        r"\(did you mean 'embed_dim'\?\), 'num_class' \(did you mean 'num_classes'"):
        tfvit.create_model("vit_mnist_patch4_28", emded_dim=64, num_class=5)
    with pytest.raises(TypeError, match=r"create_model\('resnet18_cifar'\): unknown argument 'windth'; did you mean "
                                        r"'widths'\?"):
        tfvit.create_model("resnet18_cifar", windth=(8, 8, 8, 8))
    # Nothing close: the message lists what the model takes.
    with pytest.raises(TypeError, match=r"unknown argument 'zzz'\. It takes: .*embed_dim.*window_size"):
        tfvit.create_model("swin_mnist_patch2_window4_28", zzz=1)


@pytest.mark.parametrize("cls, config, typo, meant", [
    (VisionTransformer, TINY_VIT, "num_class", "num_classes"),
    (VisionTransformer, TINY_VIT, "drop_path", "drop_path_rate"),
    (SwinTransformer, TINY_SWIN, "windows_size", "window_size"),
    (SwinTransformer, TINY_SWIN, "depth", "depths"),
    (ResNet, TINY_RESNET, "widht", "width"),  # widths
    (ResNet, TINY_RESNET, "trainabel", "trainable"),  # Keras's own arguments are suggested too
])
def test_model_classes_reject_unknown_arguments(cls, config, typo, meant):
    with pytest.raises(TypeError, match=rf"^{cls.__name__}: unknown argument '{typo}'; did you mean .*'{meant}"):
        cls(**config, **{typo: 1})


@pytest.mark.parametrize("cls, config", FAMILIES)
def test_keras_constructor_arguments_still_work_and_the_models_reload(cls, config, tmp_path):
    model = cls(**config, name="probe", trainable=False, dtype="float32")
    assert (model.name, model.trainable) == ("probe", False)
    # The rest of keras.layers.Layer's arguments are accepted as Keras's functional models accept them.
    cls(**config, autocast=False, activity_regularizer=None)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is cls and loaded.get_config() == model.get_config()
    assert type(model).from_config(model.get_config()).get_config() == model.get_config()


def test_create_model_passes_keras_arguments_and_checkpoint_free_overrides():
    model = tfvit.create_model("vit_mnist_patch4_28", depth=1, num_classes=np.int64(4), trainable=False,
                               dtype="float32")
    assert (model.name, model.trainable, model.output_shape) == ("vit_mnist_patch4_28", False, (None, 4))
    assert type(model.get_config()["num_classes"]) is int


@pytest.mark.parametrize("value", [2.5, "10", True, -1, None])
@pytest.mark.parametrize("name", REGISTRY)
def test_num_classes_must_be_an_integer(name, value):
    overrides = {"depths": (1, 1, 1)} if name.startswith("swin") else {}
    if value is None:  # create_model's None means "the configuration's own": give it to the class instead
        model_class, _, config = tfvit.models.model_config(name)
        with pytest.raises(ValueError, match=r"num_classes must be an integer >= 0 \(a positive integer: the "
                                             r"number of classes; 0: no head.*got None \(NoneType\)"):
            model_class(**{**config, **overrides, "num_classes": None})
        return
    with pytest.raises(ValueError, match=rf"num_classes must be an integer >= 0 \(a positive integer: the number of "
                                         rf"classes; 0: no head, the model returns its pooled features\), got "
                                         rf"{value!r} \({type(value).__name__}\)"):
        tfvit.create_model(name, num_classes=value, **overrides)


def test_attention_kwargs_must_be_a_dict_of_the_layers_options():
    with pytest.raises(ValueError, match=r"attention_kwargs must be a dict of keyword options for "
                                         r"attention='performer_relu' \(e.g\. \{'num_features': 64\}\), got "
                                         r"'num_features=16' \(str\)"):
        tfvit.create_model("vit_mnist_patch4_28", attention="performer_relu", attention_kwargs="num_features=16")
    with pytest.raises(ValueError, match="attention_kwargs must be a dict"):
        VisionTransformer(**TINY_VIT, attention_kwargs=[("num_features", 8)])
    with pytest.raises(TypeError, match=r"^VisionTransformer attention_kwargs \(attention='performer_relu', "
                                        r"PerformerAttention\): unknown argument 'num_feature'; did you mean "
                                        r"'num_features'"):
        VisionTransformer(**TINY_VIT, attention="performer_relu", attention_kwargs={"num_feature": 8})
    with pytest.raises(ValueError, match=r"attention_kwargs: 'qkv_bias' is set by VisionTransformer itself \(from "
                                         r"its qkv_bias argument\); remove it from attention_kwargs"):
        VisionTransformer(**TINY_VIT, attention_kwargs={"qkv_bias": False})
    model = VisionTransformer(**TINY_VIT, attention="performer_relu", attention_kwargs={"num_features": 8})
    assert model.get_layer("blocks.0").attn.num_features == 8


@pytest.mark.parametrize("cls, config", FAMILIES)
def test_an_empty_batch_is_refused_at_the_models_input(cls, config):
    model = cls(**config)
    with pytest.raises(ValueError, match=rf"^{cls.__name__} '{model.name}' got an empty batch \(input shape "
                                         r"\(0, 8, 8, 1\)\): a batch needs at least one image"):
        model(np.zeros((0, 8, 8, 1), "float32"))
    assert model(np.zeros((1, 8, 8, 1), "float32")).shape == (1, 3)


@pytest.mark.parametrize("cls, config", FAMILIES)
def test_integer_images_warn_once_per_model_that_they_are_not_normalised(cls, config):
    model = cls(**config)
    images = np.full((2, 8, 8, 1), 200, "uint8")
    with pytest.warns(UserWarning, match=rf"{cls.__name__} '{model.name}' got uint8 images: they are used as the "
                                         r"numbers they hold \(0\.\.255\), not scaled.*tfvit\.data\.load"):
        out = model(images)
    np.testing.assert_allclose(out, model(images.astype("float32")), atol=1e-5)  # the values as floats
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(images)  # once per model
        model(np.zeros((2, 8, 8, 1), "float32"))
        model(np.zeros((2, 8, 8, 1), "float16"))  # floats never warn
    with pytest.warns(UserWarning, match="int32 images"):
        cls(**config)(images.astype("int32"))  # another model warns again
