import numpy as np
import pytest

from tests import reference
from tests.vis import toy_models
from tfvit.vis.rise import _upsample, rise, rise_masks

IMAGES = np.random.default_rng(3).uniform(size=(3, 8, 10, 2)).astype("float32")


def min_max(maps):
    low = maps.min(axis=(1, 2), keepdims=True)
    return (maps - low) / (maps.max(axis=(1, 2), keepdims=True) - low)


def brute_force_rise(images, masks, kernel, bias, classes, keep, fill, probability=False):
    """Petsiuk et al. 2018, eq. 6, one image and one mask at a time, with centred scores:
    S = 1 / (N p) sum_i (f_i - mean f) M_i, f_i the class score of x M_i + fill (1 - M_i)."""
    maps = []
    for b, x in enumerate(images.astype(np.float64)):
        scores = []
        for m in masks.astype(np.float64):
            masked = x * m[..., None] + fill[b] * (1 - m[..., None])
            logits = np.einsum("hwc,hwck->k", masked, kernel) + bias
            scores.append((reference.softmax(logits) if probability else logits)[classes[b]])
        scores = np.array(scores)
        maps.append(np.einsum("i,ihw->hw", scores - scores.mean(), masks) / (len(masks) * keep))
    return np.stack(maps)


@pytest.mark.parametrize("options", [
    {},
    {"cell": (3, 2), "keep": 0.3, "fill": 0.0},
    {"score": "probability", "fill": 0.5, "seed": 4},
])
def test_rise_of_a_linear_model_matches_the_brute_force_sum_over_the_same_masks(options):
    model, kernel, bias = toy_models.linear_model(softmax=True)  # scored on the logits unless asked otherwise
    keep, fill, seed = options.get("keep", 0.5), options.get("fill", "mean"), options.get("seed", 0)
    classes = toy_models.linear_logits(IMAGES, kernel, bias).argmax(-1)
    masks = rise_masks(300, (8, 10), cell=options.get("cell"), keep=keep, seed=seed)
    fills = IMAGES.mean(axis=(1, 2)) if fill == "mean" else np.full((3, 2), fill)
    expected = brute_force_rise(IMAGES, masks, kernel, bias, classes, keep, fills,
                                probability=options.get("score") == "probability")
    got = rise(model, IMAGES, num_masks=300, batch_size=64, **options)
    assert got.shape == (3, 8, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, min_max(expected), atol=1e-4)


def bilinear_half_pixel(grid, factor):
    """Textbook bilinear upsampling of one (h, w) grid by integer factors: output pixel y samples the grid at
    (y + 0.5) / f - 0.5, clamped to the edge cells."""
    h, w = grid.shape
    out = np.zeros((h * factor[0], w * factor[1]))
    for y in range(out.shape[0]):
        sy = min(max((y + 0.5) / factor[0] - 0.5, 0.0), h - 1)
        y0 = int(np.floor(sy))
        y1, fy = min(y0 + 1, h - 1), sy - y0
        for x in range(out.shape[1]):
            sx = min(max((x + 0.5) / factor[1] - 0.5, 0.0), w - 1)
            x0 = int(np.floor(sx))
            x1, fx = min(x0 + 1, w - 1), sx - x0
            out[y, x] = (1 - fy) * ((1 - fx) * grid[y0, x0] + fx * grid[y0, x1]) + fy * (
                (1 - fx) * grid[y1, x0] + fx * grid[y1, x1])
    return out


def test_masks_are_binary_cell_grids_upsampled_bilinearly_and_shifted():
    # Petsiuk et al. 2018, section 3.2: a (ceil(H / cell) + 1)-cell binary grid, upsampled by the cell size,
    # cropped to H x W at a shift of less than one cell.
    rng = np.random.default_rng(0)
    grids = (rng.random((4, 4, 5)) < 0.5).astype("float32")  # (8 / 3 rounded up + 1, 10 / 3 rounded up + 1)
    shifts = np.array([[0, 0], [1, 2], [2, 1], [2, 2]])
    got = _upsample(grids, shifts, (8, 10), (3, 3))
    for grid, (dy, dx), mask in zip(grids, shifts, got):
        np.testing.assert_allclose(mask, bilinear_half_pixel(grid, (3, 3))[dy:dy + 8, dx:dx + 10], atol=1e-6)


def test_mask_statistics_and_seeding():
    masks = rise_masks(2000, (8, 10), cell=(2, 3), keep=0.3, seed=1)
    assert masks.shape == (2000, 8, 10) and masks.dtype == np.float32
    assert masks.min() >= 0 and masks.max() <= 1
    assert abs(masks.mean() - 0.3) < 0.01  # each cell kept with probability keep, interpolation keeps the mean
    np.testing.assert_array_equal(masks, rise_masks(2000, (8, 10), cell=(2, 3), keep=0.3, seed=1))
    assert not np.array_equal(masks, rise_masks(2000, (8, 10), cell=(2, 3), keep=0.3, seed=2))
    # cell 1: no interpolation, every pixel its own cell: the masks are binary
    binary = rise_masks(50, (8, 10), cell=1, seed=0)
    assert set(np.unique(binary)) <= {0.0, 1.0}
    # the default cell is an eighth of the side: 4 pixels on 32
    np.testing.assert_array_equal(rise_masks(20, (32, 32)), rise_masks(20, (32, 32), cell=4))


def test_rise_points_at_the_only_pixels_a_linear_model_reads():
    model, _, _ = toy_models.linear_model(shape=(16, 16, 1), classes=2)
    kernel = np.zeros((16, 16, 1, 2), "float32")
    kernel[9:12, 3:6, 0, 1] = 1.0  # class 1 reads a 3x3 patch only
    model.get_layer("head").kernel.assign(kernel.reshape(256, 2))
    # the patch is bright on a dark ground, so that the default fill (the image's mean) lowers its logit
    images = np.random.default_rng(0).uniform(0.0, 0.3, size=(4, 16, 16, 1)).astype("float32")
    images[:, 9:12, 3:6] += 0.7
    maps = rise(model, images, class_index=1, num_masks=1000, cell=2)
    rows, cols = np.divmod(maps.reshape(4, -1).argmax(1), 16)
    assert ((rows >= 9) & (rows < 12) & (cols >= 3) & (cols < 6)).all()


@pytest.mark.parametrize("class_index", [None, 1, [2, 0, 1]])
def test_class_index_picks_the_explained_logit(class_index):
    model, kernel, bias = toy_models.linear_model()
    predicted = toy_models.linear_logits(IMAGES, kernel, bias).argmax(-1)
    classes = predicted if class_index is None else np.broadcast_to(class_index, (3,))
    masks = rise_masks(100, (8, 10))
    expected = brute_force_rise(IMAGES, masks, kernel, bias, classes, 0.5, IMAGES.mean(axis=(1, 2)))
    got = rise(model, IMAGES, class_index=class_index, num_masks=100)
    np.testing.assert_allclose(got, min_max(expected), atol=1e-4)


def test_maps_are_deterministic_and_independent_of_the_batch_size():
    model = toy_models.small_cnn(shape=(8, 10, 2))
    maps = rise(model, IMAGES, num_masks=200)
    np.testing.assert_array_equal(maps, rise(model, IMAGES, num_masks=200))
    np.testing.assert_allclose(rise(model, IMAGES, num_masks=200, batch_size=7), maps, atol=1e-5)
    np.testing.assert_allclose(rise(model, IMAGES, num_masks=200, batch_size=1000), maps, atol=1e-5)
    assert np.abs(rise(model, IMAGES, num_masks=200, seed=1) - maps).max() > 0.05


@pytest.mark.parametrize("options, message", [
    ({"num_masks": 0}, r"num_masks must be a positive integer, got 0"),
    ({"cell": 0}, r"cell must be an int or a \(height, width\) pair of ints in \[1, 8\] x \[1, 10\], got 0"),
    ({"cell": (2, 11)}, r"cell .* got \(2, 11\)"),
    ({"keep": 1.0}, r"keep must be a probability in \(0, 1\), got 1.0"),
    ({"keep": "half"}, r"keep must be a probability in \(0, 1\), got 'half'"),
    ({"fill": "grey"}, r"fill must be \"mean\" or a finite number, got 'grey'"),
    ({"score": "softmax"}, r"score must be one of 'logit', 'probability', got 'softmax'"),
    ({"seed": 0.5}, r"seed must be an integer, got 0.5"),
    ({"batch_size": 0}, r"batch_size must be a positive integer, got 0"),
    ({"class_index": -1}, r"class_index must lie in \[0, 3\)"),
])
def test_bad_options_raise_value_errors_naming_them(options, message):
    model, _, _ = toy_models.linear_model()
    with pytest.raises(ValueError, match=message):
        rise(model, IMAGES, **{"num_masks": 10, **options})


def test_images_are_checked():
    model, _, _ = toy_models.linear_model()
    with pytest.raises(ValueError, match="rise: images must have rank 4"):
        rise(model, IMAGES[0])
