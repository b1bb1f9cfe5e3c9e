"""Weight and bias memory images of a quantised model, in the layout of the schedule's
memory map (:class:`ffaccel.schedule.MemoryMap`)."""

from __future__ import annotations

import numpy as np

from ..config import COS_RBITS
from ..fixedpoint import cos_reference
from ..model.golden import QuantModel
from ..schedule import schedule

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def tile_weights(w: np.ndarray, cols: int) -> np.ndarray:
    """W (n_out, n_in) -> (tiles, n_in, cols), zero padded: [t, k, c] = W[t*cols + c, k]."""
    n_out, n_in = w.shape
    tiles = -(-n_out // cols)
    pad = np.zeros((tiles * cols, n_in), dtype=np.int64)
    pad[:n_out] = w
    return pad.reshape(tiles, cols, n_in).transpose(0, 2, 1)


def _tile_words(w: np.ndarray, cols: int) -> np.ndarray:
    """W (n_out, n_in) -> (tiles * n_in, cols): word t*n_in + k holds W[t*cols + c, k]."""
    return tile_weights(w, cols).reshape(-1, cols)


def _tile_bias(b: np.ndarray, cols: int, lanes: int = 1, fill: int = 0) -> np.ndarray:
    """Biases (n,) or (n, lanes) -> (tiles, cols * lanes): lane ``c * lanes + k`` of word
    t holds b[t*cols + c, k] (BSFF's tied units; a 1-D bias fills lane k = 0); the
    columns beyond the layer hold ``fill``."""
    b = np.asarray(b, dtype=np.int64)
    b2 = b[:, None] if b.ndim == 1 else b
    tiles = -(-len(b2) // cols)
    pad = np.full((tiles * cols, lanes), fill, dtype=np.int64)
    pad[: len(b2), : b2.shape[1]] = b2
    return pad.reshape(tiles, cols * lanes)


def image_lanes(qm: QuantModel) -> tuple[np.ndarray, np.ndarray]:
    """(weight lanes (words, cols), bias lanes (words, cols x bias_lanes)) as signed integers."""
    cfg = qm.cfg
    sched = schedule(cfg)
    wl = [_tile_words(sched.stream_weights(l, w), cfg.cols) for l, w in enumerate(qm.weights)]
    # BSFF: a column beyond the layer has z = 0 (zero weights), where a unit would fire
    # half the time: its biases are the lane's most negative value, so it never fires
    # (the sigmoid table's first entry is 0) and its output stays 0, as a ReLU column's
    fill = -(1 << (schedule(cfg).memory.bias_lane_bits - 1)) if cfg.bsff else 0
    if cfg.cos_engine:
        # the cosine engine: each column's code of r_l after its bias (lane c*2 + 1)
        bl = [_tile_bias(np.stack([b, cos_reference(i, len(b), COS_RBITS)], axis=1), cfg.cols, cfg.bias_lanes)
              for i, b in enumerate(qm.biases)]
    else:
        bl = [_tile_bias(b, cfg.cols, cfg.bias_lanes, fill) for b in qm.biases]
    if cfg.mode == "op" and cfg.exit_head == "learned":      # LLS heads are generated on chip
        wl += [_tile_words(h, cfg.cols) for h in qm.heads]
        bl += [_tile_bias(hb, cfg.cols, cfg.bias_lanes) for hb in qm.head_biases]
    w, b = np.concatenate(wl), np.concatenate(bl)
    mm = schedule(cfg).memory
    assert len(w) == mm.weight_words and len(b) == mm.bias_words
    return w, b


def to_hex_lines(lanes: np.ndarray, bits: int) -> bytes:
    """$readmemh text: one word per line, lane 0 in the low bits, two's complement lanes,
    fixed width of ceil(cols*bits/4) hex digits. Vectorised (13.6 M weights in seconds)."""
    words, cols = lanes.shape
    total = cols * bits
    digits = -(-total // 4)
    u = lanes.astype(np.int64) & ((1 << bits) - 1)
    shifts = np.arange(bits, dtype=np.int64)
    out = np.empty((words, digits + 1), dtype=np.uint8)
    step = 65536
    for s in range(0, words, step):
        blk = u[s:s + step]
        bitv = ((blk[:, :, None] >> shifts) & 1).astype(np.uint8).reshape(len(blk), total)
        if digits * 4 != total:
            bitv = np.concatenate([bitv, np.zeros((len(blk), digits * 4 - total), np.uint8)], axis=1)
        nib = bitv.reshape(len(blk), digits, 4) @ np.array([1, 2, 4, 8], dtype=np.uint8)
        out[s:s + step, :digits] = _HEX[nib[:, ::-1]]
    out[:, digits] = ord("\n")
    return out.tobytes()


def build_images(qm: QuantModel) -> tuple[list[int], list[int]]:
    """(weight words, bias words) as Python integers (for the Amaranth ROMs of small tests)."""
    mm = schedule(qm.cfg).memory
    w, b = image_lanes(qm)
    ww = [int(line, 16) for line in to_hex_lines(w, qm.cfg.wbits).split()]
    bw = [int(line, 16) for line in to_hex_lines(b, mm.bias_lane_bits).split()]
    return ww, bw
