"""Patch, class-token and position embeddings of the Vision Transformer.

Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words", eq. 1:
    z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos,   E a linear map of flattened P x P patches.
The linear map of non-overlapping patches is a convolution with kernel = stride = P.
"""

import keras
import numpy as np
from keras import ops

from tfvit import _validation as check
from tfvit.layers.bias import Conv2D
from tfvit.layers.layer_norm import LayerNorm


@keras.saving.register_keras_serializable(package="tfvit")
class PatchEmbedding(keras.layers.Layer):
    """Cut (B, H, W, C) images into P x P patches and project each to ``embed_dim``.

    Output: (B, H/P * W/P, D) tokens when ``flatten`` (ViT), or the (B, H/P, W/P, D) grid (Swin).
    ``use_norm`` adds a LayerNorm after the projection (Swin's ``patch_embed.norm``).
    Sub-layers follow timm's names: ``proj`` and ``norm``.
    """

    def __init__(self, patch_size, embed_dim, use_norm=False, norm_epsilon=1e-5, flatten=True, **kwargs):
        check.known_arguments(self, kwargs)
        super().__init__(**kwargs)
        self.patch_size = check.as_pair("patch_size", patch_size)
        self.embed_dim = check.positive_int("embed_dim", embed_dim)
        self.use_norm = bool(use_norm)
        self.norm_epsilon = float(norm_epsilon)
        self.flatten = bool(flatten)
        self.proj = Conv2D(
            self.embed_dim, self.patch_size, strides=self.patch_size, padding="valid",
            dtype=self.dtype_policy, name="proj",
        )
        self.norm = (
            LayerNorm(epsilon=self.norm_epsilon, dtype=self.dtype_policy, name="norm")
            if self.use_norm else None
        )

    def build(self, input_shape):
        check.image_shape(input_shape, patch_size=self.patch_size, where=self.name)
        self.proj.build(input_shape)
        if self.norm is not None:
            self.norm.build(tuple(input_shape[:-1]) + (self.embed_dim,))
        # Fix the channel count so a later call with other channels fails with a clear message.
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: input_shape[-1]})
        self.built = True

    def call(self, images):
        x = self.proj(images)
        if self.flatten:
            _, gh, gw, d = x.shape
            x = ops.reshape(x, (-1, gh * gw, d))
        if self.norm is not None:
            x = self.norm(x)
        return x

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        gh = None if h is None else h // self.patch_size[0]
        gw = None if w is None else w // self.patch_size[1]
        if self.flatten:
            return (b, None if gh is None or gw is None else gh * gw, self.embed_dim)
        return (b, gh, gw, self.embed_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            patch_size=self.patch_size, embed_dim=self.embed_dim, use_norm=self.use_norm,
            norm_epsilon=self.norm_epsilon, flatten=self.flatten,
        )
        return config


@keras.saving.register_keras_serializable(package="tfvit")
class ClassToken(keras.layers.Layer):
    """Prepend one learned token to the sequence: (B, N, D) -> (B, 1 + N, D).

    Initialised N(0, 1e-6^2) as in timm; its final state is the image representation for
    ``pooling="token"``.
    """

    def __init__(self, **kwargs):
        check.known_arguments(self, kwargs)
        super().__init__(**kwargs)

    def build(self, input_shape):
        self.cls_token = self.add_weight(
            name="cls_token", shape=(1, 1, input_shape[-1]),
            initializer=keras.initializers.RandomNormal(stddev=1e-6),
        )
        self.built = True

    def call(self, tokens):
        batch = ops.shape(tokens)[0]
        cls = ops.broadcast_to(ops.cast(self.cls_token, tokens.dtype), (batch, 1, tokens.shape[-1]))
        return ops.concatenate([cls, tokens], axis=1)

    def compute_output_shape(self, input_shape):
        b, n, d = input_shape
        return (b, None if n is None else n + 1, d)


def resize_position_embedding(table, source_grid, target_grid, num_prefix_tokens=1, interpolation="bicubic"):
    """Resample a learned position-embedding table to a new token grid.

    ``table`` has shape (1, P + Hs*Ws, D): P prefix tokens (class token) that are kept as they are,
    then a row-major Hs x Ws grid that is resized to Ht x Wt as an image with D channels, as timm and
    the ViT paper (section 3.2) do to fine-tune at a higher resolution.
    Returns a numpy array of shape (1, P + Ht*Wt, D).
    """
    source_grid = check.as_pair("source_grid", source_grid)
    target_grid = check.as_pair("target_grid", target_grid)
    table = np.asarray(ops.convert_to_numpy(table), dtype=np.float32)
    expected = num_prefix_tokens + source_grid[0] * source_grid[1]
    if table.ndim != 3 or table.shape[0] != 1 or table.shape[1] != expected:
        raise ValueError(
            f"position table of shape {table.shape} does not hold {num_prefix_tokens} prefix token(s) "
            f"plus a {source_grid} grid: expected (1, {expected}, dim)."
        )
    if source_grid == target_grid:
        return table
    prefix, grid = table[:, :num_prefix_tokens], table[:, num_prefix_tokens:]
    grid = grid.reshape(1, source_grid[0], source_grid[1], -1)
    # Shrinking a table (e.g. a 224-px checkpoint for 32-px images) low-pass filters it first, as timm's
    # resample_abs_pos_embed does (antialias=True); plain bicubic would alias the fine structure.
    shrinking = target_grid[0] < source_grid[0] or target_grid[1] < source_grid[1]
    grid = ops.convert_to_numpy(
        ops.image.resize(grid, target_grid, interpolation=interpolation, antialias=shrinking)
    ).astype(np.float32)
    return np.concatenate([prefix, grid.reshape(1, target_grid[0] * target_grid[1], -1)], axis=1)


@keras.saving.register_keras_serializable(package="tfvit")
class PositionEmbedding(keras.layers.Layer):
    """Add a learned position embedding E_pos of shape (1, P + H*W, D) to the tokens.

    ``grid_size`` is the patch grid (H, W); ``num_prefix_tokens`` counts the tokens before the grid
    (1 for a class token). The table is resizable: ``load_resized(table, source_grid)`` takes a table
    learned on another grid and interpolates it, and loading weights saved for another grid does the
    same automatically.
    """

    def __init__(self, grid_size, num_prefix_tokens=1, interpolation="bicubic", **kwargs):
        check.known_arguments(self, kwargs)
        super().__init__(**kwargs)
        self.grid_size = check.as_pair("grid_size", grid_size)
        if num_prefix_tokens < 0:
            raise ValueError(f"num_prefix_tokens must be >= 0, got {num_prefix_tokens}.")
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.interpolation = interpolation

    @property
    def num_tokens(self):
        return self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]

    def build(self, input_shape):
        if input_shape[1] is not None and input_shape[1] != self.num_tokens:
            raise ValueError(
                f"{self.name}: expected {self.num_tokens} tokens ({self.num_prefix_tokens} prefix + "
                f"{self.grid_size[0]}x{self.grid_size[1]} grid), got {input_shape[1]}."
            )
        self.pos_embed = self.add_weight(
            name="pos_embed", shape=(1, self.num_tokens, input_shape[-1]),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )
        self.built = True

    def call(self, tokens):
        return tokens + ops.cast(self.pos_embed, tokens.dtype)

    def load_resized(self, table, source_grid):
        """Assign a table learned on ``source_grid``, interpolated to this layer's grid."""
        self.pos_embed.assign(
            resize_position_embedding(table, source_grid, self.grid_size, self.num_prefix_tokens, self.interpolation)
        )

    def load_own_variables(self, store):
        table = store["0"]
        stored_tokens = table.shape[1] - self.num_prefix_tokens
        if table.shape[1] != self.num_tokens:
            side = int(round(stored_tokens ** 0.5))
            if side * side != stored_tokens:
                raise ValueError(
                    f"{self.name}: stored table of shape {table.shape} is not a square grid; use "
                    f"load_resized(table, source_grid) with its grid."
                )
            self.load_resized(np.asarray(table), (side, side))
            return
        super().load_own_variables(store)

    def get_config(self):
        config = super().get_config()
        config.update(
            grid_size=self.grid_size, num_prefix_tokens=self.num_prefix_tokens, interpolation=self.interpolation
        )
        return config
