"""LLS basis generator: the weights of a zero-parameter exit head, made on chip."""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..fixedpoint import LLS_PHASE_BITS, LLS_SIN_TABLE_BITS, lls_increments, lls_sin_table
from ..schedule import Schedule
from .interfaces import issue_layout


class LLSBasis(wiring.Component):
    """For every head input the issue stage streams (``cmd`` in cycle t), lane ``c`` of
    tile ``t`` holds class ``t*cols + c``'s basis value at that input, registered for
    cycle t+1 (when a weight word read in cycle t would arrive). Per lane a phase register
    adds the class's increment input by input (restarted by ``first``): one adder per lane,
    no stored weights. Square basis: the phase's top bit picks -1 or +1; sin basis: its
    top bits index a 2**6-entry table. Lanes beyond the last class give 0 (the padding a
    weight image would hold). ``ffaccel.model.lls.lls_basis`` is the same function.
    """

    def __init__(self, sched: Schedule):
        if not isinstance(sched, Schedule):
            raise TypeError(f"LLSBasis: sched={sched!r} must be a Schedule")
        if sched.cfg.exit_head == "learned":
            raise ValueError("LLSBasis: the config has learned heads (exit_head='learned')")
        self.sched = sched
        cfg = sched.cfg
        super().__init__({"cmd": In(issue_layout(sched)), "w": Out(signed(cfg.wbits)).array(cfg.cols)})
        self.phase = [Signal(unsigned(LLS_PHASE_BITS), name=f"phase{c}") for c in range(cfg.cols)]

    def restart(self, first):
        """Whether the phase restarts at this input (each tile's first; mutation tests only
        override this)."""
        return first

    def elaborate(self, platform):
        m = Module()
        s, cfg, cmd = self.sched, self.sched.cfg, self.cmd
        C, P = cfg.cols, LLS_PHASE_BITS
        inc = lls_increments(cfg.classes)
        tiles = s.memory.head_tiles
        table = Array(Const(v, signed(cfg.wbits)) for v in lls_sin_table(cfg.lls_amplitude))
        step = cmd.valid & cmd.tag.head
        for c in range(C):
            classes = [t * C + c for t in range(tiles)]
            f = Array(Const(inc[k] if k < cfg.classes else 0, unsigned(P)) for k in classes)[cmd.tag.tile]
            real = Array(Const(int(k < cfg.classes), 1) for k in classes)[cmd.tag.tile]
            cur = Signal(unsigned(P), name=f"cur{c}")
            m.d.comb += cur.eq(Mux(self.restart(cmd.first), 0, self.phase[c]))
            if cfg.exit_head == "lls-square":
                value = Mux(cur[P - 1], -1, 1)
            else:
                value = table[cur[P - LLS_SIN_TABLE_BITS:]]
            with m.If(step):
                m.d.sync += [self.phase[c].eq(cur + f), self.w[c].eq(Mux(real, value, 0))]
        return m
