"""Training-time augmentation of image data (recipe ``shift``).

Each training image of a mini-batch is moved by ``(dy, dx)`` whole pixels, each drawn
uniformly from ``-shift..shift``; pixels moved in from outside are 0. The move is done on
the input codes before the label is embedded, so the label pixels stay where inference
reads them. The draws come from their own generator, seeded from the recipe's seed, so a
recipe without shift trains bit for bit as before (shuffles and negatives untouched).
Validation, test, calibration and the hardware see the images as they are.
"""

from __future__ import annotations

import numpy as np

from .recipe import RecipeError, TrainRecipe


class Shifter:
    """Moves batches of flattened images (B, H*W) by random whole-pixel offsets."""

    def __init__(self, image_shape: tuple[int, int], shift: int, seed: int):
        h, w = image_shape
        if not 0 < shift < min(h, w):
            raise RecipeError(f"recipe shift={shift} must be below the image's smaller side ({h}x{w} images)")
        self.h, self.w, self.shift = h, w, shift
        self.rng = np.random.default_rng([seed, 0x5F1F7])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, (h, w), s = len(x), (self.h, self.w), self.shift
        dy = self.rng.integers(-s, s + 1, n)
        dx = self.rng.integers(-s, s + 1, n)
        pad = np.pad(np.asarray(x).reshape(n, h, w), ((0, 0), (s, s), (s, s)))
        rows = np.arange(h)[None, :] + s - dy[:, None]            # out[y, x] = in[y - dy, x - dx]
        cols = np.arange(w)[None, :] + s - dx[:, None]
        return pad[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]].reshape(n, h * w)


def shifter(recipe: TrainRecipe, image_shape: tuple[int, int] | None, seed_offset: int = 0):
    """The recipe's batch transform: ``Shifter``, or the identity when ``shift`` is 0.
    A shift asked of data that are not images is refused (one line)."""
    if not recipe.shift:
        return lambda x: x
    if image_shape is None:
        raise RecipeError(f"recipe shift={recipe.shift} needs image data: this data set's samples are not "
                          f"images (MNIST, Fashion-MNIST, digits and IDX folders are)")
    return Shifter(image_shape, recipe.shift, (recipe.seed + seed_offset) % 2 ** 32)
