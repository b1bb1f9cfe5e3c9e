"""Integer primitives of the datapath, shared by the golden model, the RTL unit tests and
the cycle simulator. Each is the exact statement of one hardware operation; see
docs/architecture.md ("Integer datapath").
"""

from __future__ import annotations

import numpy as np

from ..fixedpoint import bsff_hash, bsff_sigmoid_table, rsqrt_table

__all__ = ["bsff_fire", "cos_goodness", "rshr", "saturate", "rsqrt_table", "rsqrt", "argmax_first", "top2_margin"]


def rshr(v: np.ndarray, shift: np.ndarray | int) -> np.ndarray:
    """Round-half-up arithmetic right shift: floor((v + 2**(shift-1)) / 2**shift); shift 0 -> v.

    ``shift`` may be an array (per-element shift, e.g. per sample) and must be >= 0.
    """
    v = np.asarray(v, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(shift < 0):
        raise ValueError("rshr: negative shift")
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    return np.right_shift(v + half, shift)


def saturate(v: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.clip(v, lo, hi)


def rsqrt(g: np.ndarray, frac: int, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic reciprocal square root: (m, s) with 1/sqrt(g) ~= m * 2**-(frac + s).

    Leading-one detect e = floor(log2 g); s = e >> 1; the table index is the parity of e
    and the next index_bits-1 bits below the leading one. g == 0 gives (0, 0): the
    accumulator is then 0 as well, so the layer output is its bias.
    """
    g = np.asarray(g, dtype=np.int64)
    if np.any(g < 0):
        raise ValueError("rsqrt: negative goodness")
    table = np.asarray(rsqrt_table(frac, index_bits), dtype=np.int64)
    t = index_bits - 1
    safe = np.maximum(g, 1)
    e = _floor_log2(safe)
    # bits below the leading one, aligned to t bits (shift left when e < t)
    below = safe - np.left_shift(np.int64(1), e)
    frac_idx = np.where(e >= t, np.right_shift(below, np.maximum(e - t, 0)),
                        np.left_shift(below, np.maximum(t - e, 0)))
    idx = ((e & 1) << t) | frac_idx
    m = np.where(g > 0, table[idx], 0)
    s = np.where(g > 0, e >> 1, 0)
    return m.astype(np.int64), s.astype(np.int64)


def _floor_log2(x: np.ndarray) -> np.ndarray:
    """floor(log2(x)) for int64 x >= 1, exact (no float rounding near powers of two)."""
    x = np.asarray(x, dtype=np.int64)
    e = np.floor(np.log2(x.astype(np.float64))).astype(np.int64)
    # correct the float estimate by +-1 where it is off
    e = np.where(np.left_shift(np.int64(1), e) > x, e - 1, e)
    e = np.where(np.left_shift(np.int64(1), e + 1) <= x, e + 1, e)
    return e


def argmax_first(scores: np.ndarray) -> np.ndarray:
    """argmax over the last axis; ties go to the lowest index (the comparator's rule)."""
    return np.argmax(scores, axis=-1)


def top2_margin(scores: np.ndarray) -> np.ndarray:
    """top1 - top2 over the last axis (0 when the two best are equal)."""
    part = np.sort(scores, axis=-1)
    return part[..., -1] - part[..., -2]


def bsff_fire(cfg, z: np.ndarray, bias: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Binary stochastic units (``cfg.neuron == "bsff"``): ``z`` (..., n) the normalised
    pre-activations at 2**-afrac, ``bias`` (n, k) one per tied unit, ``key`` (...) the
    random source's first word per copy. Unit k of neuron j fires when byte k of
    ``bsff_hash(key, j)`` is below ``table[clamp(z_j + bias_jk)]``; returns the count."""
    from ..config import BSFF_PBITS, BSFF_ZRANGE_BITS

    table = np.asarray(bsff_sigmoid_table(cfg.afrac, BSFF_ZRANGE_BITS, BSFF_PBITS), dtype=np.int64)
    half = len(table) // 2
    n = z.shape[-1]
    u = bsff_hash(np.asarray(key)[..., None], np.arange(n, dtype=np.uint64)).astype(np.int64)
    count = np.zeros(z.shape, dtype=np.int64)
    for k in range(cfg.bsff_k):
        p = table[np.clip(z + bias[:, k], -half, half - 1) + half]
        count += ((u >> (BSFF_PBITS * k)) & ((1 << BSFF_PBITS) - 1)) < p
    return count


def cos_goodness(cfg, h: np.ndarray, g: np.ndarray, layer: int) -> np.ndarray:
    """Cosine goodness of layer outputs ``h`` (..., n) with goodness ``g = sum h^2`` (...):
    ``rshr(d * m * k_l, rsqrt_frac + s + COS_KFRAC - lfrac)`` with ``d = r_l . h`` (exact),
    ``(m, s) = rsqrt(g)`` (the unit the next layer's normalisation uses) and
    ``k_l = round(2**COS_KFRAC / ||r_l||)``: cos(h, r_l) at ``lfrac`` fractional bits. One
    rounding; ``AccelConfig`` proves ``d * m * k_l`` fits 63 bits."""
    from ..config import COS_KFRAC, COS_RBITS
    from ..fixedpoint import cos_reference, cos_scale

    n = h.shape[-1]
    r = cos_reference(layer, n, COS_RBITS)
    d = np.rint(h.astype(np.float64) @ r.astype(np.float64)).astype(np.int64)     # exact: < 2**53
    m, s = rsqrt(g, cfg.rsqrt_frac, cfg.rsqrt_index)
    return rshr(d * m * cos_scale(layer, n, COS_RBITS, COS_KFRAC), cfg.rsqrt_frac + s + COS_KFRAC - cfg.lfrac)
