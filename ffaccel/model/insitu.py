"""In-situ retraining while a physical layer drifts (behind ``scripts/phyff_drift.py``).

A physical system ages: its transform drifts (``RandomPhysical``'s random walk). A network
trained against it at time 0 then sees responses it was not trained on. Because FF's
training is model-free, the digital layers can be retrained *in situ*: a few layer-local
optimiser steps on fresh samples, through the drifted system itself, with no model of it.

``drift_run`` follows two copies of a trained network through the same drift, step by
step: one frozen, one retrained after each step; both drive physical layers built from the
same spec, which drift identically (their random walks are seeded alike). After every step
both are scored on the same test samples, float and integer (golden model, the integer
formats fixed at training).
"""

from __future__ import annotations

import copy
import time

import numpy as np

from .embed import input_codes
from .exits import cumulative
from .ff import train_ff
from .golden import GoldenModel
from ..physical_spec import parse_spec, with_params
from .physical import build_stack
from .quant import quantize
from .recipe import TrainRecipe


def retrain_in_situ(net, x_codes: np.ndarray, y: np.ndarray, recipe: TrainRecipe, steps: int,
                    rng: np.random.Generator, image_shape: tuple[int, int] | None = None) -> float:
    """``steps`` optimiser steps of FF training of every layer (the recipe's loss, lr, batch
    and shift; no decay: the network is trained already) on fresh random training samples,
    through the physical layers as they are now. Returns seconds."""
    idx = rng.choice(len(x_codes), size=min(len(x_codes), steps * recipe.batch), replace=False)
    small = recipe.replace(epochs=1, min_steps=0, decay=False, limit=0, seed=int(rng.integers(2 ** 31)))
    return train_ff(net, x_codes[idx], y[idx], small, progress=False, image_shape=image_shape).seconds


def _accuracy(net, qcfg, codes: np.ndarray, y: np.ndarray) -> dict:
    """Float and integer accuracy at full depth and with the training's exit thresholds."""
    fl = cumulative(net.layer_scores(codes), qcfg.scored)
    res = GoldenModel(quantize(net, qcfg)).run(codes)
    return {"float_full": float((fl[:, -1].argmax(1) == y).mean()),
            "int_full": float((res.label_full == y).mean()),
            "int_exit": float((res.label == y).mean()),
            "int_mean_exit_layer": float(res.exit_layer.mean())}


def drift_run(net, qcfg, ds, recipe: TrainRecipe, *, drift: float, steps: int, step_size: int,
              retrain_steps: int, samples: int, seed: int = 0, progress=None) -> dict:
    """The drift study: accuracy of a frozen and of an in-situ retrained copy of ``net``
    after each of ``steps`` time steps of ``step_size`` drift steps each, the emulated
    physical layers drifting by ``drift`` per step (the network was trained at time 0,
    where drift has not acted yet). ``samples`` test samples are scored;
    ``retrain_steps`` optimiser steps follow every time step."""
    if not qcfg.physical or parse_spec(qcfg.physical).kind != "random":
        raise ValueError("drift_run needs a network with emulated (random) physical layers")
    aging = with_params(qcfg.physical, drift=float(drift))
    xte = input_codes(ds.x_test, qcfg)[:samples]
    yte = np.asarray(ds.y_test[:samples])
    xtr = input_codes(ds.x_train, qcfg)
    ytr = np.asarray(ds.y_train)
    frozen, live = copy.deepcopy(net), copy.deepcopy(net)       # the caller's network stays as it is
    for n in (frozen, live):                   # each its own copy of the system, both at time 0
        n.physical = build_stack(aging, qcfg.inputs, qcfg.layers)
    rng = np.random.default_rng(seed)
    rows = []
    t0 = time.perf_counter()
    for t in range(steps + 1):
        if t:
            frozen.physical.advance(step_size)
            live.physical.advance(step_size)
            retrain_in_situ(live, xtr, ytr, recipe, retrain_steps, rng, ds.image_shape)
        row = {"step": t, "drift_steps": t * step_size,
               "frozen": _accuracy(frozen, qcfg, xte, yte), "retrained": _accuracy(live, qcfg, xte, yte)}
        rows.append(row)
        if progress:
            progress(row)
    for n in (frozen, live):
        n.physical.close()
    return {"rows": rows, "seconds": round(time.perf_counter() - t0, 1)}
