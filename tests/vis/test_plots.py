import glob
import io
import os

import numpy as np
import pytest

from tfvit.vis import blend, display_images, overlay_grid, write_tensorboard_images

# matplotlib's "jet" runs from dark blue (0, 0, 0.5) at 0 to dark red (0.5, 0, 0) at 1.
JET_LOW, JET_HIGH = np.array([0.0, 0.0, 0.5]), np.array([0.5, 0.0, 0.0])


def test_blend_matches_the_alpha_blend_by_hand():
    image = np.array([[[[0.2, 0.4, 0.6], [1.0, 0.0, 0.5]]]], np.float32)  # one 1x2 image
    maps = np.array([[[1.0, 0.0]]], np.float32)
    out = blend(image, maps, alpha=0.25, cmap="jet")
    expected = np.array([[[[0.75 * 0.2 + 0.25 * 0.5, 0.75 * 0.4, 0.75 * 0.6],
                           [0.75 * 1.0, 0.0, 0.75 * 0.5 + 0.25 * 0.5]]]])
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # "gray" maps v to (v, v, v) through a 256-entry table, hence the 1/255 tolerance.
    grey = blend(image, np.array([[[0.25, 0.75]]]), alpha=0.5, cmap="gray")
    np.testing.assert_allclose(grey[0, 0, 0], 0.5 * np.array([0.2, 0.4, 0.6]) + 0.5 * 0.25, atol=0.5 / 255)
    np.testing.assert_allclose(grey[0, 0, 1], 0.5 * np.array([1.0, 0.0, 0.5]) + 0.5 * 0.75, atol=0.5 / 255)


def test_display_images_rescales_what_it_is_given():
    uint8 = np.array([[[[0, 51, 255]]]], np.uint8)
    np.testing.assert_allclose(display_images(uint8), [[[[0.0, 0.2, 1.0]]]], atol=1e-7)
    normalised = np.array([[[[-1.0, 0.0, 3.0]]]], np.float32)  # (x - mean) / std with mean 0.5, std 0.25
    np.testing.assert_allclose(display_images(normalised, mean=0.5, std=0.25), [[[[0.25, 0.5, 1.0]]]])
    # Out-of-range floats without mean/std: min-max per image (each image on its own).
    two = np.array([[[[-2.0], [2.0]]], [[[0.0], [4.0]]]], np.float32)
    np.testing.assert_allclose(display_images(two)[..., 0], [[[0.0, 1.0]], [[0.0, 1.0]]])
    np.testing.assert_array_equal(display_images(two).shape, (2, 1, 2, 3))  # grey repeated to RGB
    inside = np.full((1, 2, 2), 0.3, np.float32)  # (B, H, W) grayscale already in [0, 1]: kept
    np.testing.assert_allclose(display_images(inside), 0.3)


def uniform_batch(colours, size=6):
    return np.broadcast_to(np.asarray(colours, np.float32)[:, None, None, :], (len(colours), size, size, 3)).copy()


def test_overlay_grid_png_layout_and_pixels(tmp_path):
    from PIL import Image

    images = uniform_batch([[0.2, 0.4, 0.6], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    rows = {"Grad-CAM": np.ones((3, 6, 6), np.float32), "rollout": np.zeros((3, 6, 6), np.float32)}
    figure = overlay_grid(images, rows, titles=["a", "b", "c"], alpha=0.5, cmap="jet", cell_size=1.0, dpi=80)
    axes = figure.axes
    assert len(axes) == 9  # (1 + 2 rows) x 3 columns
    texts = [ax.get_title() for ax in axes[:3]] + [axes[3 * r].get_ylabel() for r in range(3)]
    assert texts == ["a", "b", "c", "image", "Grad-CAM", "rollout"]

    path = overlay_grid(images, rows, path=tmp_path / "sub" / "grid.png", titles=["a", "b", "c"], alpha=0.5,
                        cmap="jet", cell_size=1.0, dpi=80)
    png = np.asarray(Image.open(path).convert("RGB"), np.float64) / 255.0
    width, height = figure.get_size_inches() * 80
    assert png.shape == (round(height), round(width), 3)
    figure.canvas.draw()  # the same layout as the saved file: read each cell's centre pixel
    expected_rows = [images[:, 0, 0], 0.5 * images[:, 0, 0] + 0.5 * JET_HIGH, 0.5 * images[:, 0, 0] + 0.5 * JET_LOW]
    centres = []
    for index, ax in enumerate(axes):
        row, col = divmod(index, 3)
        box = ax.get_window_extent()
        x, y = int((box.x0 + box.x1) / 2), int(png.shape[0] - (box.y0 + box.y1) / 2)
        centres.append((x, y))
        np.testing.assert_allclose(png[y, x], expected_rows[row][col], atol=1.5 / 255)
    # A grid: columns share x, rows share y, left to right and top to bottom.
    xs = np.array([c[0] for c in centres]).reshape(3, 3)
    ys = np.array([c[1] for c in centres]).reshape(3, 3)
    assert np.all(np.abs(xs - xs[0]) <= 1) and np.all(np.diff(xs[0]) > 40)
    assert np.all(np.abs(ys.T - ys[:, 0]) <= 1) and np.all(np.diff(ys[:, 0]) > 40)


def test_overlay_grid_takes_lists_with_row_labels_and_a_single_array():
    images = uniform_batch([[0.5, 0.5, 0.5], [0.1, 0.2, 0.3]])
    maps = np.zeros((2, 6, 6), np.float32)
    figure = overlay_grid(images, [maps, maps], row_labels=["ViT", "Swin"])
    assert [figure.axes[2 * r].get_ylabel() for r in range(3)] == ["image", "ViT", "Swin"]
    assert len(overlay_grid(images, maps).axes) == 4


def read_images(logdir):
    """tag -> list of (step, [decoded HxWx3 uint8 images])."""
    import tensorflow as tf

    found = {}
    for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                assert value.metadata.plugin_data.plugin_name == "images"
                strings = tf.make_ndarray(value.tensor)  # [width, height, png, png, ...]
                pictures = [tf.io.decode_png(s).numpy() for s in strings[2:]]
                assert all(p.shape == (int(strings[1]), int(strings[0]), 3) for p in pictures)
                found.setdefault(value.tag, []).append((event.step, pictures))
    return found


def test_write_tensorboard_images_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(3, 5, 7, 3)).astype(np.float32)
    maps = {"gradcam": rng.uniform(size=(3, 5, 7)), "rollout": rng.uniform(size=(3, 5, 7))}
    tags = write_tensorboard_images(tmp_path, "saliency", images, maps, step=4, alpha=0.4)
    assert tags == ["saliency/gradcam", "saliency/rollout"]
    found = read_images(str(tmp_path))
    assert sorted(found) == tags
    for label, row in maps.items():
        [(step, pictures)] = found[f"saliency/{label}"]
        assert step == 4 and len(pictures) == 3
        expected = np.round(blend(images, row, alpha=0.4) * 255)
        np.testing.assert_array_equal(np.stack(pictures), expected)  # PNG is lossless


def test_write_tensorboard_images_single_array_uses_the_name(tmp_path):
    images = np.zeros((2, 4, 4, 1), np.uint8)
    write_tensorboard_images(tmp_path, "cam", images, np.ones((2, 4, 4)), step=1)
    found = read_images(str(tmp_path))
    assert list(found) == ["cam"]
    [(_, pictures)] = found["cam"]
    np.testing.assert_array_equal(pictures[0][0, 0], np.round(0.5 * JET_HIGH * 255))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda i, m: blend(i, m[:, :3]), r"maps must have shape \(batch, height, width\) = \(2, 4, 4\)"),
        (lambda i, m: blend(i, m * np.nan), "NaN"),
        (lambda i, m: blend(i, m, alpha=1.5), "alpha must be a number in"),
        (lambda i, m: blend(i, m, cmap="nope"), "'nope' is not a matplotlib colormap"),
        (lambda i, m: blend(i[..., :2], m), r"images must have shape \(batch, height, width, 1 or 3\)"),
        (lambda i, m: display_images(i, mean=0.5), "give both mean and std"),
        (lambda i, m: overlay_grid(i, [m, m], row_labels=["one"]), "one label per map row: 2 rows, got 1"),
        (lambda i, m: overlay_grid(i, {"a": m}, row_labels=["a"]), "row_labels cannot be combined"),
        (lambda i, m: overlay_grid(i, m, titles=["x"]), "one title per image: expected 2, got 1"),
        (lambda i, m: overlay_grid(i, []), "maps is empty"),
        (lambda i, m: write_tensorboard_images("/tmp", "", i, m), "name must be a non-empty string"),
        (lambda i, m: write_tensorboard_images("/tmp", "x", i, m, step=-1), "step must be a non-negative int"),
    ],
)
def test_plots_reject_bad_input(call, message):
    images = np.zeros((2, 4, 4, 3), np.float32)
    with pytest.raises(ValueError, match=message):
        call(images, np.zeros((2, 4, 4), np.float32))


def test_overlay_grid_png_is_a_png(tmp_path):
    # The returned path holds a PNG readable by PIL (not matplotlib's default format for the suffix).
    from PIL import Image

    path = overlay_grid(np.zeros((1, 4, 4, 3)), np.zeros((1, 4, 4)), path=str(tmp_path / "x.png"))
    with open(path, "rb") as handle:
        data = handle.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(data)).format == "PNG"
