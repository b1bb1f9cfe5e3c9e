"""Weight and bias memory images of a quantised model, in the layout of ``memmap``."""

from __future__ import annotations

import numpy as np

from ..model.golden import QuantModel
from .memmap import memory_map


def _pack(lanes: np.ndarray, bits: int) -> list[int]:
    """(words, cols) signed ints -> packed words, lane 0 in the low bits, two's complement."""
    mask = (1 << bits) - 1
    u = lanes.astype(object) & mask
    out = []
    for row in u:
        v = 0
        for c in reversed(range(len(row))):
            v = (v << bits) | int(row[c])
        out.append(v)
    return out


def _tile_words(w: np.ndarray, cols: int) -> np.ndarray:
    """W (n_out, n_in) -> (tiles * n_in, cols): word t*n_in + k holds W[t*cols + c, k]."""
    n_out, n_in = w.shape
    tiles = -(-n_out // cols)
    pad = np.zeros((tiles * cols, n_in), dtype=np.int64)
    pad[:n_out] = w
    return pad.reshape(tiles, cols, n_in).transpose(0, 2, 1).reshape(tiles * n_in, cols)


def _tile_bias(b: np.ndarray, cols: int) -> np.ndarray:
    tiles = -(-len(b) // cols)
    pad = np.zeros(tiles * cols, dtype=np.int64)
    pad[: len(b)] = b
    return pad.reshape(tiles, cols)


def build_images(qm: QuantModel) -> tuple[list[int], list[int]]:
    """(weight words, bias words) as integers of ``cols*wbits`` / ``cols*bias_lane_bits`` bits."""
    cfg = qm.cfg
    mm = memory_map(cfg)
    wl, bl = [], []
    for w, b in zip(qm.weights, qm.biases):
        wl.append(_tile_words(w, cfg.cols))
        bl.append(_tile_bias(b, cfg.cols))
    if cfg.mode == "op":
        for h, hb in zip(qm.heads, qm.head_biases):
            wl.append(_tile_words(h, cfg.cols))
            bl.append(_tile_bias(hb, cfg.cols))
    wwords = _pack(np.concatenate(wl), cfg.wbits)
    bwords = _pack(np.concatenate(bl), mm.bias_lane_bits)
    assert len(wwords) == mm.weight_words and len(bwords) == mm.bias_words
    return wwords, bwords
