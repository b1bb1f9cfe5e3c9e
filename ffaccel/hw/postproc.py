"""Post-processing of drained rows: normalisation product, round-half-up shift, bias,
clamp, square (stages B, C, D), bit-exact with ``GoldenModel.postprocess``."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..schedule import Schedule
from .actbanks import write_layout
from .interfaces import Monitor, _idx, probe_layout, row_layout


def logit_layout(sched: Schedule) -> data.StructLayout:
    cfg = sched.cfg
    return data.StructLayout({"valid": 1, "cp": sched.copy_index, "tile": _idx(sched.max_tiles),
                              "layer": _idx(cfg.n_layers), "inc": data.ArrayLayout(signed(cfg.score_bits), cfg.cols)})


def post_tag_layout(sched: Schedule) -> data.StructLayout:
    """What stages B and C carry along with a row's lanes."""
    cfg = sched.cfg
    return data.StructLayout({"valid": 1, "live": 1, "cp": sched.copy_index,
                              "tile": _idx(sched.max_tiles), "layer": _idx(cfg.n_layers), "head": 1,
                              "bias": unsigned(cfg.bias_word_bits)})


def goodness_layout(sched: Schedule) -> data.StructLayout:
    cfg = sched.cfg
    return data.StructLayout({"valid": 1, "cp": sched.copy_index, "layer": _idx(cfg.n_layers),
                              "sum": unsigned(cfg.goodness_reg_bits)})


class PostProc(wiring.Component):
    """Five stages after the drain's row select (``row``, stage A):

    - B: ``prod = acc * m`` per lane; ``shift = shift_base + s`` (``shift_base`` is the
      register-file value for ``row.layer`` / ``row.head``, read combinationally);
    - C1: ``prod + 2**(shift-1)`` (the rounding term of ``rshr``);
    - C2: ``z = (that >> shift) + bias``;
    - C3: layers clamp ``z`` to ``0..amax``; heads pass ``z`` on as a logit increment
      (``logit``, added by the accumulators);
    - D: a layer row is written to the output bank set (``write``: set ``(layer+1) % 2``,
      bank ``cp``, word ``tile``) and shown on ``probe``; its ``sum(h^2)`` is registered
      (``goodness``, added by the accumulators in stage E).

    (C was one stage: a wide add, a barrel shift, a second add and the clamp in one cycle,
    the critical path of the engine on an ECP5 once the exit comparator was pipelined,
    docs/results.md, "FPGA".)

    Subclasses may override :meth:`half` and :meth:`probe_tile` (mutation tests only).
    """

    STAGES = 5

    def __init__(self, sched: Schedule):
        if not isinstance(sched, Schedule):
            raise TypeError(f"PostProc: sched={sched!r} must be a Schedule")
        if sched.latency.postproc != self.STAGES:
            raise ValueError(f"PostProc: the schedule asks for {sched.latency.postproc} stages "
                             f"(this unit has {self.STAGES})")
        self.sched = sched
        cfg = sched.cfg
        super().__init__({
            "row": In(row_layout(sched)),
            "shift_base": In(unsigned(sched.regs.group("shift")[0].bits)),
            "write": Out(write_layout(sched)),
            "probe": Out(Monitor(probe_layout(sched))),
            "logit": Out(logit_layout(sched)),
            "goodness": Out(goodness_layout(sched)),
            "busy": Out(1),
        })
        self.prod = [Signal(signed(cfg.product_bits), name=f"prod{c}") for c in range(cfg.cols)]
        self.shift = Signal(unsigned(cfg.shift_bits))

    def half(self, shift, width: int):
        """2**(shift-1), 0 for shift 0 (the rounding constant of rshr)."""
        return (Const(1, unsigned(width + 1)) << shift) >> 1

    def probe_tile(self, tile):
        return tile

    def elaborate(self, platform):
        m = Module()
        cfg, row = self.sched.cfg, self.row
        C, A, BL = cfg.cols, cfg.abits, cfg.bias_lane_bits
        # ---- stage B
        b = Signal(post_tag_layout(self.sched))
        m.d.sync += [b.valid.eq(row.valid), b.live.eq(row.live), b.cp.eq(row.cp), b.tile.eq(row.tile),
                     b.layer.eq(row.layer), b.head.eq(row.head), b.bias.eq(row.bias),
                     self.shift.eq(self.shift_base + row.s)]
        for c in range(C):
            m.d.sync += self.prod[c].eq(row.acc[c] * row.m)
        # ---- stage C1: the rounding term
        c1 = Signal(post_tag_layout(self.sched))
        shw = max(cfg.product_bits, 1 << cfg.shift_bits)      # never truncates 2**shift
        half = Signal(unsigned(shw))
        m.d.comb += half.eq(self.half(self.shift, shw))
        shift1 = Signal.like(self.shift, name="shift1")
        rsum = [Signal(signed(shw + 2), name=f"rsum{c}") for c in range(C)]
        m.d.sync += [c1.eq(b), shift1.eq(self.shift)] + [rsum[c].eq(self.prod[c] + half) for c in range(C)]
        # ---- stage C2: the shift and the bias
        c2 = Signal(post_tag_layout(self.sched))
        z = [Signal(signed(shw + 3), name=f"z{c}") for c in range(C)]
        m.d.sync += c2.eq(c1)
        m.d.sync += [z[c].eq((rsum[c] >> shift1) + c1.bias[c * BL:(c + 1) * BL].as_signed()) for c in range(C)]
        # ---- stage C3: clamp (layers) / logit increment (heads)
        c_ = Signal(post_tag_layout(self.sched))
        h = [Signal(unsigned(A), name=f"h{c}") for c in range(C)]
        inc = [Signal(signed(cfg.score_bits), name=f"inc{c}") for c in range(C)]
        m.d.sync += c_.eq(c2)
        m.d.sync += [h[c].eq(Mux(z[c] < 0, 0, Mux(z[c] > cfg.amax, cfg.amax, z[c]))) for c in range(C)]
        m.d.sync += [inc[c].eq(z[c]) for c in range(C)]
        self._stage_d(m, c_, h, inc)
        # stage D holds a row (live or not) for one cycle: the pipeline is busy until it leaves
        d_valid = Signal()
        m.d.sync += d_valid.eq(c_.valid)
        m.d.comb += self.busy.eq(b.valid | c1.valid | c2.valid | c_.valid | d_valid)
        return m

    def _stage_d(self, m: Module, c_, h, inc):
        cfg = self.sched.cfg
        word = Cat(*h)
        layer_row = c_.valid & c_.live & ~c_.head
        with m.If(layer_row):
            m.d.comb += [self.write.lanes.eq((1 << cfg.cols) - 1), self.write.set.eq(~c_.layer[0]),
                         self.write.bank.eq(c_.cp), self.write.addr.eq(c_.tile), self.write.data.eq(word),
                         self.probe.valid.eq(1), self.probe.payload.layer.eq(c_.layer),
                         self.probe.payload.copy.eq(c_.cp), self.probe.payload.tile.eq(self.probe_tile(c_.tile)),
                         self.probe.payload.data.eq(word)]
        m.d.comb += [self.logit.valid.eq(c_.valid & c_.live & c_.head), self.logit.cp.eq(c_.cp),
                     self.logit.tile.eq(c_.tile), self.logit.layer.eq(c_.layer)]
        m.d.comb += [self.logit.inc[c].eq(inc[c]) for c in range(cfg.cols)]
        g = self.goodness
        m.d.sync += [g.valid.eq(layer_row), g.cp.eq(c_.cp), g.layer.eq(c_.layer), g.sum.eq(sum(v * v for v in h))]

