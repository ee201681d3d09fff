"""Saliency figures: maps drawn over their images, as a PNG grid or as TensorBoard images.

Each overlay is the alpha blend  out = (1 - alpha) * image + alpha * colormap(map),  with the image
shown in [0, 1] RGB and the map in [0, 1]. Figures are built on ``matplotlib.figure.Figure`` (Agg
canvas, no pyplot state, no screen needed).
"""

import os

import numpy as np

from tfvit.training.distribution import writable


def display_images(images, mean=None, std=None):
    """Images as float32 RGB in [0, 1] for display: (B, H, W, 3).

    ``images``: (B, H, W, C) with C = 1 or 3, or (B, H, W) grayscale. uint8 is divided by 255; with
    ``mean`` and ``std`` (per channel or scalars, the values the data were normalised with) floats are
    mapped back by x * std + mean and clipped; other floats already in [0, 1] are kept and the rest are
    min-max scaled per image.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"images must have shape (batch, height, width, 1 or 3) or (batch, height, width), got "
            f"{images.shape}."
        )
    if (mean is None) != (std is None):
        raise ValueError(
            f"give both mean and std to undo a normalisation, or neither (got mean={mean!r}, std={std!r})."
        )
    if images.dtype == np.uint8:
        shown = images.astype(np.float32) / 255.0
    else:
        shown = images.astype(np.float32)
        if not np.isfinite(shown).all():
            raise ValueError("images contain NaN or infinite values.")
        if mean is not None:
            shown = np.clip(shown * np.asarray(std, np.float32) + np.asarray(mean, np.float32), 0.0, 1.0)
        elif shown.min() < 0.0 or shown.max() > 1.0:
            low = shown.min(axis=(1, 2, 3), keepdims=True)
            span = shown.max(axis=(1, 2, 3), keepdims=True) - low
            shown = (shown - low) / np.where(span > 0, span, 1.0)
    if shown.shape[-1] == 1:
        shown = np.repeat(shown, 3, axis=-1)
    return shown


def blend(images, maps, alpha=0.5, cmap="jet", mean=None, std=None):
    """(1 - alpha) * display_images(images) + alpha * cmap(maps)[..., :3]: float32 (B, H, W, 3) in [0, 1].

    ``maps``: (B, H, W) saliency values in [0, 1] (values outside are clipped by the colormap).
    """
    import matplotlib

    shown = display_images(images, mean=mean, std=std)
    maps = _check_maps(maps, shown.shape[:3], "maps")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}.")
    colormap = _colormap(cmap, matplotlib)
    colours = colormap(np.clip(maps, 0.0, 1.0))[..., :3].astype(np.float32)
    return ((1.0 - alpha) * shown + alpha * colours).astype(np.float32)


def overlay_grid(images, maps, path=None, titles=None, row_labels=None, alpha=0.5, cmap="jet", mean=None,
                 std=None, cell_size=1.6, dpi=100):
    """A grid figure: the plain images in the first row, then one row of overlays per method or model.

    Args:
        images: (B, H, W, C) or (B, H, W); one column per image.
        maps: (B, H, W) for one row, a list of them (one row each), or a dict {row label: maps}.
        path: where to save the figure as PNG (folders are created).
        titles: one title per column (e.g. the label of each image).
        row_labels: one label per map row (not with a dict, whose keys are the labels).
        alpha, cmap, mean, std: as in ``blend``.
        cell_size: inches per image; the PNG is about (B * cell_size) x ((rows + 1) * cell_size) inches
            at ``dpi``, plus room for the labels.
    Returns the matplotlib Figure, or ``path`` when given (the figure is then closed).
    """
    from matplotlib.figure import Figure

    shown = display_images(images, mean=mean, std=std)
    labels, rows = _rows(maps, row_labels)
    batch = shown.shape[0]
    if titles is not None and len(titles) != batch:
        raise ValueError(f"titles must give one title per image: expected {batch}, got {len(titles)}.")
    overlays = [blend(shown, m, alpha=alpha, cmap=cmap) for m in rows]
    label_room = 0.35 if any(labels) else 0.0
    title_room = 0.3 if titles is not None else 0.0
    figure = Figure(figsize=(batch * cell_size + label_room, (len(rows) + 1) * cell_size + title_room), dpi=dpi,
                    layout="constrained")
    axes = figure.subplots(len(rows) + 1, batch, squeeze=False)
    for row, (label, pictures) in enumerate(zip(["image", *labels], [shown, *overlays])):
        for col in range(batch):
            ax = axes[row, col]
            ax.imshow(pictures[col], interpolation="nearest", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0 and label:
                ax.set_ylabel(label, fontsize=9)
            if row == 0 and titles is not None:
                ax.set_title(str(titles[col]), fontsize=9)
    if path is None:
        return figure
    path = writable(os.fspath(path))  # only a multi-worker job's chief writes in place
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=dpi, format="png")
    figure.clear()
    return path


def write_tensorboard_images(logdir, name, images, maps, step=0, alpha=0.5, cmap="jet", mean=None, std=None):
    """Write the overlays as RGB uint8 image summaries under ``logdir`` for ``tensorboard --logdir``.

    One summary per map row, holding all B overlays: tag ``name`` for a single (B, H, W) array, or
    ``name/<row label>`` for a dict or list (labelled ``row_labels`` style: dict keys, or 0, 1, ...).
    Returns the tags written.
    """
    import tensorflow as tf

    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string (the summary tag), got {name!r}.")
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}.")
    shown = display_images(images, mean=mean, std=std)
    single = not isinstance(maps, (dict, list, tuple))
    labels, rows = _rows(maps, None)
    tags = [name] if single else [f"{name}/{label or i}" for i, label in enumerate(labels)]
    writer = tf.summary.create_file_writer(os.fspath(logdir))
    with writer.as_default():
        for tag, row in zip(tags, rows):
            pixels = np.round(blend(shown, row, alpha=alpha, cmap=cmap) * 255.0).astype(np.uint8)
            tf.summary.image(tag, pixels, step=int(step), max_outputs=len(pixels))
    writer.flush()
    writer.close()
    return tags


def _rows(maps, row_labels):
    """(labels, list of (B, H, W) arrays) from one array, a list of arrays or a dict."""
    if isinstance(maps, dict):
        if row_labels is not None:
            raise ValueError("row_labels cannot be combined with a dict of maps: the dict's keys are the labels.")
        labels, rows = [str(k) for k in maps], list(maps.values())
    elif isinstance(maps, (list, tuple)):
        rows = list(maps)
        labels = [""] * len(rows) if row_labels is None else [str(label) for label in row_labels]
    else:
        rows = [maps]
        labels = [""] if row_labels is None else [str(label) for label in row_labels]
    if not rows:
        raise ValueError("maps is empty: give at least one (batch, height, width) array.")
    if len(labels) != len(rows):
        raise ValueError(f"row_labels must give one label per map row: {len(rows)} rows, got {len(labels)} labels.")
    return labels, [np.asarray(r) for r in rows]


def _check_maps(maps, expected, what):
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape != tuple(expected):
        raise ValueError(f"{what} must have shape (batch, height, width) = {tuple(expected)} like the images, "
                         f"got {maps.shape}.")
    if not np.isfinite(maps).all():
        raise ValueError(f"{what} contain NaN or infinite values.")
    return maps


def _colormap(cmap, matplotlib):
    if isinstance(cmap, matplotlib.colors.Colormap):
        return cmap
    try:
        return matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"cmap {cmap!r} is not a matplotlib colormap name (e.g. 'jet', 'viridis', 'inferno').") \
            from None
