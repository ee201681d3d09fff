import keras
import numpy as np
import pytest
from keras import ops

from tests.vis import toy_models
from tfvit.vis.occlusion import occlusion

IMAGES = np.random.default_rng(3).uniform(size=(3, 8, 10, 2)).astype("float32")


def min_max(maps):
    low = maps.min(axis=(1, 2), keepdims=True)
    return (maps - low) / (maps.max(axis=(1, 2), keepdims=True) - low)


def linear_drops(images, kernel, classes, window, stride, fill):
    """Brute force: for every window start (from -(w - stride), every stride, while it reaches the image),
    the logit drop of a linear model is sum over the window's pixels (clipped to the image) of w . (x - fill).
    Returns (B, rows, cols) drops and the window starts of each axis."""
    batch, height, width, _ = images.shape
    row_starts = list(range(-(window[0] - stride[0]), height, stride[0]))
    col_starts = list(range(-(window[1] - stride[1]), width, stride[1]))
    drops = np.zeros((batch, len(row_starts), len(col_starts)))
    for b in range(batch):
        for i, r in enumerate(row_starts):
            for j, c in enumerate(col_starts):
                total = 0.0
                for y in range(max(r, 0), min(r + window[0], height)):
                    for x in range(max(c, 0), min(c + window[1], width)):
                        total += np.dot(kernel[y, x, :, classes[b]], images[b, y, x] - fill[b])
                drops[b, i, j] = total
    return drops, row_starts, col_starts


def tent_map(drops, row_starts, col_starts, window, shape):
    """Per pixel: the mean of the drops of the windows holding it, each weighted by the tent
    (w_h / 2 - |y - centre_y|) (w_w / 2 - |x - centre_x|) of that window."""
    batch = len(drops)
    out = np.zeros((batch, *shape))
    for y in range(shape[0]):
        for x in range(shape[1]):
            num, den = np.zeros(batch), 0.0
            for i, r in enumerate(row_starts):
                for j, c in enumerate(col_starts):
                    if r <= y < r + window[0] and c <= x < c + window[1]:
                        weight = (window[0] / 2 - abs(y - (r + (window[0] - 1) / 2))) * (
                            window[1] / 2 - abs(x - (c + (window[1] - 1) / 2)))
                        num += weight * drops[:, i, j]
                        den += weight
            out[:, y, x] = num / den
    return out


@pytest.mark.parametrize("window, stride, fill", [((4, 4), (2, 2), "mean"), ((3, 5), (1, 2), 0.25)])
def test_occlusion_of_a_linear_model_is_its_closed_form(window, stride, fill):
    model, kernel, bias = toy_models.linear_model(softmax=True)  # the Softmax layer is bypassed: logits are scored
    classes = toy_models.linear_logits(IMAGES, kernel, bias).argmax(-1)
    fills = IMAGES.mean(axis=(1, 2)) if fill == "mean" else np.full((3, 2), fill)
    drops, rows, cols = linear_drops(IMAGES, kernel, classes, window, stride, fills)
    grid = occlusion(model, IMAGES, window=window, stride=stride, fill=fill, upsample=False, batch_size=17)
    assert grid.shape == drops.shape and grid.dtype == np.float32
    np.testing.assert_allclose(grid, min_max(drops), atol=1e-5)
    maps = occlusion(model, IMAGES, window=window, stride=stride, fill=fill)
    assert maps.shape == (3, 8, 10) and maps.dtype == np.float32
    np.testing.assert_allclose(maps, min_max(tent_map(drops, rows, cols, window, (8, 10))), atol=1e-5)


def test_box_kernel_is_the_plain_mean_of_the_covering_windows():
    model, kernel, _ = toy_models.linear_model()
    classes = np.array([2, 0, 1])
    drops, rows, cols = linear_drops(IMAGES, kernel, classes, (4, 4), (2, 2), IMAGES.mean(axis=(1, 2)))
    expected = np.zeros((3, 8, 10))
    for y in range(8):
        for x in range(10):
            covering = [(i, j) for i, r in enumerate(rows) for j, c in enumerate(cols)
                        if r <= y < r + 4 and c <= x < c + 4]
            expected[:, y, x] = np.mean([drops[:, i, j] for i, j in covering], axis=0)
    got = occlusion(model, IMAGES, class_index=list(classes), window=4, stride=2, kernel="box")
    np.testing.assert_allclose(got, min_max(expected), atol=1e-5)


@pytest.mark.parametrize("class_index", [None, 1, [2, 0, 1]])
def test_class_index_picks_the_explained_logit(class_index):
    model, kernel, bias = toy_models.linear_model()
    predicted = toy_models.linear_logits(IMAGES, kernel, bias).argmax(-1)
    classes = predicted if class_index is None else np.broadcast_to(class_index, (3,))
    drops, _, _ = linear_drops(IMAGES, kernel, classes, (2, 3), (1, 1), IMAGES.mean(axis=(1, 2)))
    got = occlusion(model, IMAGES, class_index=class_index, window=(2, 3), stride=1, upsample=False)
    np.testing.assert_allclose(got, min_max(drops), atol=1e-5)


def test_defaults_are_a_quarter_of_the_side_and_a_quarter_of_the_window():
    model, _, _ = toy_models.linear_model(shape=(32, 16, 1), classes=2)
    images = np.random.default_rng(0).uniform(size=(2, 32, 16, 1)).astype("float32")
    # window (8, 4), stride (2, 1): starts from -6 to 30 (19) and from -3 to 15 (19)
    assert occlusion(model, images, upsample=False).shape == (2, 19, 19)
    np.testing.assert_array_equal(occlusion(model, images), occlusion(model, images, window=(8, 4), stride=(2, 1)))


def test_a_model_that_ignores_the_image_gives_zero_maps():
    model, _, _ = toy_models.linear_model()
    model.get_layer("head").kernel.assign(np.zeros((160, 3), "float32"))
    maps = occlusion(model, IMAGES, class_index=0)
    assert maps.shape == (3, 8, 10) and not maps.any()


def all_or_nothing_detector():
    """A saturating model: the class-1 logit is min(redness, 0.01), so that any red pixel left visible keeps
    it at its maximum, and only a window hiding the whole square lowers it."""
    def logits(x):
        red = ops.sum(ops.relu(x[..., 0] - x[..., 1] - x[..., 2] - 0.5), axis=(1, 2))
        return ops.stack([ops.zeros_like(red), ops.minimum(red, 0.01)], axis=1)

    inputs = keras.Input((32, 32, 3))
    return keras.Model(inputs, keras.layers.Lambda(logits)(inputs))


def test_the_tent_points_at_the_middle_of_what_a_saturating_model_needs_where_the_box_does_not():
    # A 6x6 red square on grey at odd offsets: with window 8 and stride 2 (the defaults for 32 pixels) a single
    # window position per axis hides it all, starting one pixel before it. The box kernel gives every pixel of
    # that window the same value, a plateau of 8x8 around the square whose first maximum (row-major) is the
    # window's corner, outside the square; the tent peaks at the window's centre, inside the square.
    corners = np.array([[1, 1], [5, 13], [19, 25], [25, 7]])
    images = np.full((4, 32, 32, 3), 0.5, "float32")
    for image, (r, c) in zip(images, corners):
        image[r:r + 6, c:c + 6] = [0.9, 0.1, 0.1]
    model = all_or_nothing_detector()

    def hits(maps):
        r, c = np.divmod(maps.reshape(4, -1).argmax(1), 32)
        return (r >= corners[:, 0]) & (r < corners[:, 0] + 6) & (c >= corners[:, 1]) & (c < corners[:, 1] + 6)

    assert hits(occlusion(model, images, class_index=1)).all()
    assert not hits(occlusion(model, images, class_index=1, kernel="box")).any()


def test_batch_size_does_not_change_the_maps():
    model = toy_models.small_cnn(shape=(8, 10, 2))
    np.testing.assert_allclose(occlusion(model, IMAGES, batch_size=5), occlusion(model, IMAGES), atol=1e-6)


@pytest.mark.parametrize("options, message", [
    ({"window": 0}, r"window must be an int or a \(height, width\) pair of ints in \[1, 8\] x \[1, 10\], got 0"),
    ({"window": (4, 11)}, r"window .* got \(4, 11\)"),
    ({"window": 2.5}, r"window .* got 2.5"),
    ({"window": 4, "stride": 5}, r"stride must be .* in \[1, 4\] x \[1, 4\], got 5"),
    ({"fill": "grey"}, r"fill must be \"mean\" or a finite number, got 'grey'"),
    ({"fill": float("nan")}, r"fill must be .* got nan"),
    ({"kernel": "gauss"}, r"kernel must be one of 'tent', 'box', got 'gauss'"),
    ({"batch_size": 0}, r"batch_size must be a positive integer, got 0"),
    ({"class_index": 3}, r"class_index must lie in \[0, 3\)"),
])
def test_bad_options_raise_value_errors_naming_them(options, message):
    model, _, _ = toy_models.linear_model()
    with pytest.raises(ValueError, match=message):
        occlusion(model, IMAGES, **options)


def test_images_are_checked():
    model, _, _ = toy_models.linear_model()
    with pytest.raises(ValueError, match="occlusion: images must have rank 4"):
        occlusion(model, IMAGES[0])
