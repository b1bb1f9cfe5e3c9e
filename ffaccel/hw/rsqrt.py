"""Reciprocal square root: leading-one detect + table + exponent (bit-exact with
``ffaccel.model.intops.rsqrt``)."""

from amaranth.hdl import Array, Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..fixedpoint import rsqrt_table, rsqrt_widths


class RSqrt(wiring.Component):
    """Combinational: ``g`` (unsigned ``gbits``) -> ``m`` (table entry, ``frac`` bits) and
    ``s = floor(log2 g) >> 1``; ``g == 0`` -> ``m = 0, s = 0``."""

    def __init__(self, gbits: int, frac: int, index_bits: int):
        if not isinstance(gbits, int) or gbits < 1:
            raise ValueError(f"RSqrt: gbits={gbits!r} must be an integer >= 1")
        if not 2 <= index_bits <= 10 or not 1 <= frac <= 30:
            raise ValueError(f"RSqrt: index_bits={index_bits} (2..10) / frac={frac} (1..30) out of range")
        self.gbits, self.frac, self.index_bits = gbits, frac, index_bits
        self.table = rsqrt_table(frac, index_bits)
        self.mbits, self.sbits = rsqrt_widths(gbits, frac, index_bits)
        super().__init__({
            "g": In(unsigned(gbits)),
            "m": Out(unsigned(self.mbits)),
            "s": Out(unsigned(self.sbits)),
        })

    def elaborate(self, platform):
        m = Module()
        gb, t = self.gbits, self.index_bits - 1
        e = Signal(range(max(gb, 2)))                 # floor(log2 g): priority encoder
        for i in range(gb):
            with m.If(self.g[i]):
                m.d.comb += e.eq(i)
        # shift the leading one to the MSB, then take the t bits below it
        lz = Signal(range(max(gb, 2)))
        m.d.comb += lz.eq(gb - 1 - e)
        norm = Signal(unsigned(2 * gb + t))
        m.d.comb += norm.eq((self.g << t) << lz)
        frac_idx = Signal(unsigned(max(t, 1)))
        if t:
            m.d.comb += frac_idx.eq(norm[gb - 1: gb - 1 + t])
        idx = Signal(unsigned(self.index_bits))
        m.d.comb += idx.eq(Mux(e[0], 1 << t, 0) | (frac_idx if t else 0))
        table = Array(Const(v, self.m.shape()) for v in self.table)
        with m.If(self.g != 0):
            m.d.comb += [self.m.eq(table[idx]), self.s.eq(e >> 1)]
        return m
