"""Quantisation-aware fine-tuning of the FF layers (recipe ``qat_epochs``).

After training, each layer's weights get the power-of-two grid the integer quantiser would
give them at the config's ``wbits`` (``ffaccel.model.quant.grid_frac``: least squared
rounding and clipping error). The layers then train ``qat_epochs`` more
passes with their own loss (FF, or LLS for LLS heads) at the step ``qat_lr`` (the
recipe's decay applies) while the forward pass rounds the weights to that grid, the gradient passing straight through the rounding (the
straight-through estimator). At the end the weights are stored on the grid, symmetric
(``|q| <= 2**(wbits-1) - 1``), so the integer quantiser (``ffaccel.model.quant``) reproduces
them exactly: it picks the same or a finer power-of-two scale, which holds every grid value.
Activations are not rounded in training (the hardware's abits stay as chosen by data).
"""

from __future__ import annotations

import torch

from .ff import FFNet, TrainLog, round_to_grid, train_ff, train_lls
from .quant import grid_frac
from .recipe import TrainRecipe


def fine_tune(net: FFNet, x_codes, y, recipe: TrainRecipe, wbits: int, *, progress: bool = True,
              image_shape: tuple[int, int] | None = None) -> TrainLog:
    """``recipe.qat_epochs`` passes of the layers' own training with weights rounded to
    ``wbits`` in the forward pass; leaves the weights on their grids."""
    wmax = (1 << (wbits - 1)) - 1
    lo = -net.cfg.rsqrt_frac                 # the quantiser's range (ffaccel.model.quant)
    net.wgrid = [(grid_frac(l.weight.detach().double().numpy(), wbits, lo), wmax) for l in net.layers]
    # (cosine-goodness layers train at cos_lr: scaled by the same qat_lr / lr)
    r = recipe.replace(epochs=recipe.qat_epochs, min_steps=0, lr=recipe.qat_lr, seed=(recipe.seed + 1) % 2 ** 32,
                       cos_lr=min(recipe.cos_lr * recipe.qat_lr / recipe.lr, 9.99))
    try:
        train = train_ff if net.cfg.exit_head == "learned" else train_lls
        log = train(net, x_codes, y, r, progress=progress, image_shape=image_shape)
    finally:
        grids, net.wgrid = net.wgrid, None
    with torch.no_grad():
        for l, (f, m) in zip(net.layers, grids):
            l.weight.copy_(round_to_grid(l.weight, f, m))
    return log
