"""rows x cols output-stationary MAC array with multicast operands."""

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .dsp import mult_block
from .pe import PE


def pe_name(r: int, c: int) -> str:
    """The submodule name of PE (r, c) (the FPGA flow selects PEs by it)."""
    return f"pe_{r}_{c}"


class MacArray(wiring.Component):
    """``x[r]`` is multicast along row r, ``w[c]`` down column c; PE (r, c) accumulates
    ``x[r] * w[c]``. ``row_en[r]`` gates a row. ``result[r][c]`` holds the last finished
    tile's sums (all PEs finish a tile in the same cycle: no skew); ``shift`` moves every
    column's shadow registers up one row the cycle after (row r takes row r+1's, the bottom
    row holds; ``PE.SHIFT``), so
    the drain reads every row at ``result[0]``: no row multiplexer, whose select fanned out
    to every sum bit (the engine's critical path on an FPGA, docs/results.md).

    Rows from ``live_rows`` on (MP rows beyond the classes: ``Schedule.live_rows``) never
    get an operand: they have no PEs, their ``result`` is 0, as the PEs' would stay.
    ``operand_copies``: each PE registers its own copy of ``x[r]`` and ``w[c]`` first
    (:class:`PE`, :meth:`PE.pipeline`)."""

    def __init__(self, rows: int, cols: int, abits: int, wbits: int, accbits: int, live_rows: int | None = None,
                 operand_copies: bool = False, multiplier_free: bool = False):
        for name, v in (("rows", rows), ("cols", cols)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"MacArray: {name}={v!r} must be an integer >= 1")
        live_rows = rows if live_rows is None else live_rows
        if not isinstance(live_rows, int) or not 1 <= live_rows <= rows:
            raise ValueError(f"MacArray: live_rows={live_rows!r} must be an integer in 1..{rows}")
        self.rows, self.cols, self.live_rows = rows, cols, live_rows
        self.abits, self.wbits, self.accbits = abits, wbits, accbits
        self.operand_copies = operand_copies
        self.multiplier_free = multiplier_free
        super().__init__({
            "x": In(unsigned(abits)).array(rows), "w": In(signed(wbits)).array(cols),
            "row_en": In(rows), "valid": In(1), "first": In(1), "last": In(1), "shift": In(1),
            "result": Out(signed(accbits)).array(rows, cols),
        })

    def elaborate(self, platform):
        m = Module()
        pes = {}
        for r in range(self.live_rows):
            for c in range(self.cols):
                # an FPGA target builds each PE's registered product as a multiplier
                # block, but those it moves to logic (more PEs than blocks)
                block = mult_block(platform, (r, c) in getattr(platform, "soft_pes", ())) \
                    if self.operand_copies and not self.multiplier_free else None
                pe = pes[r, c] = PE(self.abits, self.wbits, self.accbits, self.operand_copies, block,
                                    self.multiplier_free)
                m.submodules[pe_name(r, c)] = pe
                m.d.comb += [pe.x.eq(self.x[r]), pe.w.eq(self.w[c]), pe.valid.eq(self.valid),
                             pe.en.eq(self.row_en[r]), pe.first.eq(self.first), pe.last.eq(self.last),
                             self.result[r][c].eq(pe.result)]
        for r in range(self.live_rows):             # the bottom row never shifts: it holds
            if r == self.rows - 1:
                break
            for c in range(self.cols):              # (below the live rows: 0)
                below = pes[r + 1, c].result if r + 1 < self.live_rows else 0
                m.d.comb += [pes[r, c].shift.eq(self.shift), pes[r, c].below.eq(below)]
        return m
