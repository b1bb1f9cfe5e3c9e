"""A registered multiplier: both operands registered, their product registered (two
cycles), built from fabric registers and a ``*`` or, on an FPGA target that asks for it,
as one multiplier block whose own input and output registers hold them."""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, ResetSignal, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .interfaces import REPLICA

#: multiplier blocks this unit can instantiate, and the widest signed operand each takes
BLOCKS = {"MULT18X18D": 18}


class FPGATarget:
    """What an FPGA flow passes to the engine's elaboration (Amaranth's ``platform``
    argument): the multiplier block that registered products instantiate
    (``mult_block``, one of :data:`BLOCKS`, or None for fabric registers and a ``*``), and
    the PEs, as ``(row, col)``, whose products synthesis builds in logic instead
    (``soft_pes``: more products than the device has blocks)."""

    def __init__(self, mult_block: str | None = None, soft_pes=()):
        if mult_block is not None and mult_block not in BLOCKS:
            raise ValueError(f"FPGATarget: mult_block={mult_block!r} must be one of {sorted(BLOCKS)} or None")
        self.mult_block = mult_block
        self.soft_pes = frozenset(soft_pes)


#: simulation models of the blocks, for verifying an engine elaborated for an FPGA target
#: (yosys ships them as black boxes). Only what :class:`RegisteredProduct` uses: the A, B
#: and output registers each "NONE" or "CLK0" with CE0 and RST0 (synchronous reset to 0,
#: or asynchronous with RESETMODE "ASYNC"), operand signs from the SIGNEDA/SIGNEDB pins;
#: any other use (the pipeline register, the shift inputs, another clock) stops the
#: simulation instead of being modelled wrongly.
SIM_MODELS = {"MULT18X18D": """// ffaccel: simulation model of the ECP5 MULT18X18D, the subset the engine instantiates.
module MULT18X18D (
    input A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
    input B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
    input C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3,
    output P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24,
    output P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12,
    output P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter RESETMODE = "SYNC";
    parameter GSR = "ENABLED";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter CAS_MATCH_REG = "FALSE";

    wire [17:0] a_in = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b_in = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    reg [17:0] a_q = 18'd0, b_q = 18'd0;
    reg [35:0] p_q = 36'd0;
    wire [17:0] a = (REG_INPUTA_CLK == "NONE") ? a_in : a_q;
    wire [17:0] b = (REG_INPUTB_CLK == "NONE") ? b_in : b_q;
    wire signed [18:0] a_ext = {SIGNEDA & a[17], a};
    wire signed [18:0] b_ext = {SIGNEDB & b[17], b};
    wire signed [37:0] prod = a_ext * b_ext;
    wire [35:0] p = (REG_OUTPUT_CLK == "NONE") ? prod[35:0] : p_q;
    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24,
            P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12,
            P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = p;

    wire async_rst = (RESETMODE == "ASYNC") & RST0;
    always @(posedge CLK0 or posedge async_rst) begin
        if (RST0) begin
            a_q <= 18'd0; b_q <= 18'd0; p_q <= 36'd0;
        end else if (CE0) begin
            a_q <= a_in; b_q <= b_in; p_q <= prod[35:0];
        end
    end

    initial begin
        if ((REG_INPUTA_CLK != "NONE" && REG_INPUTA_CLK != "CLK0") ||
            (REG_INPUTB_CLK != "NONE" && REG_INPUTB_CLK != "CLK0") ||
            (REG_OUTPUT_CLK != "NONE" && REG_OUTPUT_CLK != "CLK0") ||
            REG_INPUTA_CE != "CE0" || REG_INPUTB_CE != "CE0" || REG_OUTPUT_CE != "CE0" ||
            REG_INPUTA_RST != "RST0" || REG_INPUTB_RST != "RST0" || REG_OUTPUT_RST != "RST0" ||
            REG_INPUTC_CLK != "NONE" || REG_PIPELINE_CLK != "NONE" || MULT_BYPASS != "DISABLED") begin
            $display("MULT18X18D model: configuration not modelled in %m");
            $finish;
        end
    end
    always @(posedge CLK0) begin
        if (SOURCEA !== 1'b0 || SOURCEB !== 1'b0) begin
            $display("MULT18X18D model: SOURCEA/SOURCEB (the shift inputs) are not modelled in %m");
            $finish;
        end
    end
endmodule
"""}


def mult_block(platform, soft: bool = False) -> str | None:
    """The multiplier block a registered product instantiates on ``platform`` (None:
    simulation, or an ordinary elaboration, or a product the target builds in logic)."""
    return None if soft else getattr(platform, "mult_block", None)


def _signed_width(shape: Shape) -> int:
    """Bits of the product's operand as a signed number (an unsigned one gains a 0 sign)."""
    return shape.width + (0 if shape.signed else 1)


def select_add(x, w):
    """``x * w`` for a few-bit unsigned ``x`` without a multiplier: ``w << i`` where bit i
    of ``x`` is 1, added (one bit: a choice between ``w`` and 0). BSFF's PE product."""
    from amaranth.hdl import Mux
    terms = [Mux(x[i], w << i, 0) for i in range(len(x))]
    return sum(terms[1:], terms[0])


class RegisteredProduct(wiring.Component):
    """``p`` = ``a * b`` of the operands two cycles earlier: cycle t registers ``a`` and
    ``b``, cycle t+1 registers their product (truncated or extended to ``p``'s shape, as an
    Amaranth ``.eq`` does). ``LATENCY`` = 2.

    ``block``: the multiplier block to build it from (``MULT18X18D``: the ECP5's, with its
    input registers A and B and its output register, clocked by the ``sync`` domain and
    reset synchronously with it, so the registers sit in the block and no net runs between
    a fabric register and the block's multiplier). ``select``: the product is
    :func:`select_add` (BSFF's multiplier-free PE; no block). Operands wider than the block takes
    (18 bits signed; an unsigned operand needs one bit more) are left to synthesis
    (``block`` is then None). ``copies``: the operand registers copy signals that other
    units register too (``REPLICA``: synthesis keeps them apart instead of merging them
    into one register of large fan-out)."""

    LATENCY = 2

    def __init__(self, a: Shape, b: Shape, p: Shape, *, block: str | None = None, copies: bool = False,
                 select: bool = False):
        a, b, p = Shape.cast(a), Shape.cast(b), Shape.cast(p)
        for name, s in (("a", a), ("b", b), ("p", p)):
            if s.width < 1:
                raise ValueError(f"RegisteredProduct: operand {name} has no bits ({s!r})")
        if block is not None and block not in BLOCKS:
            raise ValueError(f"RegisteredProduct: block={block!r} must be one of {sorted(BLOCKS)} or None")
        if not isinstance(copies, bool):
            raise ValueError(f"RegisteredProduct: copies={copies!r} must be true or false")
        if not isinstance(select, bool) or (select and block is not None):
            raise ValueError(f"RegisteredProduct: select={select!r} must be true or false, and a select "
                             "uses no multiplier block")
        self.select = select
        fits = block is not None and max(_signed_width(a), _signed_width(b)) <= BLOCKS[block] \
            and p.width <= 2 * BLOCKS[block]
        self.block = block if fits else None
        self.copies = copies
        super().__init__({"a": In(a), "b": In(b), "p": Out(p)})

    def elaborate(self, platform):
        m = Module()
        if self.block is None:
            attrs = REPLICA if self.copies else {}
            a_q = Signal.like(self.a, name="a_q", attrs=attrs)
            b_q = Signal.like(self.b, name="b_q", attrs=attrs)
            m.d.sync += [a_q.eq(self.a), b_q.eq(self.b),
                         self.p.eq(select_add(a_q, b_q) if self.select else a_q * b_q)]
            return m
        # MULT18X18D: operands sign- or zero-extended to 18 bits and multiplied as signed
        # (an unsigned operand of at most 17 bits is a non-negative signed one)
        n = BLOCKS[self.block]
        a = Signal(n, name="a_ext")
        b = Signal(n, name="b_ext")
        prod = Signal(2 * n, name="p_full")
        m.d.comb += [a.eq(self.a), b.eq(self.b), self.p.eq(prod)]
        ports = {f"i_A{i}": a[i] for i in range(n)}
        ports.update({f"i_B{i}": b[i] for i in range(n)})
        ports.update({f"i_C{i}": Const(0, 1) for i in range(n)})
        ports.update({f"o_P{i}": prod[i] for i in range(2 * n)})
        regs = {}
        for reg in ("INPUTA", "INPUTB", "OUTPUT"):
            regs.update({f"p_REG_{reg}_CLK": "CLK0", f"p_REG_{reg}_CE": "CE0", f"p_REG_{reg}_RST": "RST0"})
        m.submodules.block = Instance(
            self.block,
            p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE", p_RESETMODE="SYNC", p_GSR="DISABLED",
            p_SOURCEB_MODE="B_SHIFT", p_MULT_BYPASS="DISABLED", **regs,
            i_SIGNEDA=Const(1, 1), i_SIGNEDB=Const(1, 1), i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
            i_CLK0=ClockSignal(), i_CE0=Const(1, 1), i_RST0=ResetSignal(), **ports)
        return m


__all__ = ["BLOCKS", "SIM_MODELS", "FPGATarget", "RegisteredProduct", "mult_block"]
