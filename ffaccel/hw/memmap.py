"""Weight and bias memory maps, derived from the config in this one place (used by the
engine's address generators, the image writer of ``ffaccel.gen`` and the cycle model)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import AccelConfig, clog2


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class MemoryMap:
    """Weight word = ``cols`` lanes of ``wbits``: lane c of word ``wbase[l] + t*n_in + k``
    is ``W_l[t*cols + c, k]`` (0 beyond the layer). OP head l follows at ``hbase[l]`` with
    ``n_in = layers[l]`` and ``ceil(classes/cols)`` tiles. Bias word = ``cols`` lanes of
    ``bias_lane_bits``: ``bbase[l] + t`` (layers), ``hbbase[l] + t`` (heads)."""

    tiles: tuple[int, ...]
    head_tiles: int
    wbase: tuple[int, ...]
    hbase: tuple[int, ...]
    bbase: tuple[int, ...]
    hbbase: tuple[int, ...]
    weight_words: int
    bias_words: int
    bias_lane_bits: int

    @property
    def waddr_bits(self) -> int:
        return max(1, clog2(self.weight_words))

    @property
    def baddr_bits(self) -> int:
        return max(1, clog2(self.bias_words))


def memory_map(cfg: AccelConfig) -> MemoryMap:
    tiles = tuple(ceil_div(n, cfg.cols) for n in cfg.layers)
    wbase, b, acc = [], [], 0
    for t, n_in in zip(tiles, cfg.fan_in):
        wbase.append(acc)
        acc += t * n_in
    bacc = 0
    for t in tiles:
        b.append(bacc)
        bacc += t
    ht = ceil_div(cfg.classes, cfg.cols)
    hbase, hb = [], []
    if cfg.mode == "op":
        for n in cfg.layers:
            hbase.append(acc)
            acc += ht * n
            hb.append(bacc)
            bacc += ht
    lane = cfg.bias_bits if cfg.mode == "mp" else max(cfg.bias_bits, cfg.score_bits)
    return MemoryMap(tiles, ht if cfg.mode == "op" else 0, tuple(wbase), tuple(hbase), tuple(b),
                     tuple(hb), acc, bacc, lane)
