"""Quantisation of a float FF network to the integer pipeline (docs/architecture.md).

Weights: per-layer power-of-two scale ``2**-wfrac``, of the scales from the one that keeps
max|W| within wbits (signed) to four finer ones the one of least squared rounding and
clipping error (:func:`grid_frac`); ``wfrac`` may be negative (weights larger than the
integer range), down to ``-rsqrt_frac``. Activations: one format for the whole net (afrac fractional bits), chosen so the
99.99th percentile of calibration activations fits in abits. Biases at activation scale,
head biases at logit scale. Rounding is half up, so the result is the same everywhere.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..config import AccelConfig
from .embed import embed_labels, embed_neutral
from .exits import calibrate
from .ff import FFNet
from .golden import GoldenModel, QuantModel


def _round_half_up(a: np.ndarray) -> np.ndarray:
    # clipped before the cast: a finite 1e36 would wrap around int64 (and flip its sign);
    # every caller clips to its own, much narrower, range afterwards
    return np.clip(np.floor(a + 0.5), -(2.0 ** 62), 2.0 ** 62).astype(np.int64)


def _pow2_frac(max_abs: float, limit: int, lo: int = 0, hi: int = 32) -> int:
    """Largest f in lo..hi with max_abs * 2**f <= limit."""
    if max_abs <= 0:
        return hi
    return int(min(hi, max(lo, math.floor(math.log2(limit / max_abs)))))


#: Grids tried finer than the one that holds max|W| (the finer clip the largest weights).
FINER_GRIDS = 4


def grid_frac(w: np.ndarray, wbits: int, lo: int) -> int:
    """The weight fractional bits ``f >= lo`` of least squared error when ``w`` is rounded
    half up to ``k * 2**-f``, ``wmin <= k <= wmax``: among the largest f that holds max|w|
    and the four finer (ties: the coarser). Used by the quantiser and by QAT alike."""
    w = np.asarray(w, dtype=np.float64)
    wmax, wmin = (1 << (wbits - 1)) - 1, -(1 << (wbits - 1))
    top = float(np.abs(w).max()) if w.size else 0.0
    f0 = max(lo, _pow2_frac(top, wmax, lo, 32)) if top > 0 else 32
    best = None
    for f in range(f0, min(32, f0 + FINER_GRIDS) + 1):
        err = float(np.square(np.clip(np.floor(w * 2.0 ** f + 0.5), wmin, wmax) * 2.0 ** -f - w).sum())
        if best is None or err < best[0]:
            best = (err, f)
    return best[1]


#: BSFF: fractional bits of the pre-activation (the sigmoid table then has 256 entries,
#: 1/16 apart, where the probability moves by at most 1/64 between entries)
BSFF_AFRAC = 4

# Samples of the training split that choose the number formats (activation percentiles),
# and of the validation split that calibrate the exit thresholds where a run caps them.
CALIBRATION_SAMPLES = 2000


@torch.no_grad()
def choose_formats(net: FFNet, calib_codes: np.ndarray, calib_y: np.ndarray,
                   cfg: AccelConfig | None = None) -> AccelConfig:
    """Return ``cfg`` (default ``net.cfg``) with wfrac, hfrac, afrac set from the weights and
    calibration data, for the bit widths of ``cfg``."""
    cfg = net.cfg if cfg is None else cfg
    xin = embed_labels(calib_codes, calib_y, cfg) if cfg.mode == "mp" else embed_neutral(calib_codes, cfg)
    hs, ps = net.forward_blocks(torch.as_tensor(xin, dtype=torch.float32))
    # P's responses to hidden layers share the activation format (layer 1's: the image's)
    allh = torch.cat([h.flatten() for h in hs + [p for p in ps[1:] if p is not None]]).double().numpy()
    p = float(np.quantile(allh, 0.9999)) if allh.size else 0.0
    afrac = _pow2_frac(p, cfg.amax, 0, cfg.abits + 16)
    wfrac = tuple(grid_frac(l.weight.detach().double().numpy(), cfg.wbits, -cfg.rsqrt_frac) for l in net.layers)
    if cfg.bsff:
        afrac = BSFF_AFRAC          # the pre-activation's resolution: the sigmoid table's step
    afrac = min(afrac, cfg.rsqrt_frac + min(wfrac))  # keeps every shift rsqrt_frac + wfrac - afrac >= 0
    if cfg.exit_head != "learned":
        hfrac = ()                      # LLS heads: the config fixes their format
    else:
        hfrac = tuple(_pow2_frac(float(h.weight.abs().max()), cfg.wmax) for h in net.heads) or ()
    return cfg.replace(afrac=afrac, wfrac=wfrac, hfrac=hfrac, thresholds=())


def quantize(net: FFNet, cfg: AccelConfig) -> QuantModel:
    """Integer parameters of ``net`` in the formats of ``cfg`` (see :func:`choose_formats`)."""
    bmax = (1 << (cfg.bias_bits - 1)) - 1
    ws, bs, hs, hbs = [], [], [], []
    for l, wf in zip(net.layers, cfg.wfrac):
        w = l.weight.detach().double().numpy()
        ws.append(np.clip(_round_half_up(w * 2.0 ** wf), cfg.wmin, cfg.wmax))
        b = l.bias.detach().double().numpy()
        bs.append(np.clip(_round_half_up(b * 2.0 ** cfg.afrac), -bmax - 1, bmax))
    if cfg.mode == "op" and cfg.exit_head != "learned":
        # LLS heads are the basis of the target formats (not the float net's rounded copy,
        # which is tied to the width it was built at); nothing was trained
        from .lls import lls_heads
        hs, hbs = lls_heads(cfg)
    elif cfg.mode == "op":
        for h, hf in zip(net.heads, cfg.hfrac):
            hs.append(np.clip(_round_half_up(h.weight.detach().double().numpy() * 2.0 ** hf), cfg.wmin, cfg.wmax))
            # not clipped: a head bias the engine's bias lane cannot hold is refused by
            # QuantModel (one line), like any model that does not fit the hardware
            hbs.append(_round_half_up(h.bias.detach().double().numpy() * 2.0 ** cfg.lfrac).astype(np.int64))
    return QuantModel(cfg, ws, bs, hs, hbs, physical=net.physical)


def integer_thresholds(thresholds: list[float], cfg: AccelConfig) -> tuple[int, ...]:
    """Float thresholds on integer scores -> integer thresholds with the same decisions
    (score >= T  <=>  score >= ceil(T)), clamped to the score register range."""
    tmax = (1 << (cfg.score_bits - 1)) - 1
    out = []
    for t in thresholds:
        if math.isinf(t) or math.isnan(t):
            out.append(tmax)
        else:
            out.append(int(min(tmax, max(-tmax - 1, math.ceil(t)))))
    return tuple(out)


def calibrate_integer(qm: QuantModel, val_codes: np.ndarray, y_val: np.ndarray,
                      k: float | None = None) -> QuantModel:
    """Integer exit thresholds from the golden model's validation scores (LightFF rule)."""
    cfg = qm.cfg
    k = cfg.exit_k if k is None else k
    res = GoldenModel(qm).run(val_codes)
    th = calibrate(res.layer_scores, y_val, cfg.exit_policy, k, cfg.classes)
    new = cfg.replace(thresholds=integer_thresholds(th, cfg) if th else (), exit_k=k)
    return QuantModel(new, qm.weights, qm.biases, qm.heads, qm.head_biases, physical=qm.physical)
