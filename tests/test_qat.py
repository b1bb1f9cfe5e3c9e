"""Quantisation-aware fine-tuning (ffaccel.model.qat): the grid of least error, the
straight-through forward pass, weights left on a grid the integer quantiser reproduces
exactly, and the accuracy it recovers at 3-bit weights against plain rounding."""

import numpy as np
import pytest
import torch

from ffaccel.config import AccelConfig
from ffaccel.data import load_dataset
from ffaccel.model.cache import cache_key
from ffaccel.model.embed import input_codes
from ffaccel.model.ff import FFNet
from ffaccel.model.golden import GoldenModel
from ffaccel.model.quant import grid_frac, quantize
from ffaccel.model.recipe import TrainRecipe
from ffaccel.model.training import fit


def test_grid_of_least_error_clips_outliers():
    w = np.concatenate([np.linspace(-0.1, 0.1, 999), [1.0]])
    # max-based grid at 4 bits: f = 2 (7 * 0.25 >= 1); every small weight then rounds to 0
    assert grid_frac(np.array([1.0]), 4, -12) == 2
    f = grid_frac(w, 4, -12)
    assert f > 2
    err = lambda g: float(np.square(np.clip(np.floor(w * 2.0 ** g + 0.5), -8, 7) * 2.0 ** -g - w).sum())
    assert err(f) == min(err(g) for g in range(2, 7))
    # weights beyond the integer range: a negative f (coarser than 1), bounded below by lo
    assert grid_frac(np.array([40.0, -3.0]), 4, -12) == -3 and grid_frac(np.array([40.0]), 4, -2) == -2


def test_forward_rounds_with_a_straight_through_gradient():
    cfg = AccelConfig(inputs=8, layers=(4,), classes=2)
    net = FFNet(cfg, seed=1)
    x = torch.rand(3, 8)
    net.wgrid = [(2, 7)]
    w = net.weight(0).detach()
    assert torch.equal(w * 4, torch.round(w * 4)) and float(w.abs().max()) <= 7 / 4
    net.layer(0, x).pow(2).sum().backward()
    assert net.layers[0].weight.grad is not None and net.layers[0].weight.grad.abs().sum() > 0
    net.wgrid = None
    assert net.weight(0) is net.layers[0].weight


def test_cache_key_names_the_width_only_with_qat():
    ds = load_dataset("digits")
    a, b = AccelConfig(inputs=64, layers=(16,), wbits=4), AccelConfig(inputs=64, layers=(16,), wbits=8)
    off = TrainRecipe(qat_epochs=0)
    assert cache_key(ds, a, off) == cache_key(ds, b, off)
    assert cache_key(ds, a, TrainRecipe()) != cache_key(ds, b, TrainRecipe())      # the default fine-tunes
    q = TrainRecipe(qat_epochs=1)
    assert cache_key(ds, a, q) != cache_key(ds, b, q)


def test_qat_weights_are_exact_on_chip_and_recover_accuracy():
    """digits 64-1x32 MP at 2-bit (ternary) weights: plain rounding of the float net (88.6%)
    against QAT (93.6%); after QAT the integer weights are the float weights times
    2**wfrac, exactly."""
    ds = load_dataset("digits")
    cfg = AccelConfig(inputs=64, layers=(32,), classes=10, wbits=2)
    base = TrainRecipe(epochs=10, min_steps=1000, theta=1.0, qat_epochs=0)
    net0, q0, meta0 = fit(ds, cfg, base, progress=False)
    net1, q1, meta1 = fit(ds, cfg, base.replace(qat_epochs=20), progress=False)
    assert meta1["train"]["qat_wbits"] == 2
    w = net1.layers[0].weight.detach().double().numpy()
    k = w * 2.0 ** q1.wfrac[0]
    assert np.array_equal(k, np.round(k)) and np.abs(k).max() <= 1
    qm = quantize(net1, q1)
    assert np.array_equal(qm.weights[0], k.astype(np.int64))
    acc0, acc1 = meta0["integer"]["accuracy_full"], meta1["integer"]["accuracy_full"]
    assert acc1 > acc0 + 0.02, (acc0, acc1)
