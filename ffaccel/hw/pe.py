"""Processing element: one output-stationary multiply-accumulate cell."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .dsp import RegisteredProduct, select_add
from .interfaces import REPLICA


class PE(wiring.Component):
    """A two-stage multiply-accumulate: cycle t registers ``prod <= x * w`` with the
    controls (``valid & en``, ``first``, ``last``, ``shift``); cycle t+1 forms
    ``sum = (first ? 0 : acc) + prod`` and, for a valid enabled operand, ``acc <= sum``
    and on ``last`` also ``result <= sum`` (the shadow register the drain reads while the
    next tile accumulates). Otherwise, on a ``shift`` of cycle t: ``result <= below``
    (the shadow register of the PE below: the column's shadow registers shift up one row,
    whatever ``en``). ``x`` unsigned ``abits``, ``w`` signed ``wbits``. A disabled PE
    (``en`` low) holds its accumulator: no toggles, no energy (row gating); its operand is
    isolated to 0 by the issue stage, so its product register holds 0.

    The product register splits the multiplier (a DSP block, or LUTs where the FPGA has
    too few) from the accumulator's carry chain: :meth:`pipeline` cycles, the schedule's
    ``Latencies.product``. Every PE registers its own copy of the controls (``REPLICA``:
    one register each would fan out to every accumulator bit of the array, thousands of
    loads on a 10x16 array); ``shift`` acts ``SHIFT`` cycles after it is raised, the
    schedule's ``Latencies.shift``.

    ``operand_copies``: the PE first registers its own copies of the
    multicast operands (and of the controls that travel with them), so the product is
    formed from registers beside the multiplier; the operand nets, one per row and column,
    end at these registers (``AccelConfig.fpga_regs``): :meth:`pipeline` is then 2. The
    copies and the product register are a :class:`RegisteredProduct`, which an FPGA
    target builds as one multiplier block with its own registers (``block``)."""

    SHIFT = 1

    @staticmethod
    def pipeline(operand_copies: bool) -> int:
        """Cycles from the operands at the PE's inputs to its product register."""
        return 2 if operand_copies else 1

    def __init__(self, abits: int, wbits: int, accbits: int, operand_copies: bool = False,
                 block: str | None = None, multiplier_free: bool = False):
        for name, v, lo in (("abits", abits, 1), ("wbits", wbits, 2), ("accbits", accbits, 2)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"PE: {name}={v!r} must be an integer >= {lo}")
        if accbits < abits + wbits:
            raise ValueError(f"PE: accbits={accbits} cannot hold one product ({abits}+{wbits} bits)")
        if not isinstance(operand_copies, bool):
            raise ValueError(f"PE: operand_copies={operand_copies!r} must be true or false")
        self.abits, self.wbits, self.accbits = abits, wbits, accbits
        if block is not None and not operand_copies:
            raise ValueError(f"PE: block={block!r} needs operand_copies (the block holds the operand registers)")
        self.operand_copies = operand_copies
        self.block = block
        if not isinstance(multiplier_free, bool):
            raise ValueError(f"PE: multiplier_free={multiplier_free!r} must be true or false")
        if multiplier_free and abits > 3:
            raise ValueError(f"PE: multiplier_free needs abits <= 3 (got {abits}): one adder per input bit")
        if multiplier_free and block is not None:
            raise ValueError("PE: a multiplier-free PE uses no multiplier block (block must be None)")
        self.multiplier_free = multiplier_free
        super().__init__({
            "x": In(unsigned(abits)), "w": In(signed(wbits)),
            "valid": In(1), "en": In(1), "first": In(1), "last": In(1),
            "shift": In(1), "below": In(signed(accbits)),
            "acc": Out(signed(accbits)), "result": Out(signed(accbits)),
        })

    def elaborate(self, platform):
        m = Module()
        ok, first_in, last_in = self.valid & self.en, self.first, self.last
        # unsigned abits x signed wbits fits signed abits + wbits
        prod = Signal(signed(self.abits + self.wbits))
        if self.operand_copies:
            # this PE's own copies of the operands (in the product unit) and of the
            # controls (``REPLICA``: yosys would merge a row's identical registers)
            mul = m.submodules.mul = RegisteredProduct(self.x.shape(), self.w.shape(), prod.shape(),
                                                       block=self.block, copies=True, select=self.multiplier_free)
            m.d.comb += [mul.a.eq(self.x), mul.b.eq(self.w), prod.eq(mul.p)]
            okq, firstq, lastq = (Signal(name=n, attrs=REPLICA) for n in ("go_q", "first_q", "last_q"))
            m.d.sync += [okq.eq(ok), firstq.eq(first_in), lastq.eq(last_in)]
            ok, first_in, last_in = okq, firstq, lastq
        else:
            # BSFF: the weight where the input is 1 (1-bit inputs: a choice, no adder; a
            # count of k tied units: the weight shifted by each set bit, added)
            m.d.sync += prod.eq(select_add(self.x, self.w) if self.multiplier_free else self.x * self.w)
        go, first, last, shift = (Signal(name=n, attrs=REPLICA) for n in ("go", "first", "last", "shift_q"))
        m.d.sync += [go.eq(ok), first.eq(first_in), last.eq(last_in), shift.eq(self.shift)]
        s = Signal(signed(self.accbits))
        m.d.comb += s.eq(Mux(first, 0, self.acc) + prod)
        with m.If(go):
            m.d.sync += self.acc.eq(s)
        with m.If(go & last):
            m.d.sync += self.result.eq(s)
        with m.Elif(shift):
            m.d.sync += self.result.eq(self.below)
        return m
