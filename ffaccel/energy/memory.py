"""The weight memory of a design: where each layer's weights live and what a word read costs
(docs/architecture.md, "Weight memory model").

Placement: the weights of layer ``l`` (with its OP head, if stored) are one segment of
``words[l]`` weight words. With ``weight_mem = "dram"`` every segment is in DRAM. With
``"sram"`` the segments are placed on chip in layer order while they fit the on-chip
budget ``onchip_kib`` (0: no budget); a segment that does not fit is read from DRAM. Layer 1
goes first because every inference reads it, and early exit makes later layers rarer.

On-chip cost of one word read:

* ``sram_bank_kib = 0``: one monolithic SRAM sized to the on-chip weights (at least
  ``sram_kib``), at Horowitz's size-interpolated energy (the model before banking).
* ``sram_bank_kib = B``: ``ceil(bytes / B)`` banks of B KiB. A read costs one bank's access
  (Horowitz's energy at the bank's size) plus the wires from that bank to the memory's
  port: the word and its address travel on average three quarters of the side of the
  memory beyond the bank's own side (a square array with the port at the middle of one
  edge: half the side across, a quarter along), at the on-die wire energy per bit and mm.
  One bank has no such wires.

The bits that exist (whole banks) leak, and take area, at the per-bit figures of the
coefficient table.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import AccelConfig
from ..fixedpoint import ceil_div, clog2
from ..schedule import schedule
from .coeffs import Coeffs

#: Mean distance from a bank to the port, as a fraction of the memory's side beyond the
#: bank's own (half the side across plus a quarter along, port at the middle of an edge).
PORT_DISTANCE = 0.75


@dataclass(frozen=True)
class WeightMemory:
    words: tuple[int, ...]         # weight words per layer (its OP head included)
    word_bits: int
    onchip: tuple[bool, ...]       # per layer: on-chip SRAM (True) or DRAM
    bank_bytes: int                # 0: one monolithic memory
    banks: int                     # on-chip banks (1 when monolithic and any layer is on chip)
    sram_bytes: int                # on-chip bytes that exist (whole banks, or the monolithic size)
    e_bank_pj: float               # one bank's (or the monolith's) access of a word
    wire_mm: float                 # bank to port
    e_wire_pj: float
    e_dram_pj: float

    @property
    def e_sram_pj(self) -> float:
        return self.e_bank_pj + self.e_wire_pj

    @property
    def e_word_pj(self) -> tuple[float, ...]:
        """Energy of one weight-word read, per layer."""
        return tuple(self.e_sram_pj if on else self.e_dram_pj for on in self.onchip)

    @property
    def sram_bits(self) -> int:
        return 8 * self.sram_bytes

    def as_dict(self) -> dict:
        return {"words_per_layer": list(self.words), "word_bits": self.word_bits,
                "onchip_layers": [l + 1 for l, on in enumerate(self.onchip) if on],
                "dram_layers": [l + 1 for l, on in enumerate(self.onchip) if not on],
                "bank_kib": self.bank_bytes / 1024, "banks": self.banks, "sram_kib": self.sram_bytes / 1024,
                "e_bank_pj": self.e_bank_pj, "wire_mm": self.wire_mm, "e_wire_pj": self.e_wire_pj,
                "e_word_pj": list(self.e_word_pj)}


def layer_words(cfg: AccelConfig) -> tuple[int, ...]:
    """Weight words of each layer's segment: its tiles times its fan-in, and its stored OP
    head (the memory map's layout, ``Schedule.memory``)."""
    mm = schedule(cfg).memory
    out = []
    for l, n_in in enumerate(cfg.fan_in):
        w = mm.tiles[l] * n_in
        if mm.hbase:
            w += mm.head_tiles * cfg.layers[l]
        out.append(w)
    return tuple(out)


def weight_memory(cfg: AccelConfig, c: Coeffs) -> WeightMemory:
    words = layer_words(cfg)
    wb = cfg.weight_word_bits
    seg = [w * wb // 8 for w in words]
    budget = cfg.onchip_kib * 1024 if cfg.onchip_kib else None
    onchip, used = [], 0
    for b in seg:
        fits = cfg.weight_mem == "sram" and (budget is None or used + b <= budget)
        onchip.append(fits)
        used += b if fits else 0
    e_dram = c.dram_access_pj(wb)
    if not used:
        return WeightMemory(words, wb, tuple(onchip), cfg.sram_bank_kib * 1024, 0, 0, 0.0, 0.0, 0.0, e_dram)
    if cfg.sram_bank_kib == 0:
        size = max(cfg.sram_kib * 1024, used)
        return WeightMemory(words, wb, tuple(onchip), 0, 1, size, c.sram_access_pj(size, wb), 0.0, 0.0, e_dram)
    bank = cfg.sram_bank_kib * 1024
    banks = ceil_div(used, bank)
    side = c.sram_side_mm(8 * banks * bank)
    mm = PORT_DISTANCE * max(0.0, side - c.sram_side_mm(8 * bank)) if banks > 1 else 0.0
    addr = clog2(sum(w for w, on in zip(words, onchip) if on))
    return WeightMemory(words, wb, tuple(onchip), bank, banks, banks * bank, c.sram_access_pj(bank, wb), mm,
                        c.wire_pj(wb + addr, mm), e_dram)
