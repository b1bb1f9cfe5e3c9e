"""Post-processing of drained rows: normalisation product, round-half-up shift, bias,
clamp, square (stages B, C, D), bit-exact with ``GoldenModel.postprocess``."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..schedule import Schedule
from .actbanks import write_layout
from .dsp import RegisteredProduct, mult_block
from .interfaces import REPLICA, Monitor, _idx, lut_mul, probe_layout, row_layout


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
    """A drained layer row's goodness ``sum`` (of h^2) for stage E; with the cosine engine
    also its ``dot``, the row's share of ``d = r_l . h``."""
    cfg = sched.cfg
    fields = {"valid": 1, "cp": sched.copy_index, "layer": _idx(cfg.n_layers), "sum": unsigned(cfg.goodness_reg_bits)}
    if cfg.cos_engine:
        fields["dot"] = signed(cfg.cos_dot_bits)
    return data.StructLayout(fields)


class PostProc(wiring.Component):
    """Nine stages after the drain's stage A (``row``):

    - B1: the partial products of ``acc * m`` per lane (the sum's low 17 bits and its
      high part, each times ``m``: one multiplier block each, registered at its output);
      ``shift = shift_base + s`` (``shift_base`` is the register-file value for
      ``row.layer`` / ``row.head``, read combinationally);
    - B2: ``prod = acc * m``, the partial products added;
    - C1: ``prod + 2**(shift-1)`` (the rounding term of ``rshr``);
    - C2: that ``>> shift`` (the barrel shift);
    - C3: ``z = `` that ``+ bias`` (BSFF: one sum per tied unit, each with its own bias);
    - C4: layers clamp ``z`` to ``0..amax`` (``neuron='abs'``: ``|z|`` saturated at ``amax``; BSFF: :meth:`fire`, the count of tied units
      whose sigmoid-table probability exceeds their byte of the ``RandomSource`` word
      ``u``); heads pass ``z`` on as a logit increment (``logit``, added by the
      accumulators);
    - D: at C4's output a layer row is written to the output bank set (``write``: set
      ``(layer+1) % 2``, bank ``cp``, word ``tile``) and shown on ``probe``; D1 registers
      each lane's ``h^2``, D2 the sums of groups of four lanes, D3 their sum: the
      ``goodness`` the accumulators add in stage E (the squares in LUTs, ``lut_mul``);
      the cosine engine sums each lane's ``r * h`` the same way (``goodness.dot``).

    (C was one stage, then three: a wide add, a barrel shift, a second add and the clamp
    were the engine's critical path on an ECP5 in turn, and so were a ``cols``-input sum
    of squares in one cycle and B's two multiplier blocks with their sum; docs/results.md,
    "FPGA implementation".)

    Subclasses may override :meth:`half`, :meth:`probe_tile`, :meth:`bias_lane` and
    :meth:`ref_lane` (mutation tests only).
    """

    STAGES = 9
    #: with ``AccelConfig.fpga_regs``: stage B0 registers the row (and a copy of the
    #: normalisation factor per column) beside the multiplier blocks first
    STAGES_FPGA_REGS = 10
    #: the normalisation product is split at this bit of the drained sum: a 17-bit
    #: unsigned and a signed high part, each within one 18x18 multiplier block
    SPLIT = 17

    def __init__(self, sched: Schedule):
        if not isinstance(sched, Schedule):
            raise TypeError(f"PostProc: sched={sched!r} must be a Schedule")
        stages = self.STAGES_FPGA_REGS if sched.cfg.fpga_regs else self.STAGES
        if sched.latency.postproc != stages:
            raise ValueError(f"PostProc: the schedule asks for {sched.latency.postproc} stages "
                             f"(this unit has {stages})")
        self.sched = sched
        cfg = sched.cfg
        sig = {
            "row": In(row_layout(sched)),
            "shift_base": In(unsigned(sched.regs.group("shift")[0].bits)),
            "write": Out(write_layout(sched)),
            "probe": Out(Monitor(probe_layout(sched))),
            "logit": Out(logit_layout(sched)),
            "goodness": Out(goodness_layout(sched)),
            "busy": Out(1),
        }
        if cfg.bsff:
            # the random source's words of the row now in stage C3 (``RandomSource``)
            sig["u"] = In(data.ArrayLayout(unsigned(32), cfg.cols))
        super().__init__(sig)
        self.prod = [Signal(signed(cfg.product_bits), name=f"prod{c}") for c in range(cfg.cols)]
        self.shift = Signal(unsigned(cfg.shift_bits))

    def half(self, shift, width: int):
        """2**(shift-1), 0 for shift 0 (the rounding constant of rshr)."""
        return (Const(1, unsigned(width + 1)) << shift) >> 1

    def probe_tile(self, tile):
        return tile

    def bias_lane(self, c: int, k: int) -> int:
        """The bias-word lane of column ``c``'s tied unit ``k`` (``images._tile_bias``)."""
        return c * self.sched.cfg.bias_lanes + k

    def elaborate(self, platform):
        m = Module()
        cfg, row = self.sched.cfg, self.row
        C = cfg.cols
        shift_base, busy0, row_in = self.shift_base, None, row
        if cfg.fpga_regs:
            # ---- stage B0: the row registered (its lanes and factor m go to the product
            # units below, whose operand registers sit beside, or in, the multiplier blocks)
            r0 = Signal(row_layout(self.sched), name="b0")
            sb0 = Signal.like(self.shift_base, name="shift_base0")
            m.d.sync += [r0.eq(row), sb0.eq(self.shift_base)]
            row, shift_base, busy0 = r0, sb0, r0.valid
        # ---- stage B1: the partial products, each a multiplier block's output registered
        b1 = Signal(post_tag_layout(self.sched))
        shift0 = Signal.like(self.shift, name="shift0")
        m.d.sync += [b1.valid.eq(row.valid), b1.live.eq(row.live), b1.cp.eq(row.cp), b1.tile.eq(row.tile),
                     b1.layer.eq(row.layer), b1.head.eq(row.head), b1.bias.eq(row.bias),
                     shift0.eq(shift_base + row.s)]
        lo_bits = self.SPLIT if cfg.drain_bits > self.SPLIT + 1 else 0
        plo = [Signal(unsigned(lo_bits + cfg.rsqrt_mant_bits), name=f"plo{c}") for c in range(C)]
        phi = [Signal(signed(cfg.product_bits), name=f"phi{c}") for c in range(C)]
        # with ``fpga_regs`` B0 and B1 are one product unit per part, from the row that B0
        # registers (a multiplier block with its own registers on an FPGA target)
        src = row_in if cfg.fpga_regs else row
        for c in range(C):
            parts = {"lo": (plo[c], src.acc[c][:lo_bits]), "hi": (phi[c], src.acc[c][lo_bits:].as_signed())} \
                if lo_bits else {"hi": (phi[c], src.acc[c])}
            for name, (out, a) in parts.items():
                if cfg.fpga_regs:
                    # (the part's own product width: the high part's fits one block where
                    # the whole product's width would not)
                    u = m.submodules[f"mul_{name}{c}"] = RegisteredProduct(
                        a.shape(), src.m.shape(), (a * src.m).shape(), block=mult_block(platform), copies=True)
                    m.d.comb += [u.a.eq(a), u.b.eq(src.m), out.eq(u.p)]
                else:
                    m.d.sync += out.eq(a * src.m)
        # ---- stage B2: prod = acc * m; the rounding term 2**(shift-1), registered. A shift
        # beyond the product's width rounds every product to 0 (|prod| < 2**(pb-1) <=
        # 2**(shift-2)): flagged (``big``), so the adder and shifter are pb + 2 bits wide
        # instead of 2**shift_bits
        pb = cfg.product_bits
        b = Signal(post_tag_layout(self.sched))
        half, big = Signal(unsigned(pb + 1)), Signal()
        m.d.sync += [b.eq(b1), self.shift.eq(shift0), big.eq(shift0 > pb),
                     half.eq(Mux(shift0 > pb, 0, self.half(shift0, pb)))]
        m.d.sync += [self.prod[c].eq((phi[c] << lo_bits) + plo[c]) for c in range(C)]
        # ---- stage C1: the rounding term added
        c1 = Signal(post_tag_layout(self.sched))
        # the shift amount and its flag, one copy per lane (``REPLICA``): one register
        # would steer every lane's shifter, hundreds of loads on a 16-column engine
        shift1 = [Signal(range(pb + 1), name=f"shift1_{c}", attrs=REPLICA) for c in range(C)]
        big1 = [Signal(name=f"big1_{c}", attrs=REPLICA) for c in range(C)]
        rsum = [Signal(signed(pb + 2), name=f"rsum{c}") for c in range(C)]
        m.d.sync += [c1.eq(b)] + [shift1[c].eq(self.shift) for c in range(C)] + [big1[c].eq(big) for c in range(C)]
        m.d.sync += [rsum[c].eq(self.prod[c] + half) for c in range(C)]
        # ---- stage C2: the shift
        c2 = Signal(post_tag_layout(self.sched))
        sh = [Signal(signed(pb + 2), name=f"sh{c}") for c in range(C)]
        m.d.sync += c2.eq(c1)
        m.d.sync += [sh[c].eq(Mux(big1[c], 0, rsum[c] >> shift1[c])) for c in range(C)]
        c3, c_, h, inc = self._stage_c34(m, c2, sh)
        d_busy = self._stage_d(m, c_, h, inc)
        busy = b1.valid | b.valid | c1.valid | c2.valid | c3.valid | c_.valid | d_busy
        m.d.comb += self.busy.eq(busy if busy0 is None else busy0 | busy)
        return m

    def _stage_c34(self, m: Module, c2, sh):
        """Stage C3 (the bias; BSFF: one per tied unit, lane k = 0 for the heads) and C4
        (clamp, BSFF's count of firing units, or the heads' logit increment). Returns
        C3's and C4's tags, the lanes' activations and the logit increments."""
        cfg = self.sched.cfg
        C, A, BL, K, pb = cfg.cols, cfg.abits, cfg.bias_lane_bits, cfg.unit_lanes, cfg.product_bits
        c3 = Signal(post_tag_layout(self.sched))
        zk = [[Signal(signed(pb + 3), name=f"z{c}_{k}" if k else f"z{c}") for k in range(K)] for c in range(C)]
        z = [zk[c][0] for c in range(C)]
        m.d.sync += c3.eq(c2)
        lane = [[self.bias_lane(c, k) for k in range(K)] for c in range(C)]
        m.d.sync += [zk[c][k].eq(sh[c] + c2.bias[lane[c][k] * BL:(lane[c][k] + 1) * BL].as_signed())
                     for c in range(C) for k in range(K)]
        # ---- stage C4: clamp (layers) / logit increment (heads)
        c_ = Signal(post_tag_layout(self.sched))
        h = [Signal(unsigned(A), name=f"h{c}") for c in range(C)]
        inc = [Signal(signed(cfg.score_bits), name=f"inc{c}") for c in range(C)]
        m.d.sync += c_.eq(c3)
        # clamp to 0..amax = 2**A - 1: the sign bit, then any bit at A or above (an OR, not
        # a comparator's carry chain across z's width)
        if cfg.bsff:
            m.d.sync += [h[c].eq(self.fire(zk[c], self.u[c])) for c in range(C)]
        elif cfg.neuron == "abs":
            # |z| units: the negation before the saturation (|z| >= 0: no sign to test)
            za = [Signal(signed(pb + 4), name=f"za{c}") for c in range(C)]
            m.d.comb += [za[c].eq(Mux(z[c][-1], -z[c], z[c])) for c in range(C)]
            m.d.sync += [h[c].eq(Mux(za[c][A:].any(), cfg.amax, za[c][:A])) for c in range(C)]
        else:
            m.d.sync += [h[c].eq(Mux(z[c][-1], 0, Mux(z[c][A:].any(), cfg.amax, z[c][:A]))) for c in range(C)]
        m.d.sync += [inc[c].eq(z[c]) for c in range(C)]
        return c3, c_, h, inc

    def fire(self, zs, u):
        """BSFF: the count of tied units that fire: unit k's pre-activation ``zs[k]``
        clamped into the sigmoid table's range, its probability read from the table (a
        ROM of ``2**(afrac+4)`` entries), compared with byte k of the random word ``u``."""
        from ..config import BSFF_PBITS, BSFF_ZRANGE_BITS
        from ..fixedpoint import bsff_sigmoid_table

        cfg = self.sched.cfg
        table = bsff_sigmoid_table(cfg.afrac, BSFF_ZRANGE_BITS, BSFF_PBITS)
        half, ib = len(table) // 2, cfg.bsff_index_bits
        rom = Array(Const(v, unsigned(BSFF_PBITS + 1)) for v in table)
        bits = []
        for k, zv in enumerate(zs):
            idx = Mux(zv < -half, 0, Mux(zv >= half, 2 * half - 1, (zv + half)[:ib]))
            bits.append(u[k * BSFF_PBITS:(k + 1) * BSFF_PBITS] < rom[idx])
        return sum(bits[1:], bits[0].as_unsigned()) if len(bits) > 1 else bits[0]

    def _stage_d(self, m: Module, c_, h, inc):
        """The bank write, probe and logit at C4's output; the goodness sum in three
        registers (squares, sums of four lanes, their sum). Returns the stages' busy."""
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
        # every row (layer or head, live or not) goes through D1..D3, so a pass's tail is
        # the same whatever its rows; only live layer rows add goodness
        tag = data.StructLayout({"valid": 1, "good": 1, "cp": self.sched.copy_index, "layer": _idx(cfg.n_layers)})
        d1, d2 = Signal(tag), Signal(tag)
        sq = [Signal(unsigned(2 * cfg.abits), name=f"sq{c}") for c in range(cfg.cols)]
        m.d.sync += [d1.valid.eq(c_.valid), d1.good.eq(layer_row), d1.cp.eq(c_.cp), d1.layer.eq(c_.layer)]
        m.d.sync += [sq[c].eq(lut_mul(h[c], h[c])) for c in range(cfg.cols)]
        quads = [sq[i:i + 4] for i in range(0, cfg.cols, 4)]
        part = [Signal(unsigned(cfg.goodness_reg_bits), name=f"part{i}") for i in range(len(quads))]
        m.d.sync += [d2.eq(d1)] + [p.eq(sum(q)) for p, q in zip(part, quads)]
        g, d3 = self.goodness, Signal()
        m.d.sync += [d3.eq(d2.valid), g.valid.eq(d2.good), g.cp.eq(d2.cp), g.layer.eq(d2.layer), g.sum.eq(sum(part))]
        if cfg.cos_engine:
            self._stage_d_dot(m, c_, h)
        return d1.valid | d2.valid | d3

    def _stage_d_dot(self, m: Module, c_, h):
        """The cosine engine: beside the squares, each lane's ``r * h`` (D1; r the signed
        reference code in the lane after the column's bias), sums of four (D2), their sum
        (D3): the row's share of ``d = r_l . h``, in stage E with the goodness."""
        from ..config import COS_RBITS

        cfg = self.sched.cfg
        BL, db = cfg.bias_lane_bits, cfg.cos_dot_bits
        rh = [Signal(signed(COS_RBITS + cfg.abits + 1), name=f"rh{c}") for c in range(cfg.cols)]
        for c in range(cfg.cols):
            lane = self.ref_lane(c)
            r = c_.bias[lane * BL:lane * BL + COS_RBITS].as_signed()
            m.d.sync += rh[c].eq(r * h[c])
        quads = [rh[i:i + 4] for i in range(0, cfg.cols, 4)]
        part = [Signal(signed(db), name=f"dpart{i}") for i in range(len(quads))]
        m.d.sync += [p.eq(sum(q)) for p, q in zip(part, quads)]
        m.d.sync += self.goodness.dot.eq(sum(part))

    def ref_lane(self, c: int) -> int:
        """The bias-word lane of column ``c``'s reference code (after its unit biases;
        overridden by mutation tests only)."""
        return c * self.sched.cfg.bias_lanes + self.sched.cfg.unit_lanes
