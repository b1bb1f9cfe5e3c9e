"""Reciprocal square root: leading-one detect + table + exponent (bit-exact with
``ffaccel.model.intops.rsqrt``), in two pipeline stages."""

from amaranth.hdl import Array, Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..fixedpoint import rsqrt_table, rsqrt_widths


class RSqrt(wiring.Component):
    """``g`` (unsigned ``gbits``) in cycle t -> ``m`` (table entry, ``frac`` bits) and
    ``s = floor(log2 g) >> 1`` in cycle t + ``LATENCY``; ``g == 0`` -> ``m = 0, s = 0``.
    Stage 1 registers the leading one's position (a priority encoder over ``gbits``);
    stage 2 the table index (the bits below the leading one, shifted to the top) and the
    exponent; the table is read from stage 2's register. One ``g`` may enter per cycle."""

    LATENCY = 2

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
        # stage 1: floor(log2 g), a priority encoder
        e_c = Signal(range(max(gb, 2)))
        for i in range(gb):
            with m.If(self.g[i]):
                m.d.comb += e_c.eq(i)
        e, g1 = Signal.like(e_c), Signal.like(self.g)
        m.d.sync += [e.eq(e_c), g1.eq(self.g)]
        # stage 2: shift the leading one to the MSB, take the t bits below it
        lz = Signal(range(max(gb, 2)))
        m.d.comb += lz.eq(gb - 1 - e)
        norm = Signal(unsigned(2 * gb + t))
        m.d.comb += norm.eq((g1 << t) << lz)
        idx_c = Signal(unsigned(self.index_bits))
        m.d.comb += idx_c.eq(Mux(e[0], 1 << t, 0) | (norm[gb - 1: gb - 1 + t] if t else 0))
        idx, s2, nz = Signal.like(idx_c), Signal(unsigned(self.sbits)), Signal()
        m.d.sync += [idx.eq(idx_c), s2.eq(e >> 1), nz.eq(g1 != 0)]
        table = Array(Const(v, self.m.shape()) for v in self.table)
        with m.If(nz):
            m.d.comb += [self.m.eq(table[idx]), self.s.eq(s2)]
        return m
