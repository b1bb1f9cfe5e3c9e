"""The recipe's shift augmentation (ffaccel.model.augment): exact moves with zero fill,
every offset drawn, reproducible from the seed, off by default without touching the other
random streams, and refused (one line) for data that are not images."""

import subprocess
import sys

import numpy as np
import pytest

from ffaccel.config import AccelConfig
from ffaccel.data import DataError, Dataset, finish_dataset
from ffaccel.model.augment import Shifter, shifter
from ffaccel.model.embed import input_codes
from ffaccel.model.ff import FFNet, train_ff
from ffaccel.model.recipe import RecipeError, TrainRecipe


def _moved(im: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Reference: ``im`` moved down by dy and right by dx, zero fill (loops, no numpy tricks)."""
    h, w = im.shape
    out = np.zeros_like(im)
    for y in range(h):
        for x in range(w):
            if 0 <= y - dy < h and 0 <= x - dx < w:
                out[y, x] = im[y - dy, x - dx]
    return out


@pytest.mark.parametrize("shape,shift", [((5, 7), 1), ((6, 4), 2), ((8, 8), 3)])
def test_every_image_is_one_exact_move_and_every_move_occurs(shape, shift):
    h, w = shape
    rng = np.random.default_rng(1)
    x = rng.integers(1, 256, size=(600, h * w))            # no zero pixel: a move is unambiguous
    out = Shifter(shape, shift, seed=3)(x)
    assert out.shape == x.shape
    seen = set()
    for a, b in zip(x, out):
        im, got = a.reshape(h, w), b.reshape(h, w)
        hits = [(dy, dx) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)
                if np.array_equal(_moved(im, dy, dx), got)]
        assert len(hits) == 1, hits
        seen.add(hits[0])
    assert len(seen) == (2 * shift + 1) ** 2


def test_moves_are_reproducible_from_the_seed_and_fresh_every_call():
    x = np.arange(64 * 20).reshape(20, 64) % 251 + 1
    a, b = Shifter((8, 8), 1, 0), Shifter((8, 8), 1, 0)
    first = a(x)
    assert np.array_equal(first, b(x))
    assert not np.array_equal(first, a(x))                  # a new draw at the next step
    assert not np.array_equal(first, Shifter((8, 8), 1, 1)(x))


def test_shift_is_refused_for_non_images_and_for_too_large_moves():
    assert shifter(TrainRecipe(), None)(np.ones((2, 3))).shape == (2, 3)      # off: identity
    with pytest.raises(RecipeError, match="needs image data") as e:
        shifter(TrainRecipe(shift=1), None)
    assert "\n" not in str(e.value)
    with pytest.raises(RecipeError, match="below the image's smaller side"):
        shifter(TrainRecipe(shift=4), (4, 9))
    with pytest.raises(RecipeError, match="shift=65 out of range"):
        TrainRecipe(shift=65)


def test_shift_off_trains_as_before_and_on_changes_training(digits):
    """With shift 0 the image shape changes nothing (bit-identical weights: the shifts have
    their own generator); with shift 1 training sees other inputs."""
    cfg = AccelConfig(inputs=digits.inputs, classes=digits.classes, layers=(16, 16))
    x, y = input_codes(digits.x_train, cfg)[:200], digits.y_train[:200]
    r = TrainRecipe(epochs=2, min_steps=0, lr=0.03, theta=2.0, batch=32)

    def weights(recipe, shape):
        net = FFNet(cfg, seed=0)
        train_ff(net, x, y, recipe, progress=False, image_shape=shape)
        return [p.detach().clone() for p in net.parameters()]

    base = weights(r, None)
    assert all((a == b).all() for a, b in zip(base, weights(r, (8, 8))))
    moved = weights(r.replace(shift=1), (8, 8))
    assert not all((a == b).all() for a, b in zip(base, moved))
    assert all((a == b).all() for a, b in zip(moved, weights(r.replace(shift=1), (8, 8))))


def test_dataset_image_shape_is_checked():
    arrays = {f"{k}_{s}": (np.zeros((4, 6), np.uint8) if k == "x" else np.arange(4) % 2)
              for s in ("train", "val", "test") for k in ("x", "y")}
    assert finish_dataset("t", arrays, {}, image_shape=(2, 3)).image_shape == (2, 3)
    with pytest.raises(DataError, match="height x width = 6"):
        finish_dataset("t", arrays, {}, image_shape=(4, 3))


def test_train_cli_refuses_shift_on_flat_data_before_training(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "flat.npz"
    np.savez(path, x_train=rng.integers(0, 256, (40, 20), dtype=np.uint8), y_train=np.arange(40) % 3,
             x_test=rng.integers(0, 256, (10, 20), dtype=np.uint8), y_test=np.arange(10) % 3)
    out = tmp_path / "n.ckpt"
    p = subprocess.run([sys.executable, "-m", "ffaccel.train", "--dataset", str(path), "--layers", "8",
                        "--shift", "1", "--out", str(out), "--no-progress"], capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert "needs image data" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not out.exists()
