"""Processing element: one output-stationary multiply-accumulate cell."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class PE(wiring.Component):
    """``sum = (first ? 0 : acc) + x * w``; when ``valid & en``: ``acc <= sum``, and on
    ``last`` also ``result <= sum`` (the shadow register the drain reads while the next
    tile accumulates); otherwise on ``shift``: ``result <= below`` (the shadow register of
    the PE below: the column's shadow registers shift up one row, whatever ``en``).
    ``x`` unsigned ``abits``, ``w`` signed ``wbits``. A disabled PE (``en`` low) holds its
    accumulator: no toggles, no energy (row gating)."""

    def __init__(self, abits: int, wbits: int, accbits: int):
        for name, v, lo in (("abits", abits, 1), ("wbits", wbits, 2), ("accbits", accbits, 2)):
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"PE: {name}={v!r} must be an integer >= {lo}")
        if accbits < abits + wbits:
            raise ValueError(f"PE: accbits={accbits} cannot hold one product ({abits}+{wbits} bits)")
        self.abits, self.wbits, self.accbits = abits, wbits, accbits
        super().__init__({
            "x": In(unsigned(abits)), "w": In(signed(wbits)),
            "valid": In(1), "en": In(1), "first": In(1), "last": In(1),
            "shift": In(1), "below": In(signed(accbits)),
            "acc": Out(signed(accbits)), "result": Out(signed(accbits)),
        })

    def elaborate(self, platform):
        m = Module()
        s = Signal(signed(self.accbits))
        m.d.comb += s.eq(Mux(self.first, 0, self.acc) + self.x * self.w)
        with m.If(self.valid & self.en):
            m.d.sync += self.acc.eq(s)
        with m.If(self.valid & self.en & self.last):
            m.d.sync += self.result.eq(s)
        with m.Elif(self.shift):
            m.d.sync += self.result.eq(self.below)
        return m
